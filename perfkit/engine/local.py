"""Plan variants, run their trials interleaved (A B C A B C ...), and collect the TrialResults in
a CompareResult (perfkit/records/compare.py, which derives the per-variant statistics).

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

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from perfkit.core import stats
from perfkit.core.children import exit_text, run_child
from perfkit.core.files import atomic_write_text
from perfkit.core.machine import machine_info
from perfkit.core.scenario import Variant
from perfkit.engine.rounds import ROUNDS, Rounds, StopRule
from perfkit.engine.seeds import load_trial
from perfkit.records.compare import CompareResult
from perfkit.records.trial import TrialResult

if TYPE_CHECKING:
    from perfkit.engine.profilers.pyspy import Sampling



class Runner(Protocol):
    def __call__(self, variant: Variant, trial: int, out: Path) -> TrialResult: ...


@dataclass
class SubprocessRunner:
    """Runs `python -m perfkit.engine.trial` in a fresh process (optionally under a wrapper command).

    The child runs in its own process group: a Ctrl-C or SIGTERM that reaches perfkit is forwarded
    to the whole group once (a profiler and the trial under it), so the trial saves its windows and
    nothing is left running. A trial that exits non-zero without a result comes back as a failed
    `TrialResult` with its exit status and the tail of its stderr."""

    seconds: float | None = None
    steps: int | None = None
    ppo: dict[str, Any] | None = None
    num_envs: int | None = None
    prefix: list[str] = field(default_factory=list)  # e.g. `py-spy record ... --`
    launcher: list[str] | None = None  # replaces `python -m perfkit.engine.trial` (Scalene runs a script path)
    extra: dict[str, Any] = field(default_factory=dict)  # more spec keys, e.g. torch_profiler
    grace_seconds: float = 30.0  # after forwarding a stop, how long the trial may take to save
    module = "perfkit.engine.trial"  # a cluster node runs a trial as `python -m MODULE SPEC OUT`

    def spec(self, variant: Variant) -> dict:
        spec: dict[str, Any] = {"scenario": variant.scenario.to_dict(), "seconds": self.seconds,
                                "steps": self.steps}
        if self.ppo:
            spec["ppo"] = self.ppo
        if self.num_envs:
            spec["num_envs"] = self.num_envs
        return {**spec, **self.extra}

    def __call__(self, variant: Variant, trial: int, out: Path) -> TrialResult:
        out.parent.mkdir(parents=True, exist_ok=True)
        spec_path = out.with_suffix(".spec.json")
        atomic_write_text(spec_path, json.dumps(self.spec(variant), indent=1))
        launcher = self.launcher or [sys.executable, "-m", "perfkit.engine.trial"]
        cmd = [*self.prefix, *launcher, str(spec_path), str(out)]
        t0 = time.monotonic()
        code, err = run_child(cmd, grace_seconds=self.grace_seconds)
        wall = time.monotonic() - t0
        result = load_trial(out, code, err, variant.scenario.to_dict(), variant.label)
        if out.exists():
            result.process_s = wall
        return result


class SamplingRunner:
    """A trial runner that samples each trial with py-spy (`sampling`) into `<trial>.folded` (the
    trial's epochs run under marker frames, so warm-up samples are left out later)."""

    def __init__(self, runner, sampling):
        self.runner, self.sampling = runner, sampling

    def __call__(self, variant, trial: int, out):
        folded = out.with_suffix(".folded")
        out.parent.mkdir(parents=True, exist_ok=True)
        tr = replace(self.runner, prefix=self.sampling.prefix(folded))(variant, trial, out)
        tr.artifacts["folded"] = str(folded)
        return tr


def precision_reached(result: CompareResult, precision: float, min_rounds: int) -> bool:
    comps = result.comparisons()
    if not comps or len(comps) < len(result.variants) - 1:
        return False
    n = min(len(result.paired(label)[0]) for label in result.variants[1:])
    return stats.precision_reached(list(comps.values()), precision, n, min_rounds)


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
        stopping={"rule": rule.to_dict(), "reason": ROUNDS},
    )
    sps_json = run_dir / "sps.json"
    rounds = Rounds(rule, clock)
    progress = {"done": 0, "total": rule.rounds * len(variants)}
    try:
        while rounds.more():
            for attempt in range(rule.reruns + 1):
                this_round = _one_round(variants, rounds.done, attempt, runner, run_dir, result, progress, on_trial,
                                        stop_on_failure)
                failed = next((t for t in this_round if t.status == "failed"), None)
                if failed is not None and stop_on_failure:
                    result.stopping["reason"] = f"a trial of {failed.label} failed (--stop-on-failure)"
                    return _finish(result, sps_json)
                # A round in which other processes took the machine says little about the code:
                # re-run it whole (the pairs stay pairs), at most `reruns` times; the disturbed
                # trials stay in the record, marked replaced.
                if attempt == rule.reruns or not any(t.sentinel.get("disturbed") for t in this_round):
                    break
                for t in this_round:
                    t.replaced = True
                result.save(sps_json)
                progress["total"] += len(variants)
            rounds.finished(lambda: precision_reached(result, rule.precision, rule.min_rounds))
        result.stopping["reason"] = rounds.reason
    except KeyboardInterrupt:
        result.interrupted = True
        result.stopping["reason"] = "interrupted"
    return _finish(result, sps_json)


