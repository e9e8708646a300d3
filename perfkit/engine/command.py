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

import itertools
import json
import math
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from perfkit.core import learning_stats as ls
from perfkit.core.children import signal_group
from perfkit.core.command import Command
from perfkit.core.machine import machine_info
from perfkit.core.progress import Progress, compile_progress, last_values, metric_patterns, tail
from perfkit.core.scenario import Variant
from perfkit.core.sentinel import Sentinel, disturbed
from perfkit.core.timing import Window, steady_state
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
    prefix: list[str] = field(default_factory=list)  # e.g. `py-spy record ... --` (perfkit profile --cmd)
    module = "perfkit.engine.command"  # a cluster node runs a trial as `python -m MODULE SPEC OUT`

    def spec(self, variant: Variant) -> dict:
        """One trial as a node runs it (`main`): the command, run in this machine's working
        directory unless it names one (a shared or identical file system, as for PYTHONPATH), seeing
        the user's PYTHONPATH, measured as this runner measures it."""
        cmd = variant.scenario.to_dict()  # type: ignore[union-attr]
        cmd["cwd"] = cmd.get("cwd") or os.getcwd()
        return {"command": cmd, "label": variant.label, "seconds": self.seconds,
                "warmup_seconds": self.warmup_seconds, "progress": self.progress, "metrics": list(self.metrics),
                "start_timeout": self.start_timeout, "min_window_s": self.min_window_s,
                "user_pythonpath": os.environ.get("PYTHONPATH")}

    def __call__(self, variant: Variant, trial: int, out: Path) -> TrialResult:
        cmd: Command = variant.scenario  # type: ignore[assignment]
        out.parent.mkdir(parents=True, exist_ok=True)
        progress = Progress(compile_progress(self.progress), metric_patterns(self.metrics))
        run = _Run(cmd, out.with_suffix(".log"), progress, self.clock, self.extra_env, self.prefix)
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
        windows = run.progress.windows(self.warmup_seconds, self.min_window_s, until=run.stopped_at)
        sps, _ = steady_state(windows, 1)
        error = None if interrupted else self._error(run, windows)
        return _record(variant, run, windows, sps, sum(w.seconds for w in windows), 1, interrupted, error)

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


def _record(variant: Variant, run: _Run, windows: list[Window], sps: float, seconds: float, warmup: int,
            interrupted: bool, error: str | None) -> TrialResult:
    """A command's TrialResult: its windows (the first `warmup` left out of `sps` and `seconds`),
    learning numbers, log and exit status; both ways of running a command record it alike."""
    cmd: Command = variant.scenario  # type: ignore[assignment]
    points = run.progress.points
    result = TrialResult(
        scenario=cmd.to_dict(), label=variant.label, sps=sps, first_window_sps=windows[0].sps if windows else 0.0,
        agent_steps=(points[-1][1] - points[0][1]) if points else 0, seconds=seconds, epochs=len(windows),
        phases=_phase_seconds(windows[warmup:]),
        windows=[{**asdict(w), "sps": w.sps} for w in windows], learning=last_values(run.progress),
        env_config=None, env_config_hash=None, vec={}, device="", ppo={}, interrupted=interrupted,
        machine=machine_info(), error=error, exit_status=run.code if run.exited_early else None,
        warmup_windows=warmup,
    )
    result.artifacts["log"] = run.log.name
    result.process_s = run.wall
    return result


def _phase_seconds(windows) -> dict[str, float]:
    """Seconds per phase over these windows (reported by perfkit.probe; {} without it)."""
    out: dict[str, float] = {}
    for w in windows:
        for k, v in w.phases.items():
            out[k] = out.get(k, 0.0) + v
    return out


def _last_lines(run: _Run) -> str:
    lines = tail(run.recent, TAIL_LINES)
    return "; its last lines:\n" + "\n".join(lines) if lines else "; it printed nothing"


