"""Folded stacks: parsing, normalising, differencing, and rendering them as SVG flamegraphs."""

from .folded import FrameDelta, Profile, diff_frames, parse_folded, read_folded
from .svg import render_diff_svg, render_svg

__all__ = ["Profile", "FrameDelta", "parse_folded", "read_folded", "diff_frames", "render_svg", "render_diff_svg"]