def _one_round(variants: list[Variant], k: int, attempt: int, runner: Runner, run_dir: Path, result: CompareResult,
               progress: dict[str, int], on_trial, stop_on_failure: bool) -> list[TrialResult]:
    """Round k: every variant once, each trial recorded (and sps.json rewritten) as it ends. Stops
    at the first failed trial when the caller stops on failure: it returns the round so far."""
    this_round = []
    for v in variants:
        suffix = f"-rerun{attempt}" if attempt else ""
        out = run_dir / "trials" / v.slug / f"trial-{k}{suffix}.json"
        try:
            tr = runner(v, k, out)
        except KeyboardInterrupt:
            result.interrupted = True
            # The trial saved what it measured before it stopped; one stopped while still starting
            # up has nothing to save, and is recorded as interrupted all the same.
            tr = TrialResult.load(out) if out.exists() else TrialResult.failed(
                v.scenario.to_dict(), v.label, error=None, interrupted=True)
            tr.round = k
            result.trials[v.label].append(tr)
            raise
        tr.round = k
        result.trials[v.label].append(tr)
        this_round.append(tr)
        result.save(run_dir / "sps.json")
        progress["done"] += 1
        if on_trial is not None:
            on_trial(progress["done"], progress["total"], v, tr)
        if tr.status == "failed" and stop_on_failure:
            break
    return this_round


def _finish(result: CompareResult, sps_json: Path) -> CompareResult:
    result.stopping["rounds_run"] = max((t.round + 1 for ts in result.trials.values() for t in ts), default=0)
    result.save(sps_json)
    return result


