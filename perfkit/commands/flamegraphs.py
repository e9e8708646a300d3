"""`compare --flamegraph`: a flamegraph per variant and differential flamegraphs of every variant
against the reference (the first).

`from_blocks` (what `compare --flamegraph` does): every block of the compare was sampled by py-spy
at a low rate; each variant's flamegraph is drawn from its steady blocks only (marker frames leave
the warm-up out, as SPS does), so the profile and the table describe the same epochs. The
profiles go into the compare's record (`CompareResult.profiles`); nothing is printed.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from perfkit.core.scenario import Variant
from perfkit.records.compare import CompareResult
from perfkit.render.flame_report import draw_flamegraphs, write_flamediff


def from_blocks(result: CompareResult, run_dir: Path, rate: int) -> dict[str, dict]:
    """Flamegraphs from the samples of every steady block of a sampled compare, and differential
    flamegraphs against the first variant. Fills and returns `result.profiles`."""
    from perfkit.core.files import atomic_write_text
    from perfkit.core.folded import Profile
    from perfkit.records.blocks import merge_blocks, pairs_from_compare

    first = result.variants[0]
    stacks: dict[str, dict[tuple[str, ...], float]] = {}
    for label in result.variants[1:]:
        pairs = pairs_from_compare(result, first, label, run_dir)
        stacks.setdefault(first, merge_blocks([a for a, _ in pairs]).stacks)
        stacks[label] = merge_blocks([b for _, b in pairs]).stacks
    for label, st in stacks.items():
        if not st:
            continue
        out_dir = run_dir / "profiles" / Variant(label, None).slug  # type: ignore[arg-type]
        folded = out_dir / "pyspy.folded"
        atomic_write_text(folded, "".join(f"{';'.join(k)} {n:g}\n" for k, n in st.items()))
        files = draw_flamegraphs({"folded": str(folded)}, f"py-spy: {label} (steady blocks)", label)
        result.profiles[label] = {"files": files, "samples": sum(st.values()), "rate": rate,
                                  "source": "every steady block"}
    if first in result.profiles:
        a = Profile(stacks[first])
        for label in result.variants[1:]:
            if label not in result.profiles:
                continue
            files, frames = write_flamediff(a, Profile(stacks[label]), run_dir, first, label,
                                            stem=f"flamediff-{Variant(label, None).slug}")  # type: ignore[arg-type]
            result.profiles[label].update(flamediff=files, flamediff_frames=[asdict(f) for f in frames])
    result.save(run_dir / "sps.json")
    return result.profiles
