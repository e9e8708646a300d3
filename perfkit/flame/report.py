"""Differential flamegraph report: two SVGs (drawn on B's shape and on A's) and the frame table."""

from __future__ import annotations

from pathlib import Path

from perfkit.records.store import atomic_write_text

from .folded import FrameDelta, Profile, diff_frames
from .svg import render_diff_svg


def write_flamediff(a: Profile, b: Profile, out_dir: Path, label_a: str, label_b: str, stem: str = "flamediff",
                    top: int = 15) -> tuple[dict[str, str], list[FrameDelta]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for shape, name in (("b", f"{stem}.svg"), ("a", f"{stem}-on-{'A'}.svg")):
        path = out_dir / name
        title = f"{label_b} vs {label_a} (drawn on {label_b if shape == 'b' else label_a})"
        atomic_write_text(path, render_diff_svg(a, b, shape, title, label_a, label_b))
        files[f"on_{shape}"] = str(path)
    return files, diff_frames(a, b, top)