def run_inprocess(
    variants: list[Variant],
    rule: StopRule,
    run_dir: Path,
    seconds: float | None = None,
    steps: int | None = None,
    ppo: dict[str, Any] | None = None,
    num_envs: int | None = None,
    progress: bool = True,
    sampling: Sampling | None = None,
) -> CompareResult:
    """All variants in ONE fresh process (`python -m perfkit.engine.session`), epoch-interleaved. The
    budget is the same training time per variant as `rule.rounds` trials of `seconds` each (or
    `steps` agent-steps), unless the precision is reached first or `rule.max_seconds` passes.
    With `sampling`, py-spy samples the whole session (session/session.folded) as it says;
    the blocks' marker frames split its stacks by variant and round (perfkit/records/blocks.py)."""
    import resource

    spec = session_spec(variants, rule, seconds, steps, ppo, num_envs, progress)
    session_dir = run_dir / "session"
    session_dir.mkdir(parents=True, exist_ok=True)
    spec_path, out = session_dir / "session.spec.json", session_dir / "session.json"
    atomic_write_text(spec_path, json.dumps(spec.__dict__, indent=1))
    result = CompareResult(
        variants=[v.label for v in variants], scenarios={v.label: v.scenario.to_dict() for v in variants},
        trials={v.label: [] for v in variants}, trials_planned=1, machine=machine_info(),
        stopping={"rule": rule.to_dict(), "reason": ROUNDS}, mode="inprocess",
    )
    cmd = [sys.executable, "-m", "perfkit.engine.session", str(spec_path), str(out)]
    folded = session_dir / "session.folded"
    if sampling:
        cmd = [*sampling.prefix(folded, subprocesses=False), *cmd]
    before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    try:
        code, err = run_child(cmd, progress)
    except KeyboardInterrupt:
        code, err = 130, ""
        result.interrupted = True
    after, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic() - t0
    if out.exists():
        data = json.loads(out.read_text())
        if sampling:
            children = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
            # the samples' path relative to the run directory: a copy of the directory reads its own
            result.sampler = {**sampling.to_dict(), "folded": str(folded.relative_to(run_dir)),
                              "sampler_cores": sampler_cores(children, data.get("cpu_seconds", 0.0), wall)}
        _take_session(result, data)
    elif code != 0:
        error = exit_text(code, err) if code != 130 else None
        for v in variants:
            tr = TrialResult.failed(v.scenario.to_dict(), v.label, error, code, interrupted=code == 130)
            tr.round = 0
            result.trials[v.label].append(tr)
    result.stopping["rounds_run"] = len(result.blocks)
    result.save(run_dir / "sps.json")
    return result


def session_spec(variants: list[Variant], rule: StopRule, seconds: float | None, steps: int | None,
                 ppo: dict[str, Any] | None, num_envs: int | None, progress: bool):
    """The one-process session's spec for a compare's rule: the same training time per variant as
    `rule.rounds` trials of `seconds` (or `steps`), or `rule.max_seconds` with a precision."""
    from perfkit.engine.session import SessionSpec

    budget = None
    if seconds is not None:
        budget = rule.rounds * seconds * len(variants)
        if rule.precision is not None:
            budget = rule.max_seconds or budget
        elif rule.max_seconds is not None:
            budget = min(budget, rule.max_seconds)
    return SessionSpec(variants=[{"label": v.label, "scenario": v.scenario.to_dict()} for v in variants],
                       seconds=budget, agent_steps=rule.rounds * steps if steps is not None else None,
                       precision=rule.precision, min_rounds=rule.min_rounds, min_seconds=rule.min_seconds,
                       ppo=ppo or {}, num_envs=num_envs, progress=progress,
                       rebuild_seconds=rebuild_seconds(budget, len(variants)))


def rebuild_seconds(budget: float | None, variants: int) -> float:
    """How often the session rebuilds its trainers in the next order: every REBUILD_SECONDS, or
    often enough that a short budget still sees every build order twice."""
    from perfkit.engine.session import REBUILD_SECONDS

    return REBUILD_SECONDS if budget is None else min(REBUILD_SECONDS, budget / (2 * variants))


def sampler_cores(children_cpu: float, session_cpu: float, wall: float) -> float | None:
    """The sampler's own CPU, in cores. py-spy is our child; the session it started is counted
    among our children only when py-spy reaped it, so the session's own CPU comes off only when
    it is in there."""
    sampler_cpu = children_cpu - session_cpu if children_cpu >= session_cpu else children_cpu
    return sampler_cpu / wall if wall > 0 else None


def _take_session(result: CompareResult, data: dict) -> None:
    """The session's record into the compare's: its blocks, one trial per variant, why it stopped."""
    result.blocks, result.warmup_rounds = data["blocks"], data["warmup_rounds"]
    result.trials = {k: [TrialResult.from_dict({**t, "round": 0})] for k, t in data["trials"].items()}
    result.stopping["reason"] = data["stop_reason"]
    result.interrupted = result.interrupted or data["interrupted"]


