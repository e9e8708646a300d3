"""`perfkit profile`: a scenario's trial under each profiler, next to unprofiled trials of the same
scenario, in interleaved rounds, with each profiler's overhead as a paired ratio and interval.

Round k runs one unprofiled trial and one trial per profiler, in an order that rotates every round
(none A B, A B none, ...). A trial during which other processes took a real share of the machine
(the sentinel's `disturbed`) is kept in the record but left out of the overhead, together with the
other half of its pair: a package install beside a single unprofiled trial once made py-spy look
10x faster than no profiler at all. The artifacts (folded stacks, traces, Scalene's JSON) of round
1 go to `<tool>/`, later rounds' to `<tool>/round-K/`: nothing is overwritten.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perfkit.records.profiling import UNPROFILED, ProfileRecord

TOOLS = ("pyspy", "torch", "scalene")


@dataclass(frozen=True)
class ProfileOptions:
    """How each profiler runs (see `perfkit profile --help`)."""

    rate: int = 100  # py-spy samples per second
    native: bool = False  # py-spy: native frames
    subprocesses: bool = True  # py-spy: follow rollout workers
    torch_schedule: dict[str, int] = field(default_factory=dict)  # TorchProfileConfig fields
    scalene_memory: bool = False


def _trial_entry(k: int, tool: str, sps: float, sentinel: dict | None, error: str | None = None) -> dict[str, Any]:
    sentinel = sentinel or {}
    return {"round": k, "tool": tool, "sps": sps, "status": "failed" if error else "ok", "error": error,
            "disturbed": bool(sentinel.get("disturbed")), "others_cores": sentinel.get("others_cores"),
            "sentinel": sentinel}


def run_profile(runner, variant, tools: list[str], options: ProfileOptions, run_dir: Path, repeats: int = 3,
                on_trial: Callable[[int, int, str, dict], None] | None = None) -> ProfileRecord:
    """Interleaved rounds of an unprofiled trial and one trial per profiler; the record is saved
    after every trial (profile.json). A failed trial is recorded and the rounds go on; Ctrl-C
    stops the trial under way and returns what finished, marked interrupted."""
    from perfkit.engine.profilers import ProfilerUnavailable
    from perfkit.records.trial import TrialFailed

    record = ProfileRecord(variant.scenario.to_dict(), list(tools), repeats)
    names = [UNPROFILED, *tools]
    total = repeats * len(names)
    path = run_dir / "profile.json"
    try:
        for k in range(repeats):
            for tool in names[k % len(names):] + names[:k % len(names)]:
                where = run_dir / ("unprofiled" if tool == UNPROFILED else tool)
                where = where if k == 0 else where / f"round-{k + 1}"
                try:
                    if tool == UNPROFILED:
                        tr = runner(variant, k, where / "trial.json")
                        entry = _trial_entry(k, tool, tr.sps, tr.sentinel, tr.error)
                    else:
                        got = _profile_one(tool, runner, variant, where, options)
                        entry = _trial_entry(k, tool, got["sps"], got.pop("sentinel", None))
                        if tool not in record.artifacts:
                            record.artifacts[tool] = got
                except (TrialFailed, ProfilerUnavailable, RuntimeError) as e:
                    entry = _trial_entry(k, tool, 0.0, None, str(e) or type(e).__name__)
                record.trials.append(entry)
                record.save(path)
                if on_trial is not None:
                    on_trial(len(record.trials), total, tool, entry)
    except KeyboardInterrupt:
        record.interrupted = True
    record.save(path)
    return record


def _profile_one(tool: str, runner, variant, where: Path, options: ProfileOptions) -> dict[str, Any]:
    from perfkit.engine.profilers import pyspy, torchprof
    from perfkit.engine.profilers import scalene as scalene_mod
    from perfkit.render.flame_report import draw_flamegraphs

    if tool == "pyspy":
        got = pyspy.profile(runner, variant, where, options.rate, options.native, options.subprocesses)
        got["files"] = draw_flamegraphs(got["files"], f"py-spy: {variant.label}", variant.label)
    elif tool == "torch":
        got = torchprof.profile(runner, variant, where, torchprof.TorchProfileConfig(**options.torch_schedule))
        got["files"] = draw_flamegraphs(got["files"], f"torch.profiler stacks (self CPU): {variant.label}")
    elif tool == "scalene":
        got = scalene_mod.profile(runner, variant, where, options.scalene_memory)
    else:
        raise ValueError(f"unknown profiler {tool!r}; choose from {', '.join(TOOLS)}")
    return got
