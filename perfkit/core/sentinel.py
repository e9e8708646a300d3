"""What else used the machine during a trial: CPU taken by other processes, steal, load.

On a shared 2-core box a neighbour that takes one core can stall torch's intra-op threads 30x, and
the SPS of that trial says nothing about the code under test. A `CpuSnapshot` reads the aggregate
`cpu` line of `/proc/stat` (every process on the machine) and the CPU seconds of this process tree
(psutil); `usage(before, after)` turns two snapshots into cores used by us and by everyone else.
`Sentinel` takes a snapshot per window (`mark()`) and keeps the first (`total()`).

Reading /proc/stat plus walking the process tree costs well under a millisecond with a few
workers: fine once per training epoch. Where /proc/stat is missing (macOS) or psutil fails,
snapshots carry a `reason` and usage leaves the machine-wide fields as None; nothing raises.

`disturbed` and `slow_windows` are pure flagging rules with documented default thresholds.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

PROC_STAT = "/proc/stat"
# Columns of the aggregate `cpu` line we use (guest/guest_nice are already inside user/nice).
FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
NOT_BUSY = ("idle", "iowait", "steal")  # iowait is an idle CPU; steal is time the hypervisor took

# A neighbour averaging a quarter core over a window is well above an idle Linux box's background
# (~0.01 core in the recorded quiet fixture) and above /proc/stat's tick resolution (100 Hz: one
# tick over a 0.2 s window on 2 cores is 0.05 core), and on 2 cores with 1-2 torch threads it
# means a thread of ours lost its core for a noticeable part of the window.
MAX_OTHER_CORES = 0.25
# Steal: the hypervisor ran someone else on our vCPUs. Cloud guidance treats a few percent as the
# point where it shows in latency; 5% of every CPU's time is more than run-to-run SPS noise.
MAX_STEAL = 0.05
# Per-epoch SPS jitter is a few percent; half the median is a stall (neighbour, GC, swap, a
# checkpoint) and not noise.
SLOW_FACTOR = 0.5
# Processes that start a trial as their child to sample it (`py-spy record -- python -m perfkit.engine.trial`):
# their CPU is part of the profiled trial's cost, not a neighbour's.
PROFILER_PARENTS = ("py-spy",)


@dataclass(frozen=True)
class CpuSnapshot:
    """One reading. `ticks` is None where /proc/stat could not be read; `own_cpu_s` is None
    where psutil failed; `reason` says why either is missing."""

    wall: float  # seconds on the injected clock (monotonic by default)
    ticks: dict[str, int] | None  # aggregate cpu line of /proc/stat, clock ticks
    tick_hz: int
    own_cpu_s: float | None  # user+system seconds of this process tree, reaped children included
    cores: int  # logical CPUs that /proc/stat counts (cpuN lines), else os.cpu_count()
    load_avg: tuple[float, float, float] | None
    reason: str | None = None


@dataclass(frozen=True)
class Usage:
    """CPU use between two snapshots. Machine-wide fields are None where /proc/stat was missing
    (or the window was shorter than a tick); `reason` then says so."""

    wall_s: float
    machine_busy_cores: float | None  # everything: user+nice+system+irq+softirq, in cores
    own_cores: float | None  # this process tree (parent + rollout workers)
    others_cores: float | None  # max(0, machine_busy_cores - own_cores)
    steal_fraction: float | None  # share of all CPU time the hypervisor took
    cores: int
    load_avg: tuple[float, float, float] | None  # at the end of the window
    reason: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["load_avg"] = list(self.load_avg) if self.load_avg is not None else None
        return d


def parse_proc_stat(text: str) -> tuple[dict[str, int], int]:
    """(aggregate cpu ticks by FIELDS name, number of cpuN lines). Raises ValueError on a text
    without an aggregate `cpu` line. Older kernels lack trailing columns: they count as 0."""
    ticks: dict[str, int] | None = None
    ncpu = 0
    for line in text.splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:]]
            ticks = {name: (values[i] if i < len(values) else 0) for i, name in enumerate(FIELDS)}
        elif line.startswith("cpu") and line[3:4].isdigit():
            ncpu += 1
    if ticks is None:
        raise ValueError("no aggregate 'cpu' line in /proc/stat text")
    return ticks, ncpu


def own_cpu_seconds() -> float:
    """User+system CPU seconds of this process and all its descendants, dead or alive, plus a
    sampling profiler (PROFILER_PARENTS) that launched this process.

    Each live process in the tree contributes its own time plus `children_user/system`, which the
    kernel fills in for descendants it has already reaped (waited for). A child's time moves from
    "live" to its parent's children_* at the moment it is reaped, so nothing is counted twice.
    This process is read before its children: a child reaped in between is missed once (own CPU
    reads low for one window) rather than counted twice.
    """
    import psutil

    def tree_part(p: psutil.Process) -> float:
        t = p.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    me = psutil.Process()
    total = tree_part(me)
    profiler = _profiler_parent()
    if profiler is not None:  # a sampling profiler that launched this trial works for it
        try:
            t = profiler.cpu_times()
            total += t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    for child in me.children(recursive=True):
        try:
            total += tree_part(child)
        except (psutil.NoSuchProcess, psutil.AccessDenied):  # exited or not ours: skip it
            pass
    return total


_PROFILER: dict[int, object] = {}  # parent pid -> its psutil.Process if it is a profiler, else None


def _profiler_parent():
    """The parent process when it is a sampling profiler (PROFILER_PARENTS), else None; looked up
    once per parent, since own_cpu_seconds runs every epoch."""
    import psutil

    ppid = os.getppid()
    if ppid not in _PROFILER:
        try:
            parent = psutil.Process(ppid)
            _PROFILER[ppid] = parent if parent.name() in PROFILER_PARENTS else None
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            _PROFILER[ppid] = None
    return _PROFILER[ppid]


def snapshot(
    proc_stat_text: str | None = None,
    own_cpu: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    tick_hz: int | None = None,
    load_avg: tuple[float, float, float] | None = None,
) -> CpuSnapshot:
    """Read the machine now. Tests inject `proc_stat_text`, `own_cpu`, `clock` (and load_avg)."""
    wall = clock()
    reasons = []
    ticks, ncpu = None, 0
    if proc_stat_text is None:
        try:
            with open(PROC_STAT) as f:
                proc_stat_text = f.read()
        except OSError as e:
            reasons.append(f"no {PROC_STAT} ({e.strerror or e}): other processes' CPU is unknown")
    if proc_stat_text is not None:
        try:
            ticks, ncpu = parse_proc_stat(proc_stat_text)
        except ValueError as e:
            reasons.append(str(e))
    if own_cpu is None:
        own_cpu, why = _own_cpu()
        if why:
            reasons.append(why)
    if tick_hz is None:
        tick_hz = _tick_hz()
    if load_avg is None:
        try:
            load_avg = os.getloadavg()
        except (OSError, AttributeError):
            load_avg = None
    return CpuSnapshot(wall=wall, ticks=ticks, tick_hz=tick_hz, own_cpu_s=own_cpu, cores=ncpu or os.cpu_count() or 1,
                       load_avg=load_avg, reason="; ".join(reasons) or None)


def _own_cpu() -> tuple[float | None, str | None]:
    """own_cpu_seconds(), or None and why: degrade, never fail a trial over a measurement."""
    try:
        import psutil
    except ImportError:
        return None, "own CPU unknown: psutil is not installed"
    try:
        return own_cpu_seconds(), None
    except (psutil.Error, OSError, NotImplementedError) as e:
        return None, f"own CPU unknown ({type(e).__name__}: {e})"


def _tick_hz() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):
        return 100  # USER_HZ is 100 on every Linux architecture perfkit runs on


def usage(before: CpuSnapshot, after: CpuSnapshot) -> Usage:
    """Cores used between two snapshots, by us and by everyone else.

    machine_busy_cores is the busy share of all ticks times the CPU count. That equals
    busy_ticks / (wall_s * tick_hz) up to tick jitter, but stays within [0, cores] for windows a
    few ticks long and is immune to a mismatch between the injected clock and the kernel's.
    """
    wall = after.wall - before.wall
    reasons = [r for r in (before.reason, after.reason) if r]
    own = None
    if before.own_cpu_s is not None and after.own_cpu_s is not None and wall > 0:
        own = max(0.0, after.own_cpu_s - before.own_cpu_s) / wall
    busy = others = steal = None
    if before.ticks is not None and after.ticks is not None:
        delta = {k: after.ticks[k] - before.ticks[k] for k in FIELDS}
        total = sum(delta.values())
        if total <= 0 or wall <= 0:
            reasons.append(f"window of {wall:.3f} s is shorter than a clock tick")
        else:
            busy_ticks = sum(v for k, v in delta.items() if k not in NOT_BUSY)
            busy = busy_ticks / total * after.cores
            steal = delta["steal"] / total
            if own is not None:
                others = max(0.0, busy - own)
    return Usage(wall_s=wall, machine_busy_cores=busy, own_cores=own, others_cores=others,
                 steal_fraction=steal, cores=after.cores, load_avg=after.load_avg,
                 reason="; ".join(dict.fromkeys(reasons)) or None)


class Sentinel:
    """Per-window and whole-trial CPU usage: `start()` once, `mark()` at every SPS window edge.

    `mark()` and `total()` start the sentinel if nobody did (the first window is then empty).
    `snap` is the snapshot function; tests pass one that reads recorded fixtures.
    """

    def __init__(self, snap: Callable[[], CpuSnapshot] = snapshot):
        self._snap = snap
        self._first: CpuSnapshot | None = None
        self._last: CpuSnapshot | None = None

    def start(self) -> CpuSnapshot:
        self._first = self._last = self._snap()
        return self._first

    def mark(self) -> Usage:
        """Usage since the previous mark (or start)."""
        if self._last is None:
            self.start()
        now = self._snap()
        u = usage(self._last, now)
        self._last = now
        return u

    def total(self) -> Usage:
        """Usage since start(); does not move the window edge."""
        if self._first is None:
            self.start()
        return usage(self._first, self._snap())


def disturbed(usage: Usage, max_other_cores: float = MAX_OTHER_CORES, max_steal: float = MAX_STEAL) -> str | None:
    """Why this window's SPS should not be trusted ('others used 0.9 core; steal 7% of CPU time'),
    or None. Unknown fields (no /proc/stat) never flag: usage.reason says they are unknown."""
    why = []
    if usage.others_cores is not None and usage.others_cores > max_other_cores:
        why.append(f"others used {usage.others_cores:.1f} core" + ("s" if usage.others_cores >= 1.05 else ""))
    if usage.steal_fraction is not None and usage.steal_fraction > max_steal:
        why.append(f"steal {usage.steal_fraction:.0%} of CPU time")
    return "; ".join(why) or None


def slow_windows(sps_list: list[float], median_factor: float = SLOW_FACTOR) -> list[int]:
    """Indices of windows whose SPS is below median_factor x the median of the list (the median
    is robust to the few stalled windows it is looking for). Leave out warm-up windows first."""
    if not sps_list:
        return []
    limit = median_factor * statistics.median(sps_list)
    return [i for i, s in enumerate(sps_list) if s < limit]