@dataclass
class Interleave:
    """How `--mode interleave` runs commands: blocks of `block_seconds` each (longer when a command
    prints its count less often), after `warmup_seconds` of each alone; `processes` sets of fresh
    processes one after another, the budget shared between them."""

    block_seconds: float = 0.3
    batch_seconds: float = 3.0  # each command's running time per batch mean of the statistics
    warmup_seconds: float = 10.0
    progress: str = "auto"
    metrics: tuple[str, ...] = ()
    start_timeout: float = 120.0
    warmup_rounds: int = 1  # rounds left out after the warm-up: the first resume after a long pause
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: int = 1


@dataclass
class _ProcessSet:
    """One process per command, started together and run in turns: the g-th of a compare's sets."""

    index: int
    commands: dict[str, Any]  # label -> PausedCommand
    first_round: int  # its rounds' numbers in the compare start here
    recorded: bool = False  # its commands are in the compare's trials


def run_interleaved(variants: list[Variant], rule: StopRule, run_dir: Path, how: Interleave, seconds: float,
                    on_round: Callable[[int, dict], None] | None = None, clock: Callable[[], float] = time.monotonic,
                    sampling: Sampling | None = None) -> CompareResult:
    """Every command started once and run in turns (perfkit/engine/command.py: `PausedCommand`),
    block by block in the session's rotating rounds; only one of them runs at any moment. The budget
    is the same running time per command as `rule.rounds` trials of `seconds` (or `rule.max_seconds`
    with a precision), counted from the start, warm-ups included. With `how.processes` > 1 the
    budget is shared by that many sets of fresh processes, one set after another (each started in
    a rotated order and warmed up alone), and the interval is taken over the sets
    (`stats.compare_processes`): a process's own speed offset is then inside it. A precision can
    stop the compare after any set from the second on. Ctrl-C, a command that exits or stops
    printing progress: every command is stopped, and what was measured is recorded. With
    `sampling`, py-spy records every block of every command (`BlockSampler`), and the blocks'
    stacks go to one folded file under marker frames, as a one-process session's do."""
    import resource

    t_start, wall0 = clock(), time.monotonic()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    result = CompareResult(
        variants=[v.label for v in variants], scenarios={v.label: v.scenario.to_dict() for v in variants},
        trials={v.label: [] for v in variants}, trials_planned=1, machine=machine_info(),
        stopping={"rule": rule.to_dict(), "reason": ROUNDS}, mode="interleave",
    )
    budget = interleave_budget(rule, seconds, len(variants))
    planned = how.processes if budget is not None else 1  # sets share a budget; without one, a single set
    result.trials_planned = planned
    result.warmup_rounds = how.warmup_rounds
    sps_json = run_dir / "sps.json"
    sets: list[_ProcessSet] = []
    errors: dict[str, str] = {}
    try:
        for g in range(planned):
            pset = _ProcessSet(g, {}, len(result.blocks))
            sets.append(pset)
            _start_set(pset, variants, run_dir, how, planned, clock, sampling, errors)
            if g == 0:
                _fit_blocks(pset, how, len(variants), result)
            for pc in pset.commands.values():
                pc.block_seconds = result.stopping["block_seconds"]
            # this set's share: up to its fraction of the budget, counted from the compare's start
            left = None if budget is None else max(budget * (g + 1) / planned - (clock() - t_start), 0.0)
            session = _run_set(pset, how, rule, left, result, on_round, sps_json, clock, planned)
            errors.update(session.errors)
            result.stopping["reason"] = session.stop_reason
            result.interrupted = session.interrupted
            _stop_set(pset, result, errors, run_dir)
            result.save(sps_json)
            if session.interrupted or session.errors:
                break
            if planned > 1 and g + 1 >= MIN_SETS_FOR_PRECISION and rule.precision is not None and \
                    stats.precision_reached(list(result.comparisons().values()), rule.precision, g + 1,
                                            MIN_SETS_FOR_PRECISION):
                result.stopping["reason"] = "precision"
                break
    except _SetFailed:  # at a start (its error is recorded): nothing more to compare
        result.stopping["reason"] = f"{next(iter(errors))} failed to start"
    except KeyboardInterrupt:
        result.interrupted = True
        result.stopping["reason"] = "interrupted"
    finally:
        for pset in sets:
            _stop_set(pset, result, errors, run_dir)
    result.stopping["rounds_run"] = len(result.blocks)
    result.stopping["processes"] = _sets_measured(result)
    # perfkit's own CPU while the commands ran (reading their lines, the sentinel, the rounds), in
    # cores: on a machine with cores to spare it takes none from them; on a full one, at most this
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.monotonic() - wall0
    own = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    result.stopping["perfkit_cores"] = own / wall if wall > 0 else None
    if sampling:
        result.sampler = {**sampling.to_dict(), "blocking": False, "folded": "samples.folded"}
        _marked_samples(sets, result.warmup_rounds, run_dir / "samples.folded")
    result.save(sps_json)
    return result


