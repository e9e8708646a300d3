"""Profilers that wrap a trial process: each returns artifacts and the SPS it measured."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


class ProfilerUnavailable(RuntimeError):
    """The profiler cannot run here; the message says why and how to fix it."""


def find_tool(name: str) -> str | None:
    """`name` beside the running interpreter first, then on PATH. `venv/bin/perfkit` run without
    an activated venv has the venv's tools beside `sys.executable` but not on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)
