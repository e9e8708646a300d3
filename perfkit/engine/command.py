"""A trial of a user's own training command: run it, read its progress, stop it, record it.

The command runs in its own process group with `PYTHONUNBUFFERED=1` (a Python trainer's prints
then arrive as they happen, not in 8 KB blocks). Every line of its stdout and stderr is
timestamped as it arrives, written to the trial's log (`trial-K.log`) and read for the step
counter and the metrics (perfkit/core/progress.py). The trial's clock starts at the first line
that carries a step count: `warmup_seconds` later the steady part begins, and after `seconds` of
it the whole group gets SIGINT, then SIGTERM, then SIGKILL: nothing is left running. A command
that exits first is measured up to its last line; one that prints no step count within
`start_timeout` seconds fails with the regex and the last lines it printed.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from perfkit.core.children import signal_group
from perfkit.core.command import Command
from perfkit.core.machine import machine_info
from perfkit.core.progress import Progress, compile_metric, compile_progress, last_values, tail
from perfkit.core.scenario import Variant
from perfkit.core.sentinel import Sentinel, disturbed
from perfkit.core.timing import steady_state
from perfkit.records.trial import TrialResult

WARMUP_SECONDS = 10.0
START_TIMEOUT = 120.0
STOP_STEPS = ((signal.SIGINT, 5.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0))  # signal, then wait this long
TAIL_LINES = 15
ENV_FD = "PERFKIT_PROBE_FD"  # perfkit.probe.ENV_FD (not imported: importing the probe opens it)


@dataclass
class CommandRunner:
    """A `Runner` (perfkit/engine/local.py) for `Command` variants: one fresh process per trial."""

    seconds: float  # steady seconds measured after the warm-up
    warmup_seconds: float = WARMUP_SECONDS
    progress: str = "auto"  # a recogniser's name or a regex (group 1: cumulative steps)
    metrics: tuple[str, ...] = ()  # NAME=REGEX or a known NAME
    start_timeout: float = START_TIMEOUT
    min_window_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    extra_env: dict[str, str] = field(default_factory=dict)

    def __call__(self, variant: Variant, trial: int, out: Path) -> TrialResult:
        cmd: Command = variant.scenario  # type: ignore[assignment]
        out.parent.mkdir(parents=True, exist_ok=True)
        progress = Progress(compile_progress(self.progress), dict(compile_metric(m) for m in self.metrics))
        run = _Run(cmd, out.with_suffix(".log"), progress, self.clock, self.extra_env)
        sentinel = Sentinel()  # this process tree (the command included) against everything else
        sentinel.start()
        try:
            run.start()
        except OSError as e:
            return TrialResult.failed(cmd.to_dict(), variant.label, f"the command did not start: {e}")
        try:
            run.wait(self.warmup_seconds + self.seconds, self.start_timeout)
        except KeyboardInterrupt:
            run.stop()
            result = self._result(variant, run, interrupted=True)
            result.save(out)
            raise
        run.stop()
        result = self._result(variant, run)
        total = sentinel.total()
        if total is not None:
            result.sentinel = {**total.to_dict(), "disturbed": disturbed(total)}
        result.save(out)
        return result

    def _result(self, variant: Variant, run: _Run, interrupted: bool = False) -> TrialResult:
        cmd: Command = variant.scenario  # type: ignore[assignment]
        windows = run.progress.windows(self.warmup_seconds, self.min_window_s, until=run.stopped_at)
        sps, _ = steady_state(windows, 1)
        points = run.progress.points
        error = None if interrupted else self._error(run, windows)
        result = TrialResult(
            scenario=cmd.to_dict(), label=variant.label, sps=sps, first_window_sps=windows[0].sps if windows else 0.0,
            agent_steps=(points[-1][1] - points[0][1]) if points else 0, seconds=sum(w.seconds for w in windows),
            epochs=len(windows), phases=_steady_phases(windows), windows=[{**asdict(w), "sps": w.sps} for w in windows],
            learning=last_values(run.progress), env_config=None, env_config_hash=None, vec={}, device="", ppo={},
            interrupted=interrupted, machine=machine_info(), error=error,
            exit_status=run.code if run.exited_early else None, warmup_windows=1,
        )
        result.artifacts["log"] = run.log.name
        result.process_s = run.wall
        return result

    def _error(self, run: _Run, windows) -> str | None:
        """Why the trial measured nothing usable, or None."""
        points = run.progress.points
        if run.exited_early and run.code not in (0, None):
            return f"the command exited {run.code} before its time was up" + _last_lines(run)
        if not points:
            if run.timed_out:
                return (f"no progress: no line matched --progress {self.progress!r} within {self.start_timeout:g} s"
                        + _last_lines(run))
            return f"no progress: the command printed no line matching --progress {self.progress!r}" + _last_lines(run)
        if len(windows) < 2:
            return (f"the command ran {points[-1][0] - points[0][0]:.1f} s after its first step count, too short "
                    f"for its warm-up ({self.warmup_seconds:g} s) and one steady window; raise --seconds or lower "
                    "--warmup-seconds" + _last_lines(run))
        return None


def _steady_phases(windows) -> dict[str, float]:
    """Seconds per phase over the steady windows (reported by perfkit.probe; {} without it)."""
    out: dict[str, float] = {}
    for w in windows[1:]:
        for k, v in w.phases.items():
            out[k] = out.get(k, 0.0) + v
    return out


def _last_lines(run: _Run) -> str:
    lines = tail(run.recent, TAIL_LINES)
    return "; its last lines:\n" + "\n".join(lines) if lines else "; it printed nothing"


class _Run:
    """One command process: its output read on a thread, timestamped, logged and parsed."""

    def __init__(self, cmd: Command, log: Path, progress: Progress, clock: Callable[[], float],
                 extra_env: dict[str, str]):
        self.cmd, self.log, self.progress, self.clock = cmd, log, progress, clock
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra_env, **dict(cmd.env)}
        self.lines: queue.Queue = queue.Queue()
        self.recent: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.code: int | None = None
        self.exited_early = False
        self.timed_out = False
        self.stopped_at: float | None = None
        self.t0 = 0.0
        self.wall: float | None = None

    def start(self) -> None:
        self.t0 = self.clock()
        probe_r, probe_w = os.pipe()  # perfkit.probe in the trainer writes its counts here
        try:
            self.proc = subprocess.Popen(self.cmd.argv, cwd=self.cmd.cwd, env={**self.env, ENV_FD: str(probe_w)},
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, pass_fds=(probe_w,))
        except BaseException:
            os.close(probe_r)
            raise
        finally:
            os.close(probe_w)
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_probe, args=(probe_r,), daemon=True).start()

    def _read_probe(self, fd: int) -> None:
        with open(fd, "rb") as pipe:
            for raw in pipe:
                try:
                    report = json.loads(raw)
                    self.lines.put(("probe", float(report["t"]), int(report["steps"]), dict(report["phases"])))
                except (ValueError, KeyError, TypeError):
                    continue

    def _read(self) -> None:
        with open(self.log, "wb") as log:
            for raw in iter(self.proc.stdout.readline, b""):
                t = self.clock()
                log.write(raw)
                log.flush()
                self.lines.put((t, raw.decode(errors="replace")))
        self.lines.put(None)

    def wait(self, budget: float, start_timeout: float) -> None:
        """Until `budget` seconds after the first step count, the command's exit, or no step count
        within `start_timeout` seconds of the start."""
        while True:
            try:
                item = self.lines.get(timeout=0.1)
            except queue.Empty:
                item = ()
            if item is None:  # the output closed: the command is exiting
                self.exited_early = True
                return
            if item:
                self._take(item)
            now = self.clock()
            started = self.progress.started
            if started is None and now - self.t0 >= start_timeout:
                self.timed_out = True
                return
            if started is not None and now - started >= budget:
                return

    def stop(self) -> None:
        """Stop the whole process group (SIGINT, SIGTERM, SIGKILL, each given a few seconds)."""
        self.stopped_at = self.stopped_at or self.clock()
        proc = self.proc
        if proc is None:
            return
        for sig, wait in STOP_STEPS:
            if proc.poll() is not None:
                break
            signal_group(proc, sig)
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        if proc.poll() is None:
            proc.wait()
        signal_group(proc, signal.SIGKILL)  # what the command left behind in its group
        self.code = proc.returncode
        self.wall = self.clock() - self.t0
        self._drain()

    def _drain(self) -> None:
        """Lines still queued (printed before the stop) go to the tail; none count as progress
        after the stop."""
        while True:
            try:
                item = self.lines.get(timeout=1.0)
            except queue.Empty:
                return
            if item is None:
                return
            self._take(item, until=self.stopped_at)

    def _take(self, item: tuple, until: float | None = None) -> None:
        """One output line (t, line) or probe report ("probe", t, steps, phases); what arrived after
        `until` is not progress."""
        if item[0] == "probe":
            _, t, steps, phases = item
            if until is None or t <= until:
                self.progress.feed_probe(t, steps, phases)
            return
        t, line = item
        if until is None or t <= until:
            self.progress.feed(t, line)
        self.recent.append(line)
        del self.recent[:-TAIL_LINES]
