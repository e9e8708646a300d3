"""Plan variants, run their trials interleaved (A B C A B C ...), and turn the TrialResults into
per-variant statistics.

Interleaving spreads slow drifts of a shared machine (thermal, neighbours) over every variant
instead of charging them to whichever ran last. Round k runs every variant once; the paired
statistics use only complete rounds (every variant finished), so a failed or interrupted trial
never shifts the pairing of the others.

Nothing measured is lost: `sps.json` is rewritten atomically after every trial; a trial that
fails (its process killed, its env raising) is recorded with its exit status and the tail of its
stderr, and the plan goes on; Ctrl-C or SIGTERM stops the running trial, which saves what it
measured, and returns everything that finished.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from perfkit import stats
from perfkit.results import TrialResult, atomic_write_text, machine_info, read_json, write_json
from perfkit.scenario import Scenario

STDERR_TAIL = 15  # lines of a failed trial's stderr kept in its record


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
        return [Variant("defaults", base)]
    names = [name for name, _ in vary]
    if len(set(names)) != len(names):
        raise ValueError(f"an axis is varied twice: {', '.join(names)}")
    variants = []
    for combo in itertools.product(*(values for _, values in vary)):
        sc = base.with_values(**dict(zip(names, combo, strict=True)))
        variants.append(Variant(sc.label(names), sc))
    return variants


def interleave(n_variants: int, trials: int) -> list[tuple[int, int]]:
    """(round, variant index) in run order: round k runs every variant once."""
    return [(k, v) for k in range(trials) for v in range(n_variants)]


class Runner(Protocol):
    def __call__(self, variant: Variant, trial: int, out: Path) -> TrialResult: ...


class TrialFailed(RuntimeError):
    """A trial that produced no result (profilers raise it; `run_compare` records it instead)."""


@dataclass
class SubprocessRunner:
    """Runs `python -m perfkit.trial` in a fresh process (optionally under a wrapper command).

    The child runs in its own process group: a Ctrl-C or SIGTERM that reaches perfkit is forwarded
    to the whole group once (a profiler and the trial under it), so the trial saves its windows and
    nothing is left running. A trial that exits non-zero without a result comes back as a failed
    `TrialResult` with its exit status and the tail of its stderr."""

    seconds: float | None = None
    steps: int | None = None
    ppo: dict[str, Any] | None = None
    num_envs: int | None = None
    progress: bool = False
    prefix: list[str] = field(default_factory=list)  # e.g. `py-spy record ... --`
    launcher: list[str] | None = None  # replaces `python -m perfkit.trial` (Scalene runs a script path)
    extra: dict[str, Any] = field(default_factory=dict)  # more spec keys, e.g. torch_profiler
    grace_seconds: float = 30.0  # after forwarding a stop, how long the trial may take to save

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
        code, err = run_child(cmd, self.progress, self.grace_seconds)
        if out.exists():
            result = TrialResult.load(out)
            if code not in (0, 130) and not result.error:
                result.error, result.exit_status = _exit_text(code, err), code
            return result
        return TrialResult.failed(variant.scenario.to_dict(), variant.label, _exit_text(code, err), code)


def run_child(cmd: list[str], progress: bool = False, grace_seconds: float = 30.0) -> tuple[int, str]:
    """Run `cmd` in its own process group; (exit status, stderr text). On KeyboardInterrupt (Ctrl-C
    or a SIGTERM turned into one by `stop_on_sigterm`), SIGINT goes to the child's group once, the
    child gets `grace_seconds` to save, then SIGKILL; the KeyboardInterrupt is re-raised."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=None if progress else subprocess.PIPE,
                            text=True, env=_child_env(), start_new_session=True)
    try:
        _, err = proc.communicate()
    except KeyboardInterrupt:
        _signal_group(proc, signal.SIGINT)
        try:
            proc.communicate(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.communicate()
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
        raise
    return proc.returncode, err or ""


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _exit_text(code: int, err: str) -> str:
    how = f"killed by signal {-code} ({signal.Signals(-code).name})" if code < 0 else f"exited {code}"
    tail = [ln for ln in err.strip().splitlines() if ln.strip()][-STDERR_TAIL:]
    return f"trial process {how}" + ("; stderr:\n" + "\n".join(tail) if tail else " with no stderr")


def _child_env() -> dict[str, str]:
    """The trial must import perfkit and envs from the same tree as this process."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


class stop_on_sigterm:
    """Within this block SIGTERM behaves like Ctrl-C (KeyboardInterrupt in the main thread), so a
    killed `perfkit compare` stops its trial, keeps what finished and writes its table."""

    def __enter__(self):
        self._old = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        signal.signal(signal.SIGTERM, self._old)
        return False


@dataclass
class CompareResult:
    variants: list[str]
    scenarios: dict[str, dict]
    trials: dict[str, list[dict]]  # label -> TrialResult dicts (with "round"), in run order
    trials_planned: int  # rounds planned (the most rounds, when stopping at a precision)
    interrupted: bool = False
    machine: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, dict] = field(default_factory=dict)  # label -> profiler artifacts
    stopping: dict[str, Any] = field(default_factory=dict)  # the rule, and why the run stopped
    mode: str = "process"  # "process": a fresh process per trial; "inprocess": variants share one
    blocks: list[dict] = field(default_factory=list)  # inprocess: one epoch of every variant per round
    warmup_rounds: int = 0  # inprocess: rounds left out of the statistics

    def ok_trials(self, label: str) -> list[dict]:
        """Trials whose numbers count. In one shared process an interrupted session still counts:
        its blocks are paired round by round."""
        keep = ("ok", "interrupted") if self.mode == "inprocess" else ("ok",)
        return [t for t in self.trials.get(label, []) if t.get("status", _status(t)) in keep]

    def sps(self, label: str) -> list[float]:
        """The samples behind the summary: per trial, or per block (epoch) when variants share a process."""
        if self.mode == "inprocess":
            return [b["sps"][label] for b in self.blocks[self.warmup_rounds:] if b["sps"].get(label, 0) > 0]
        return [t["sps"] for t in self.ok_trials(label)]

    def failed(self, label: str) -> list[dict]:
        return [t for t in self.trials.get(label, []) if t.get("status", _status(t)) == "failed"]

    def paired(self, label: str) -> tuple[list[float], list[float]]:
        """(first variant's SPS, this variant's SPS) over rounds in which both finished."""
        first = {t.get("round", i): t["sps"] for i, t in enumerate(self.ok_trials(self.variants[0]))}
        this = {t.get("round", i): t["sps"] for i, t in enumerate(self.ok_trials(label))}
        rounds = sorted(set(first) & set(this))
        return [first[k] for k in rounds], [this[k] for k in rounds]

    def comparison(self, label: str) -> stats.Comparison | None:
        if label == self.variants[0]:
            return None
        if self.mode == "inprocess":
            from perfkit.inprocess import block_comparisons

            return block_comparisons(self.blocks, self.variants, self.warmup_rounds)[label][1] if self.blocks else None
        if not self.ok_trials(self.variants[0]):
            return None
        a, b = self.paired(label)
        return stats.compare_samples(a, b, paired=True)

    def rows(self) -> list[dict[str, Any]]:
        """Per variant: summary, comparison to the first variant, learning and phase means."""
        out = []
        for label in self.variants:
            xs = self.sps(label)
            row: dict[str, Any] = {"variant": label, "n": len(xs), "failed": len(self.failed(label))}
            if xs:
                row["summary"] = stats.summarize(xs).to_dict()
                c = self.comparison(label)
                if c is not None:
                    row["vs_first"] = c.to_dict()
            done = self.ok_trials(label)
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
            "profiles": self.profiles, "stopping": self.stopping, "mode": self.mode, "blocks": self.blocks,
            "warmup_rounds": self.warmup_rounds, "rows": self.rows(),
        }

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, "compare", self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> CompareResult:
        d = read_json(path, "compare")
        return cls(d["variants"], d["scenarios"], d["trials"], d["trials_planned"], d.get("interrupted", False),
                   d.get("machine", {}), d.get("profiles", {}), d.get("stopping", {}), d.get("mode", "process"),
                   d.get("blocks", []), d.get("warmup_rounds", 0))


def _status(t: dict) -> str:
    return "failed" if t.get("error") else "interrupted" if t.get("interrupted") else "ok"


def _phase_ms_per_1k(trials: list[dict]) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in trials:
        steady_steps = TrialResult.from_dict(t).steady_agent_steps or t["agent_steps"]
        for k, secs in t["phases"].items():
            out[k] = out.get(k, 0.0) + 1000 * 1000 * secs / steady_steps / len(trials)
    return out


def _mean_dicts(ds: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for d in ds for k in d}
    return {k: sum(d[k] for d in ds if k in d) / sum(1 for d in ds if k in d) for k in sorted(keys)}


@dataclass(frozen=True)
class StopRule:
    """When a compare stops: after `rounds` rounds, or once every ratio's 95% interval is within
    ±`precision` (at least `min_rounds` rounds, at most `rounds`), or when `max_seconds` pass.
    The rule looks only at the interval's width, never at which side of 1.0 it lies, so stopping
    early does not favour a verdict."""

    rounds: int
    precision: float | None = None
    max_seconds: float | None = None
    min_rounds: int = stats.MIN_ROUNDS

    def to_dict(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "precision": self.precision, "max_seconds": self.max_seconds,
                "min_rounds": self.min_rounds}


def precision_reached(result: CompareResult, precision: float, min_rounds: int) -> bool:
    comps = [result.comparison(label) for label in result.variants[1:]]
    if not comps or any(c is None for c in comps):
        return False
    n = min(len(result.paired(label)[0]) for label in result.variants[1:])
    return stats.precision_reached([c for c in comps if c is not None], precision, n, min_rounds)


def run_compare(
    variants: list[Variant],
    trials: int | StopRule,
    runner: Runner,
    run_dir: Path,
    on_trial: Callable[[int, int, Variant, TrialResult], None] | None = None,
    stop_on_failure: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> CompareResult:
    """Run the interleaved plan; after every trial, `sps.json` on disk is up to date. A failed trial
    is recorded and the plan goes on (unless `stop_on_failure`). Ctrl-C stops the plan and returns
    what finished (with `interrupted=True`)."""
    rule = trials if isinstance(trials, StopRule) else StopRule(trials)
    result = CompareResult(
        variants=[v.label for v in variants],
        scenarios={v.label: v.scenario.to_dict() for v in variants},
        trials={v.label: [] for v in variants},
        trials_planned=rule.rounds,
        machine=machine_info(),
        stopping={"rule": rule.to_dict(), "reason": "rounds"},
    )
    sps_json = run_dir / "sps.json"
    start = clock()
    n_total = rule.rounds * len(variants)
    i = 0
    try:
        for k in range(rule.rounds):
            for v in variants:
                out = run_dir / "trials" / v.slug / f"trial-{k}.json"
                try:
                    tr = runner(v, k, out)
                except KeyboardInterrupt:
                    result.interrupted = True
                    # The trial saved what it measured before it stopped; one stopped while still
                    # starting up has nothing to save, and is recorded as interrupted all the same.
                    tr = TrialResult.load(out) if out.exists() else TrialResult.failed(
                        v.scenario.to_dict(), v.label, error=None, interrupted=True)
                    result.trials[v.label].append({**tr.to_dict(), "round": k})
                    raise
                result.trials[v.label].append({**tr.to_dict(), "round": k})
                result.save(sps_json)
                i += 1
                if on_trial is not None:
                    on_trial(i, n_total, v, tr)
                if tr.status == "failed" and stop_on_failure:
                    result.stopping["reason"] = f"a trial of {v.label} failed (--stop-on-failure)"
                    return _finish(result, sps_json)
            if rule.precision is not None and k + 1 >= rule.min_rounds and \
                    precision_reached(result, rule.precision, rule.min_rounds):
                result.stopping["reason"] = "precision"
                break
            if rule.max_seconds is not None and clock() - start >= rule.max_seconds:
                result.stopping["reason"] = "time"
                break
    except KeyboardInterrupt:
        result.interrupted = True
        result.stopping["reason"] = "interrupted"
    return _finish(result, sps_json)


def _finish(result: CompareResult, sps_json: Path) -> CompareResult:
    result.stopping["rounds_run"] = max((t.get("round", 0) + 1 for ts in result.trials.values() for t in ts),
                                        default=0)
    result.save(sps_json)
    return result


def require_ok(tr: TrialResult) -> TrialResult:
    """For callers that need a measurement (profilers): a failed trial becomes `TrialFailed`."""
    if tr.error:
        raise TrialFailed(f"trial {tr.label} failed: {tr.error}")
    return tr


def run_inprocess(
    variants: list[Variant],
    rule: StopRule,
    run_dir: Path,
    seconds: float | None = None,
    steps: int | None = None,
    ppo: dict[str, Any] | None = None,
    num_envs: int | None = None,
    progress: bool = True,
) -> CompareResult:
    """All variants in ONE fresh process (`python -m perfkit.inprocess`), epoch-interleaved. The
    budget is the same training time per variant as `rule.rounds` trials of `seconds` each (or
    `steps` agent-steps), unless the precision is reached first or `rule.max_seconds` passes."""
    from perfkit.inprocess import SessionSpec

    budget = None
    if seconds is not None:
        budget = rule.rounds * seconds * len(variants)
        if rule.precision is not None:
            budget = rule.max_seconds or budget
        elif rule.max_seconds is not None:
            budget = min(budget, rule.max_seconds)
    spec = SessionSpec(variants=[{"label": v.label, "scenario": v.scenario.to_dict()} for v in variants],
                       seconds=budget, agent_steps=rule.rounds * steps if steps is not None else None,
                       precision=rule.precision, min_rounds=rule.min_rounds,
                       ppo=ppo or {}, num_envs=num_envs, progress=progress)
    session_dir = run_dir / "session"
    session_dir.mkdir(parents=True, exist_ok=True)
    spec_path, out = session_dir / "session.spec.json", session_dir / "session.json"
    atomic_write_text(spec_path, json.dumps(spec.__dict__, indent=1))
    result = CompareResult(
        variants=[v.label for v in variants], scenarios={v.label: v.scenario.to_dict() for v in variants},
        trials={v.label: [] for v in variants}, trials_planned=1, machine=machine_info(),
        stopping={"rule": rule.to_dict(), "reason": "rounds"}, mode="inprocess",
    )
    try:
        code, err = run_child([sys.executable, "-m", "perfkit.inprocess", str(spec_path), str(out)], progress)
    except KeyboardInterrupt:
        code, err = 130, ""
        result.interrupted = True
    if out.exists():
        data = json.loads(out.read_text())
        result.blocks, result.warmup_rounds = data["blocks"], data["warmup_rounds"]
        result.trials = {k: [{**t, "round": 0}] for k, t in data["trials"].items()}
        result.stopping["reason"] = data["stop_reason"]
        result.interrupted = result.interrupted or data["interrupted"]
    elif code != 0:
        error = _exit_text(code, err) if code != 130 else None
        for v in variants:
            result.trials[v.label].append({**TrialResult.failed(v.scenario.to_dict(), v.label, error,
                                                                code, interrupted=code == 130).to_dict(), "round": 0})
    result.stopping["rounds_run"] = len(result.blocks)
    result.save(run_dir / "sps.json")
    return result

