"""Plan variants, run their trials interleaved (A B C A B C ...), each in a fresh process, and
turn the TrialResults into per-variant statistics.

Interleaving spreads slow drifts of a shared machine (thermal, neighbours) over every variant
instead of charging them to whichever ran last.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from perfkit import stats
from perfkit.results import TrialResult, atomic_write_text, machine_info, read_json, write_json
from perfkit.scenario import Scenario


@dataclass(frozen=True)
class Variant:
    label: str
    scenario: Scenario

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.=-]+", "_", self.label.replace(",", "__"))


def plan_variants(base: Scenario, vary: list[tuple[str, list[str]]]) -> list[Variant]:
    """Every combination of the varied axes' values, first value of each axis first."""
    if not vary:
        return [Variant("baseline", base)]
    names = [name for name, _ in vary]
    if len(set(names)) != len(names):
        raise ValueError(f"an axis is varied twice: {', '.join(names)}")
    variants = []
    for combo in itertools.product(*(values for _, values in vary)):
        sc = base.with_values(**dict(zip(names, combo, strict=True)))
        variants.append(Variant(sc.label(names), sc))
    return variants


def interleave(n_variants: int, trials: int) -> list[tuple[int, int]]:
    """(trial index, variant index) in run order: round k runs every variant once."""
    return [(k, v) for k in range(trials) for v in range(n_variants)]


class Runner(Protocol):
    def __call__(self, variant: Variant, trial: int, out: Path) -> TrialResult: ...


@dataclass
class SubprocessRunner:
    """Runs `python -m perfkit.trial` in a fresh process (optionally under a wrapper command)."""

    seconds: float | None = None
    steps: int | None = None
    ppo: dict[str, Any] | None = None
    num_envs: int | None = None
    progress: bool = False
    prefix: list[str] = field(default_factory=list)  # e.g. `py-spy record ... --`
    launcher: list[str] | None = None  # replaces `python -m perfkit.trial` (Scalene runs a script path)
    extra: dict[str, Any] = field(default_factory=dict)  # more spec keys, e.g. torch_profiler

    def spec(self, variant: Variant) -> dict:
        spec: dict[str, Any] = {"scenario": variant.scenario.to_dict(), "seconds": self.seconds,
                                "steps": self.steps, "progress": self.progress}
        if self.ppo:
            spec["ppo"] = self.ppo
        if self.num_envs:
            spec["num_envs"] = self.num_envs
        return {**spec, **self.extra}

    def __call__(self, variant: Variant, trial: int, out: Path) -> TrialResult:
        out.parent.mkdir(parents=True, exist_ok=True)
        spec_path = out.with_suffix(".spec.json")
        atomic_write_text(spec_path, json.dumps(self.spec(variant), indent=1))
        launcher = self.launcher or [sys.executable, "-m", "perfkit.trial"]
        cmd = [*self.prefix, *launcher, str(spec_path), str(out)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=None if self.progress else subprocess.PIPE,
                                text=True, env=_child_env())
        try:
            _, err = proc.communicate()
        except KeyboardInterrupt:
            proc.wait()  # the child got the same SIGINT and saves a partial result
            raise
        if proc.returncode != 0 or not out.exists():
            tail = (err or "").strip().splitlines()[-15:]
            raise TrialFailed(f"trial {variant.label} #{trial} ({' '.join(cmd[:2])} ...) exited "
                              f"{proc.returncode}:\n" + "\n".join(tail))
        return TrialResult.load(out)


class TrialFailed(RuntimeError):
    pass


def _child_env() -> dict[str, str]:
    """The trial must import perfkit and envs from the same tree as this process."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


@dataclass
class CompareResult:
    variants: list[str]
    scenarios: dict[str, dict]
    trials: dict[str, list[dict]]  # label -> TrialResult dicts, in run order
    trials_planned: int
    interrupted: bool = False
    machine: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, dict] = field(default_factory=dict)  # label -> profiler artifacts

    def sps(self, label: str) -> list[float]:
        return [t["sps"] for t in self.trials.get(label, []) if not t.get("interrupted")]

    def rows(self) -> list[dict[str, Any]]:
        """Per variant: summary, comparison to the first variant, learning and phase means."""
        base = self.sps(self.variants[0]) if self.variants else []
        out = []
        for label in self.variants:
            xs = self.sps(label)
            row: dict[str, Any] = {"variant": label, "n": len(xs)}
            if xs:
                row["summary"] = stats.summarize(xs).to_dict()
                if base and label != self.variants[0]:
                    row["vs_first"] = stats.compare(base, xs).to_dict()
            done = [t for t in self.trials.get(label, []) if not t.get("interrupted")]
            if done:
                row["phases_ms_per_1k"] = _phase_ms_per_1k(done)
                row["learning"] = _mean_dicts([t["learning"] for t in done])
                row["env_config_hash"] = done[0].get("env_config_hash")
                row["agents_per_env"] = done[0]["vec"].get("agents_per_env")
            out.append(row)
        return out

    def to_dict(self) -> dict:
        return {
            "variants": self.variants, "scenarios": self.scenarios, "trials": self.trials,
            "trials_planned": self.trials_planned, "interrupted": self.interrupted, "machine": self.machine,
            "profiles": self.profiles, "rows": self.rows(),
        }

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, "compare", self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> CompareResult:
        d = read_json(path, "compare")
        return cls(d["variants"], d["scenarios"], d["trials"], d["trials_planned"], d.get("interrupted", False),
                   d.get("machine", {}), d.get("profiles", {}))


def _phase_ms_per_1k(trials: list[dict]) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in trials:
        steady_steps = sum(w["agent_steps"] for w in t["windows"][1:]) or t["agent_steps"]
        for k, secs in t["phases"].items():
            out[k] = out.get(k, 0.0) + 1000 * 1000 * secs / steady_steps / len(trials)
    return out


def _mean_dicts(ds: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for d in ds for k in d}
    return {k: sum(d[k] for d in ds if k in d) / sum(1 for d in ds if k in d) for k in sorted(keys)}


def run_compare(
    variants: list[Variant],
    trials: int,
    runner: Runner,
    run_dir: Path,
    on_trial: Callable[[int, int, Variant, TrialResult | None], None] | None = None,
) -> CompareResult:
    """Run the interleaved plan; after every trial, `sps.json` on disk is up to date. Ctrl-C stops
    the plan and returns what finished (with `interrupted=True`)."""
    result = CompareResult(
        variants=[v.label for v in variants],
        scenarios={v.label: v.scenario.to_dict() for v in variants},
        trials={v.label: [] for v in variants},
        trials_planned=trials,
        machine=machine_info(),
    )
    order = interleave(len(variants), trials)
    for i, (k, vi) in enumerate(order):
        v = variants[vi]
        try:
            tr = runner(v, k, run_dir / "trials" / v.slug / f"trial-{k}.json")
        except KeyboardInterrupt:
            result.interrupted = True
            partial = run_dir / "trials" / v.slug / f"trial-{k}.json"
            if partial.exists():
                result.trials[v.label].append({**TrialResult.load(partial).__dict__, "interrupted": True})
            break
        result.trials[v.label].append(tr.__dict__)
        result.save(run_dir / "sps.json")
        if on_trial is not None:
            on_trial(i, len(order), v, tr)
    result.save(run_dir / "sps.json")
    return result
