"""`compare --flamegraph`: one more trial of each variant under py-spy, and differential
flamegraphs of every variant against the reference (the first), over the samples inside the
training loop.

The profiles go into the compare's record (`CompareResult.profiles`), which is saved after each
one, so an interrupt keeps those that finished. Progress goes to a callback; nothing is printed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from perfkit.compare import Runner, TrialFailed, Variant
from perfkit.flame.folded import TRAIN_LOOP, read_folded
from perfkit.flame.report import draw_flamegraphs, write_flamediff
from perfkit.records.compare import CompareResult


def profile_variants(result: CompareResult, variants: list[Variant], runner: Runner, run_dir: Path,
                     on_progress: Callable[[str], None] = lambda message: None) -> dict[str, dict]:
    """Profile each variant once with py-spy (a variant whose profiled trial fails is skipped, with
    a message); then, for every profiled variant after the first, write its differential
    flamegraphs against the first and record them with the frames that changed most
    (`flamediff`, `flamediff_frames`). Returns `result.profiles`."""
    from perfkit.profilers import pyspy

    sps_json = run_dir / "sps.json"
    for v in variants:
        on_progress(f"profiling {v.label} with py-spy ...")
        try:
            got = pyspy.profile(runner, v, run_dir / "profiles" / v.slug)
            got["files"] = draw_flamegraphs(got["files"], f"py-spy: {v.label}", v.label)
            result.profiles[v.label] = got
        except TrialFailed as e:
            on_progress(f"py-spy run failed for {v.label}: {e}")
            continue
        result.save(sps_json)
    first = variants[0].label
    if first in result.profiles:
        a = read_folded(result.profiles[first]["files"]["folded"]).focus(TRAIN_LOOP)
        for v in variants[1:]:
            if v.label not in result.profiles:
                continue
            b = read_folded(result.profiles[v.label]["files"]["folded"]).focus(TRAIN_LOOP)
            files, frames = write_flamediff(a, b, run_dir, first, v.label, stem=f"flamediff-{v.slug}")
            result.profiles[v.label].update(flamediff=files, flamediff_frames=[asdict(f) for f in frames])
        result.save(sps_json)
    return result.profiles
