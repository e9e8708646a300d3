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

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from perfkit import stats
from perfkit.results import machine_info, read_json, write_json

TOOLS = ("pyspy", "torch", "scalene")
UNPROFILED = "none"


@dataclass(frozen=True)
class ProfileOptions:
    """How each profiler runs (see `perfkit profile --help`)."""

    rate: int = 100  # py-spy samples per second
    native: bool = False  # py-spy: native frames
    subprocesses: bool = True  # py-spy: follow rollout workers
    torch_schedule: dict[str, int] = field(default_factory=dict)  # TorchProfileConfig fields
    scalene_memory: bool = False


@dataclass
class ProfileRecord:
    """Every trial of a `perfkit profile` run (profile.json)."""

    scenario: dict[str, Any]
    tools: list[str]
    repeats: int
    trials: list[dict[str, Any]] = field(default_factory=list)  # round, tool, sps, status, error, sentinel
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)  # tool -> round 1's files and extras
    interrupted: bool = False
    machine: dict[str, Any] = field(default_factory=machine_info)

    def clean_pairs(self, tool: str) -> tuple[list[float], list[float]]:
        """(unprofiled SPS, this tool's SPS) over rounds where both finished and neither was disturbed."""
        def by_round(name: str) -> dict[int, float]:
            return {t["round"]: t["sps"] for t in self.trials
                    if t["tool"] == name and t["status"] == "ok" and not t["disturbed"]}
        none, this = by_round(UNPROFILED), by_round(tool)
        rounds = sorted(set(none) & set(this))
        return [none[k] for k in rounds], [this[k] for k in rounds]

    def overhead(self, tool: str) -> stats.Comparison:
        """This tool's SPS over the unprofiled SPS of the same rounds: geo-mean of paired ratios."""
        a, b = self.clean_pairs(tool)
        return stats.compare(a, b, paired=True) if a else stats.Comparison(math.nan, math.nan, math.nan, 0.95,
                                                                           stats.TOO_FEW)

    def unprofiled_sps(self) -> float:
        """Geometric mean of the undisturbed unprofiled trials (nan if none)."""
        xs = [t["sps"] for t in self.trials if t["tool"] == UNPROFILED and t["status"] == "ok" and not t["disturbed"]]
        return stats.summarize(xs).geomean if xs else math.nan

    def sps(self, tool: str) -> float:
        xs = [t["sps"] for t in self.trials if t["tool"] == tool and t["status"] == "ok" and not t["disturbed"]]
        return stats.summarize(xs).geomean if xs else math.nan

    def counts(self, tool: str) -> dict[str, int]:
        ts = [t for t in self.trials if t["tool"] == tool]
        return {"trials": len(ts), "failed": sum(t["status"] == "failed" for t in ts),
                "disturbed": sum(t["status"] == "ok" and t["disturbed"] for t in ts)}

    @property
    def warnings(self) -> list[str]:
        out = []
        for tool in [UNPROFILED, *self.tools]:
            c = self.counts(tool)
            name = "unprofiled" if tool == UNPROFILED else tool
            if c["disturbed"]:
                others = [t["others_cores"] for t in self.trials if t["tool"] == tool and t["disturbed"]
                          and t["others_cores"] is not None]
                used = f" (others used up to {max(others):.2f} core)" if others else ""
                out.append(f"{c['disturbed']} of {c['trials']} {name} trials left out of the overhead: other "
                           f"processes were busy during them{used}")
            if c["failed"]:
                errors = [t["error"].splitlines()[0] for t in self.trials if t["tool"] == tool and t["error"]]
                out.append(f"{c['failed']} of {c['trials']} {name} trials failed: {errors[0]}")
        for tool in self.tools:
            n = len(self.clean_pairs(tool)[0])
            if n < 2:
                out.append(f"{tool}: {n} clean pair(s) with an unprofiled trial: no interval (use --repeats 3 or more)")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProfileRecord:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, "profile", self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ProfileRecord:
        return cls.from_dict(read_json(path, "profile"))


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
    from perfkit.compare import TrialFailed
    from perfkit.profilers import ProfilerUnavailable

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
    from perfkit.profilers import pyspy, torchprof
    from perfkit.profilers import scalene as scalene_mod

    if tool == "pyspy":
        return pyspy.profile(runner, variant, where, options.rate, options.native, options.subprocesses)
    if tool == "torch":
        return torchprof.profile(runner, variant, where, torchprof.TorchProfileConfig(**options.torch_schedule))
    if tool == "scalene":
        return scalene_mod.profile(runner, variant, where, options.scalene_memory)
    raise ValueError(f"unknown profiler {tool!r}; choose from {', '.join(TOOLS)}")