MIN_SETS_FOR_PRECISION = 4  # a precision may end a compare in sets only from this many on (3 degrees of freedom)


def _sets_measured(result: CompareResult) -> int:
    """How many process sets gave every variant at least one steady batch mean: the sets the
    interval is taken over (a set whose time went to its start gave none)."""
    counts = [sum(1 for v in groups.values() if v) for groups in (
        stats.block_log_ratios(result.blocks, result.variants[0], label, result.warmup_rounds,
                               result.stopping.get("batch_rounds") or len(result.variants))
        for label in result.variants[1:])]
    return min(counts, default=0)


def interleave_budget(rule: StopRule, seconds: float, n: int) -> float | None:
    """The running time of commands in turns, warm-ups included: `rule.rounds` trials of `seconds`
    per command, or `rule.max_seconds` (with a precision, or when shorter); None: no limit."""
    budget = rule.rounds * seconds * n if rule.rounds else None
    if rule.precision is not None or budget is None:
        return rule.max_seconds or budget
    if rule.max_seconds is not None:
        return min(budget, rule.max_seconds)
    return budget


class _SetFailed(Exception):
    """A command of a process set did not get through its start (the error is recorded)."""


def _start_set(pset: _ProcessSet, variants: list[Variant], run_dir: Path, how: Interleave, planned: int, clock,
               sampling, errors: dict[str, str]) -> None:
    """Start set g's commands one at a time, each alone through its warm-up, in an order rotated
    by g (so no command always starts first), then paused."""
    from perfkit.engine.command import BlockSampler, CommandExited, PausedCommand
    from perfkit.engine.rounds import rotation

    g = pset.index
    for v in rotation(variants, g):
        log = run_dir / "trials" / v.slug / f"trial-{g}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        sampler = BlockSampler(sampling.rate, log.parent / f"samples-{g}") if sampling else None
        pc = PausedCommand(v, log, how.progress, how.metrics, how.block_seconds, how.start_timeout, clock,
                           how.extra_env, sampler=sampler)
        pset.commands[v.label] = pc
        which = f", process set {g + 1} of {planned}" if planned > 1 else ""
        print(f"starting {v.label} (alone until {how.warmup_seconds:g} s after its first step count{which})",
              file=sys.stderr, flush=True)
        try:
            pc.start(how.warmup_seconds)
        except CommandExited as e:
            errors[v.label] = str(e)
            raise _SetFailed from None
    pset.commands = {v.label: pset.commands[v.label] for v in variants}  # the compare's order


