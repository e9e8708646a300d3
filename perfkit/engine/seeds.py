"""Trials side by side: up to `parallel` fresh trial processes at a time (`perfkit learn`'s seeds).

Learning numbers are compared at equal agent-steps, not per second, so trials need not be timed
against one another: on a machine with more cores than one trial uses, several seeds train at
once. Every trial is `python -m perfkit.engine.trial` in its own process group with its own record
file, told how many cores it may use (its torch threads follow). Ctrl-C or SIGTERM (as a
KeyboardInterrupt) goes to every running trial once; each saves what it measured, and the
finished ones are returned with the interrupted ones marked.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfkit.core.children import child_env, exit_text, signal_group
from perfkit.core.files import atomic_write_text
from perfkit.records.store import ResultsError
from perfkit.records.trial import TrialResult

GPU_TRIALS_PER_DEVICE = 4  # seeds sharing one GPU: small policies leave it mostly idle, more only queue
GRACE_SECONDS = 30.0  # after a forwarded stop, how long a trial may take to save
POLL_SECONDS = 0.2


def seeds_at_once(cpus: float, workers: int = 0, gpus: float = 0) -> int:
    """Seeds one machine trains side by side: one per core a trial keeps busy (its main process
    plus its rollout workers), at least one; with GPUs at most GPU_TRIALS_PER_DEVICE per GPU."""
    n = max(1, int(cpus) // (1 + workers))
    return min(n, max(1, int(GPU_TRIALS_PER_DEVICE * gpus))) if gpus else n


@dataclass(frozen=True)
class TrialJob:
    """One trial to run: the spec `perfkit.engine.trial` reads, where its record goes, and what to
    call it if it leaves no record (scenario dict, label)."""

    spec: dict[str, Any]
    out: Path
    scenario: dict[str, Any]
    label: str
    module: str = "perfkit.engine.trial"  # what runs it: `python -m MODULE SPEC OUT` (a command: perfkit.engine.command)


def run_parallel(jobs: list[TrialJob], parallel: int, on_done: Callable[[TrialJob, TrialResult], None] | None = None,
                 launcher: list[str] | None = None, grace_seconds: float = GRACE_SECONDS,
                 poll: float = POLL_SECONDS) -> list[TrialResult]:
    """Run `jobs` in order, at most `parallel` at once; results in the order of `jobs`. A trial
    that exits non-zero without a record is a failed TrialResult (exit status, stderr tail). On
    KeyboardInterrupt every running trial is stopped and saves; the results so far (the stopped
    ones marked interrupted, the ones never started left out) are attached to the re-raised
    exception as `.results`, (job, result) pairs."""
    pending = list(enumerate(jobs))
    running: dict[int, tuple[subprocess.Popen, TrialJob, float]] = {}
    results: dict[int, TrialResult] = {}
    try:
        while pending or running:
            while pending and len(running) < parallel:
                i, job = pending.pop(0)
                running[i] = (_start(job, launcher or [sys.executable, "-m", job.module]), job, time.monotonic())
            for i, (proc, job, t0) in list(running.items()):
                if proc.poll() is not None:
                    results[i] = _collect(proc, job, time.monotonic() - t0)
                    del running[i]
                    if on_done is not None:
                        on_done(job, results[i])
            if running:
                time.sleep(poll)
    except KeyboardInterrupt as stop:
        _stop(running, results, grace_seconds)
        stop.results = [(jobs[i], results[i]) for i in sorted(results)]
        raise
    except BaseException:  # anything else (a full disk in on_done): no trial may outlive this call
        _stop(running, results, grace_seconds)
        raise
    return [results[i] for i in sorted(results)]


def _stop(running: dict, results: dict, grace_seconds: float) -> None:
    """Every running trial stopped once (SIGINT to its group), given `grace_seconds` to save, then
    killed; its record (marked interrupted) goes into `results`."""
    for proc, _, _ in running.values():
        signal_group(proc, signal.SIGINT)
    deadline = time.monotonic() + grace_seconds
    for i, (proc, job, t0) in running.items():
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            signal_group(proc, signal.SIGKILL)
            proc.wait()
        tr = _collect(proc, job, time.monotonic() - t0, stopped=True)
        tr.interrupted = True
        results[i] = tr
    running.clear()


def _start(job: TrialJob, launcher: list[str]) -> subprocess.Popen:
    job.out.parent.mkdir(parents=True, exist_ok=True)
    spec_path = job.out.with_suffix(".spec.json")
    atomic_write_text(spec_path, json.dumps(job.spec, indent=1))
    err = open(job.out.with_suffix(".stderr"), "w")  # a file, not a pipe: nobody reads it while trials run
    try:
        return subprocess.Popen([*launcher, str(spec_path), str(job.out)], stdout=subprocess.DEVNULL, stderr=err,
                                env=child_env(), start_new_session=True)
    finally:
        err.close()


def _collect(proc: subprocess.Popen, job: TrialJob, wall: float, stopped: bool = False) -> TrialResult:
    err_path = job.out.with_suffix(".stderr")
    err = err_path.read_text(errors="replace") if err_path.exists() else ""
    result = load_trial(job.out, proc.returncode, err, job.scenario, job.label, stopped)
    result.process_s = wall
    return result


def load_trial(out: Path, code: int, err: str, scenario: dict[str, Any], label: str,
               stopped: bool = False) -> TrialResult:
    """What a trial process left: its record (with the exit status and stderr tail as its error
    when it exited badly without one of its own), or a failed TrialResult when it left none;
    one we stopped before it could save is interrupted, with no error of its own."""
    try:
        result = TrialResult.load(out)
    except ResultsError:  # no record (killed before it saved) or one cut short
        result = None
    return _with_exit(result, code, err, scenario, label, stopped)


def load_trial_dict(data: dict[str, Any] | None, code: int, err: str, scenario: dict[str, Any], label: str,
                    stopped: bool = False) -> TrialResult:
    """`load_trial` for a record that came back as a dict (from a node of a cluster), None for none."""
    return _with_exit(TrialResult.from_dict(data) if data is not None else None, code, err, scenario, label, stopped)


def _with_exit(result: TrialResult | None, code: int, err: str, scenario: dict[str, Any], label: str,
               stopped: bool) -> TrialResult:
    if result is None:
        return TrialResult.failed(scenario, label, None if stopped else exit_text(code, err),
                                  None if stopped else code, interrupted=stopped)
    if code not in (0, 130) and not result.error:
        result.error, result.exit_status = exit_text(code, err), code
    return result