class _Run:
    """One command process: its output read on a thread, timestamped, logged and parsed."""

    def __init__(self, cmd: Command, log: Path, progress: Progress, clock: Callable[[], float],
                 extra_env: dict[str, str], prefix: list[str] | None = None):
        self.cmd, self.log, self.progress, self.clock = cmd, log, progress, clock
        self.argv = [*(prefix or []), *cmd.argv]
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
            self.proc = subprocess.Popen(self.argv, cwd=self.cmd.cwd, env={**self.env, ENV_FD: str(probe_w)},
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
        self._wait(lambda now: self.progress.started is not None and now - self.progress.started >= budget,
                   start_timeout, stall=False)

    def wait_steps(self, steps: int, start_timeout: float) -> None:
        """Until the step counter reaches `steps`, the command's exit, or no step count within
        `start_timeout` seconds of the start or of the last one (a stalled command)."""
        self._wait(lambda now: bool(self.progress.points) and self.progress.points[-1][1] >= steps,
                   start_timeout, stall=True)

    def _wait(self, done: Callable[[float], bool], start_timeout: float, stall: bool) -> None:
        """Read lines until `done(now)`, the output closes (`exited_early`), or no step count came
        within `start_timeout` seconds of the start (with `stall`, of the last count): `timed_out`."""
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
            if done(now):
                return
            points = self.progress.points
            since = points[-1][0] if points and stall else None if points else self.t0
            if since is not None and now - since >= start_timeout:
                self.timed_out = True
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
            signal_group(proc, signal.SIGCONT)  # a paused command (run in turns) takes it now
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


class CommandExited(RuntimeError):
    """A command run in turns ended before the compare did."""


class BlockSampler:
    """py-spy on a command run in turns, one recording per block: attached while the command is
    paused (waiting for py-spy to say it is sampling), stopped after the block. Non-blocking: a
    blocking py-spy attaches with ptrace, which resumes a paused process; a paused process is
    never sampled (py-spy counts its stopped threads as idle), so each file holds that block only."""

    ATTACH_TIMEOUT = 20.0

    def __init__(self, rate: int, out_dir: Path):
        self.rate, self.out_dir = rate, out_dir
        self.proc: subprocess.Popen | None = None
        self.path: Path | None = None
        self.files: list[Path | None] = []  # per block, in order (None: nothing recorded)

    def start(self, pid: int) -> None:
        from perfkit.engine.profilers.pyspy import executable

        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.out_dir / f"block-{len(self.files)}.txt"
        self.proc = subprocess.Popen(
            [executable(), "record", "--pid", str(pid), "--nonblocking", "--subprocesses", "--format", "raw",
             "--rate", str(self.rate), "--output", str(self.path)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
        ready = threading.Event()

        def watch(out) -> None:
            for line in out:
                if "Sampling process" in line:
                    ready.set()
            ready.set()  # py-spy ended (it could not attach): do not wait for it

        threading.Thread(target=watch, args=(self.proc.stdout,), daemon=True).start()
        ready.wait(self.ATTACH_TIMEOUT)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
            try:
                proc.wait(timeout=self.ATTACH_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.files.append(self.path if self.path is not None and self.path.exists() else None)


class PausedCommand:
    """A command run in turns with others (`compare --cmd`, `--mode interleave`): started once,
    then resumed for a block (SIGCONT to its process group), paused again (SIGSTOP) and measured
    on the step counts that arrived in between. The session's rounds rotate these as they rotate
    the built-in trainer's epochs (perfkit/engine/session.py: `EpochTrainer`), so two commands are
    paired block by block, a second or two apart, and start-up is paid once."""

    num_agents = 1  # a command's counter is its own: agent-steps, env steps or frames

    def __init__(self, variant: Variant, log: Path, progress: str, metrics: tuple[str, ...], block_seconds: float,
                 start_timeout: float, clock: Callable[[], float] = time.monotonic,
                 extra_env: dict[str, str] | None = None, settle_s: float = 0.01,
                 sampler: BlockSampler | None = None):
        self.variant = variant
        self.progress_spec = progress
        prog = Progress(compile_progress(progress), metric_patterns(metrics))
        self.run = _Run(variant.scenario, log, prog, clock, extra_env or {})  # type: ignore[arg-type]
        self.block_seconds, self.start_timeout, self.clock, self.settle_s = block_seconds, start_timeout, clock, settle_s
        self.agent_steps = 0
        self.blocks: list[Window] = []
        self.sampler = sampler

    @property
    def progress(self) -> Progress:
        return self.run.progress

    def start(self, warmup_seconds: float) -> None:
        """Start the command and let it run alone until `warmup_seconds` after its first step
        count; then pause it. Raises CommandExited (with its last lines) when it does not get there."""
        try:
            self.run.start()
        except OSError as e:
            raise CommandExited(f"the command did not start: {e}") from None
        self.run.wait(warmup_seconds, self.start_timeout)
        if self.run.exited_early or self.run.timed_out:
            self.run.stop()
            raise CommandExited(self._why())
        self._signal(signal.SIGSTOP)
        self._mark = self.progress.points[-1]  # the last count before the first block
        self._carry = self.clock() - self._mark[0]  # how long it ran after that count

    def gaps(self) -> list[float]:
        """Seconds between consecutive step counts so far."""
        pts = self.progress.points
        return [b[0] - a[0] for a, b in itertools.pairwise(pts)]

    def run_epoch(self) -> Window:
        """One block: resumed for `block_seconds` (longer until a step count has arrived in it, at
        most `start_timeout`), then paused. Its rate is the counter's increase from the last count
        before the block to the last count in it, over the time the command ran in between."""
        run = self.run
        if self.sampler is not None and run.proc is not None:
            self.sampler.start(run.proc.pid)
        self._signal(signal.SIGCONT)
        t0 = self.clock()
        while True:
            item = self._next(0.01)
            if item is None:
                run.exited_early = True
                break
            if item:
                run._take(item)
            now = self.clock()
            counted = bool(self.progress.points) and self.progress.points[-1][0] >= t0
            if now - t0 >= self.block_seconds and counted:
                break
            if now - t0 >= self.start_timeout:
                break
        self._signal(signal.SIGSTOP)
        t1 = self.clock()
        while (item := self._next(self.settle_s)):  # lines written just before the pause
            run._take(item)
        if self.sampler is not None:
            self.sampler.stop()
        # the block's last count: from the end (a trainer printing hundreds of lines a second has
        # hundreds of thousands of counts by then; this runs every block)
        last = next((p for p in reversed(self.progress.points) if p[0] <= t1), None)
        if run.exited_early:
            raise CommandExited(self._why())
        if last is None or last[0] < t0:
            raise CommandExited(f"no progress for {t1 - t0:.0f} s in a block (--progress {self.progress_spec!r})"
                                + _last_lines(run))
        # the window runs from the last count before this block to the last count in it, over the
        # time the command ran between them (it ran only inside blocks): consecutive windows tile the
        # run, so where a count fell in a block moves steps between neighbouring blocks, never out
        w = self.progress._window(len(self.blocks), self._mark, last)
        w = replace(w, seconds=self._carry + (last[0] - t0))
        self._mark, self._carry = last, t1 - last[0]
        self.blocks.append(w)
        self.agent_steps += w.agent_steps
        return w

    def _next(self, timeout: float):
        try:
            return self.run.lines.get(timeout=timeout)
        except queue.Empty:
            return ()

    def _signal(self, sig: int) -> None:
        if self.run.proc is not None and self.run.proc.poll() is None:
            signal_group(self.run.proc, sig)

    def _why(self) -> str:
        run = self.run
        if run.timed_out:
            return (f"no progress: no line matched --progress {self.progress_spec!r} within {self.start_timeout:g} s"
                    + _last_lines(run))
        code = run.proc.poll() if run.proc is not None else None
        return (f"the command exited{'' if code is None else f' ({code})'} before the compare ended; give it more "
                "steps than the compare can use (e.g. a larger --total-timesteps)" + _last_lines(run))

    def stop(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        self.run.stop()

    def result(self, warmup_blocks: int, interrupted: bool, error: str | None) -> TrialResult:
        """The command's record: its steady blocks as windows (the first `warmup_blocks` left out
        of its SPS), its learning numbers, its log and exit status."""
        steady = self.blocks[warmup_blocks:]
        steps, secs = sum(w.agent_steps for w in steady), sum(w.seconds for w in steady)
        return _record(self.variant, self.run, self.blocks, steps / secs if secs > 0 else 0.0, secs, warmup_blocks,
                       interrupted, error)


# -- a learning trial: the command run to a budget of steps (`perfkit learn --cmd`) ----------------

STEP_WINDOWS = 200  # a learning trial's windows: this many across --steps
SELF_ENDED_SHARE = 0.95  # a command that ends by itself (exit 0) with this share of --steps finished its own run


def run_to_steps(variant: Variant, steps: int, log: Path, progress: str = "auto", metrics: tuple[str, ...] = (),
                 start_timeout: float = START_TIMEOUT, clock: Callable[[], float] = time.monotonic,
                 asked: tuple[str, ...] = ()) -> TrialResult:
    """One seed of a command for `perfkit learn --cmd`: run until its step counter reaches `steps`
    (then stopped as a compare's trial is), it ends by itself, or it prints no new count for
    `start_timeout` seconds. The counter is taken as counting from 0 when the command started, so
    windows start there and run to the stop: every metric value the command printed, before its
    first count or after its last, is in one. Windows are cut every 1/STEP_WINDOWS of `steps`; each
    carries the mean of each metric printed in it and how many values that was (`episodes`), so
    the learning statistics weigh it as they do a built-in window. `agent_steps` is the counter's
    last value. An asked metric with no value in the seed's last 20% of steps fails the trial."""
    cmd: Command = variant.scenario  # type: ignore[assignment]
    log.parent.mkdir(parents=True, exist_ok=True)
    prog = Progress(compile_progress(progress), metric_patterns(metrics))
    run = _Run(cmd, log, prog, clock, {})
    interrupted = False
    try:
        try:
            run.start()
        except OSError as e:
            return TrialResult.failed(cmd.to_dict(), variant.label, f"the command did not start: {e}")
        run.wait_steps(steps, start_timeout)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        with _signals_held():  # a second Ctrl-C or SIGTERM cannot leave the command running
            run.stop()
    windows = prog.windows_by_steps(max(1, steps // STEP_WINDOWS), start=(run.t0, 0), until=run.stopped_at)
    sps, _ = steady_state(windows, 1)
    total = prog.points[-1][1] if prog.points else 0
    error = None if interrupted else _learn_error(run, steps, progress, asked, windows, total, start_timeout)
    result = _record(variant, run, windows, sps, sum(w.seconds for w in windows[1:]), 1, interrupted, error)
    result.agent_steps = total
    return result


class _signals_held:
    """SIGINT and SIGTERM ignored inside (in the main thread; elsewhere nothing changes)."""

    def __enter__(self):
        self.saved = None
        if threading.current_thread() is threading.main_thread():
            self.saved = [(s, signal.signal(s, signal.SIG_IGN)) for s in (signal.SIGINT, signal.SIGTERM)]
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.saved or []:
            signal.signal(s, handler)


def _learn_error(run: _Run, steps: int, progress: str, metrics: tuple[str, ...], windows: list[Window],
                 total: int, start_timeout: float) -> str | None:
    """Why a learning trial of a command cannot count, or None."""
    points = run.progress.points
    if not points:
        if run.timed_out:
            return (f"no progress: no line matched --progress {progress!r} within {start_timeout:g} s"
                    + _last_lines(run))
        return f"no progress: the command printed no line matching --progress {progress!r}" + _last_lines(run)
    if points[0][1] >= steps:
        return (f"the step counter started at {points[0][1]:,}, at or past --steps {steps:,}: learn counts a seed's "
                "steps from 0 when its command starts (a resumed run cannot be compared)" + _last_lines(run))
    if run.timed_out:
        return (f"no progress for {start_timeout:g} s after step {points[-1][1]:,} (--start-timeout)"
                + _last_lines(run))
    if run.exited_early and run.code not in (0, None):
        return f"the command exited {run.code} at step {points[-1][1]:,}, before --steps {steps:,}" + _last_lines(run)
    if run.exited_early and points[-1][1] < SELF_ENDED_SHARE * steps:
        return (f"the command ended by itself at step {points[-1][1]:,}, short of --steps {steps:,}: give it a "
                f"budget of at least --steps (e.g. --total-timesteps {steps})" + _last_lines(run))
    rows = [{"agent_steps": w.agent_steps, "learning": w.learning} for w in windows]
    for m in metrics:
        if math.isnan(ls.final_value(ls.points(rows, m), total)):
            printed = len(run.progress.values.get(m, []))
            return (f"--metric {m}: no value in the last {ls.FINAL_FRACTION:.0%} of the seed's {total:,} steps "
                    f"({printed} printed in all); give --metric NAME=REGEX (group 1 is the value) for what the "
                    "command prints at the end of its episodes" + _last_lines(run))
    return None


def main(argv: list[str] | None = None) -> int:
    """`python -m perfkit.engine.command SPEC.json OUT.json`: one trial of a command, as a cluster
    node (or learn's seed scheduler) runs it: with "seconds", a compare trial (`CommandRunner`:
    warm-up, then that many steady seconds); with "steps", a learning trial (`run_to_steps`)."""
    from perfkit.engine.trial import child_args

    spec_path, out = child_args("perfkit.engine.command", argv)
    spec = json.loads(spec_path.read_text())
    if "user_pythonpath" in spec:  # the command sees the user's import path, not this process's
        if spec["user_pythonpath"] is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = spec["user_pythonpath"]
    c = spec["command"]
    cmd = Command(c["name"], c["command"], tuple(sorted(c.get("env", {}).items())), c.get("cwd"), c.get("rev"),
                  c.get("sha"))
    if spec.get("seconds") is not None:
        runner = CommandRunner(seconds=float(spec["seconds"]),
                               warmup_seconds=float(spec.get("warmup_seconds", WARMUP_SECONDS)),
                               progress=spec.get("progress", "auto"), metrics=tuple(spec.get("metrics", ())),
                               start_timeout=float(spec.get("start_timeout", START_TIMEOUT)),
                               min_window_s=float(spec.get("min_window_s", 1.0)))
        try:
            runner(Variant(spec["label"], cmd), 0, out)  # it saves its result, also when interrupted
        except KeyboardInterrupt:
            return 130
        return 0
    result = run_to_steps(Variant(spec["label"], cmd), int(spec["steps"]), out.with_suffix(".log"),
                          spec.get("progress", "auto"), tuple(spec.get("metrics", ())),
                          float(spec.get("start_timeout", START_TIMEOUT)), asked=tuple(spec.get("asked", ())))
    result.scenario = {**result.scenario, "seed": int(spec["seed"])}
    result.save(out)
    return 130 if result.interrupted else 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