def _fit_blocks(pset: _ProcessSet, how: Interleave, n: int, result: CompareResult) -> None:
    """A command that prints its count seldom gets longer blocks (two of its usual gaps). A block's
    own rate is rough (where its last count fell moves steps to the next block), but blocks tile
    the run, so the statistics take batch means over `batch_seconds` of each command's running:
    the error of a batch is that of its two ends only. Short blocks pair the commands closely (a
    shared machine's speed drifts by 10-20% from one second to the next). Fitted on the first set,
    kept for the others."""
    gaps = sorted(g for pc in pset.commands.values() for g in pc.gaps()[-50:])
    block = max(how.block_seconds, 2 * gaps[int(0.9 * (len(gaps) - 1))]) if gaps else how.block_seconds
    batch = max(n, math.ceil(how.batch_seconds / block / n) * n)  # whole rotations
    result.stopping.update(block_seconds=block, batch_rounds=batch)


def _run_set(pset: _ProcessSet, how: Interleave, rule: StopRule, seconds: float | None, result: CompareResult,
             on_round, sps_json: Path, clock, planned: int):
    """The rounds of one process set, for `seconds`; its blocks join the compare's, numbered on
    from the sets before it and tagged with the set. With one set the precision may stop the rounds
    inside it; with several it is asked between sets, over them (`run_interleaved`)."""
    from perfkit.engine.session import SessionSpec, run_rounds

    before = result.blocks[:pset.first_round]
    spec = SessionSpec(variants=[], seconds=seconds, precision=rule.precision if planned == 1 else None,
                       min_rounds=rule.min_rounds, min_seconds=rule.min_seconds, warmup_rounds=how.warmup_rounds,
                       batch_rounds=result.stopping["batch_rounds"])

    def tagged(blocks: list[dict]) -> list[dict]:
        for i, b in enumerate(blocks):
            b["round"] = pset.first_round + i
            if planned > 1:
                b["process"] = pset.index
        return before + blocks

    def save(s) -> None:
        result.blocks = tagged(s.blocks)
        result.save(sps_json)

    def numbered(r: int, block: dict) -> None:
        if on_round is not None:
            on_round(pset.first_round + r, block)

    session = run_rounds(pset.commands, spec, numbered, save, clock)
    result.blocks = tagged(session.blocks)
    return session


def _stop_set(pset: _ProcessSet, result: CompareResult, errors: dict[str, str], run_dir: Path) -> None:
    """Stop the set's commands and record each as trial g of its variant (once)."""
    if pset.recorded:
        return
    for pc in pset.commands.values():
        try:
            pc.stop()
        except KeyboardInterrupt:  # a Ctrl-C while stopping: stop this one anyway, and the rest
            result.interrupted = True
            pc.stop()
    pset.recorded = True
    for label, pc in pset.commands.items():
        if pset.index > 0 and not pc.blocks and label not in errors:
            continue  # started, never run: another command of this later set failed to start
        tr = pc.result(result.warmup_rounds, result.interrupted, errors.get(label))
        tr.round = pset.index
        tr.save(run_dir / "trials" / pc.variant.slug / f"trial-{pset.index}.json")
        result.trials[label].append(tr)


def _marked_samples(sets: list[_ProcessSet], warmup_rounds: int, out: Path) -> None:
    """Every command's per-block py-spy files as one folded file, each block's stacks under its
    marker frame (perfkit/core/markers.py), so explain splits them by variant and round."""
    from perfkit.core.folded import Profile, read_folded, to_folded
    from perfkit.core.markers import marker_name

    stacks: dict[tuple[str, ...], float] = {}
    for pset in sets:
        for label, pc in pset.commands.items():
            for r, path in enumerate(pc.sampler.files if pc.sampler else []):
                if path is None:
                    continue
                marker = marker_name(label, pset.first_round + r, warmup=r < warmup_rounds)
                for stack, n in read_folded(path, torn_ok=True).stacks.items():
                    key = (marker, *stack)
                    stacks[key] = stacks.get(key, 0.0) + n
    atomic_write_text(out, to_folded(Profile(stacks)))
