"""Renderers: data in, text out. Nothing here measures anything."""
