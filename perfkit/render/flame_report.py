"""Drawing profiles: a flamegraph (SVG, and speedscope JSON for py-spy) per folded-stack file a
profiler wrote, and the differential report (two SVGs, drawn on B's shape and on A's, and the
frame table). Profilers only write folded stacks; everything drawn is drawn here."""

from __future__ import annotations

import json
from pathlib import Path

from perfkit.core.files import atomic_write_text
from perfkit.core.folded import FrameDelta, Profile, diff_frames, read_folded, to_speedscope
from perfkit.render.flame_svg import render_diff_svg, render_svg


def draw_flamegraphs(files: dict[str, str], title: str, name: str = "") -> dict[str, str]:
    """For every non-empty `.folded` file in a profiler's `files`, an SVG beside it; for py-spy's
    (key "folded") also a speedscope JSON. Returns `files` with the drawings added ("svg" and
    "speedscope" for py-spy's, the SVG's file name for others)."""
    out = dict(files)
    for key, path in files.items():
        if not path.endswith(".folded") or not Path(path).exists() or Path(path).stat().st_size == 0:
            continue
        prof = read_folded(path, torn_ok=True)  # perfkit's own py-spy output
        svg = Path(path).with_suffix(".svg")
        atomic_write_text(svg, render_svg(prof, title))
        if key == "folded":
            out["svg"] = str(svg)
            speedscope = Path(path).with_suffix(".speedscope.json")
            atomic_write_text(speedscope, json.dumps(to_speedscope(prof, name or title)))
            out["speedscope"] = str(speedscope)
        else:
            out[svg.name] = str(svg)
    return out


def write_flamediff(a: Profile, b: Profile, out_dir: Path, label_a: str, label_b: str, stem: str = "flamediff",
                    top: int = 15, significant: set[str] | None = None) -> tuple[dict[str, str], list[FrameDelta]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for shape, name in (("b", f"{stem}.svg"), ("a", f"{stem}-on-{'A'}.svg")):
        path = out_dir / name
        title = f"{label_b} vs {label_a} (drawn on {label_b if shape == 'b' else label_a})"
        atomic_write_text(path, render_diff_svg(a, b, shape, title, label_a, label_b, significant))
        files[f"on_{shape}"] = str(path)
    return files, diff_frames(a, b, top)
