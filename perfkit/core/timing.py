"""Named phase timers and windowed SPS.

`PhaseTimer.switch(name)` charges the time since the last switch to the phase that was running
and starts `name`: one clock read per phase edge, and every second of the trial lands in exactly
one phase. On CUDA, pass `sync=torch.cuda.synchronize` so asynchronous GPU work is charged to the
phase that queued it (a sync at each edge, never inside a phase).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

PHASES = ("env", "forward", "copy", "learn", "checkpoint", "eval", "misc")


class PhaseTimer:
    def __init__(
        self,
        clock: Callable[[], float] = time.perf_counter,
        sync: Callable[[], None] | None = None,
        on_switch: Callable[[str], None] | None = None,
    ):
        self._clock = clock
        self._sync = sync
        self._on_switch = on_switch  # e.g. open a torch.profiler range named after the phase
        self.totals: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self._current = "misc"
        self._since = clock()

    def switch(self, phase: str) -> None:
        if self._sync is not None:
            self._sync()
        now = self._clock()
        self.totals[self._current] += now - self._since
        self._current = phase
        self._since = now
        if self._on_switch is not None:
            self._on_switch(phase)

    def snapshot(self) -> dict[str, float]:
        """Totals including the phase now running (does not end it)."""
        now = self._clock()
        out = dict(self.totals)
        out[self._current] += now - self._since
        return out


@dataclass
class Window:
    """One SPS window: agent-steps and wall seconds between two marks, split by phase."""

    index: int
    agent_steps: int
    seconds: float
    phases: dict[str, float]
    learning: dict[str, float] = field(default_factory=dict)

    @property
    def sps(self) -> float:
        return self.agent_steps / self.seconds if self.seconds > 0 else 0.0


class WindowedSPS:
    """Cuts a run into windows at `mark()` calls; steady-state SPS leaves out warm-up windows."""

    def __init__(self, timer: PhaseTimer, clock: Callable[[], float] = time.perf_counter):
        self._timer = timer
        self._clock = clock
        self.windows: list[Window] = []
        self._t0 = clock()
        self._steps0 = 0
        self._phases0 = timer.snapshot()

    def restart(self) -> None:
        """Start the next window now: time since the last mark belongs to no window."""
        self._t0, self._phases0 = self._clock(), self._timer.snapshot()

    def carry(self, windows: list[Window], agent_steps: int) -> None:
        """Go on from another run's `windows`, at its count of `agent_steps` (a trainer rebuilt mid-run)."""
        self.windows, self._steps0 = windows, agent_steps

    def mark(self, agent_steps: int, learning: dict[str, float] | None = None) -> Window:
        now = self._clock()
        phases = self._timer.snapshot()
        w = Window(
            index=len(self.windows),
            agent_steps=agent_steps - self._steps0,
            seconds=now - self._t0,
            phases={k: phases[k] - self._phases0.get(k, 0.0) for k in phases},
            learning=dict(learning or {}),
        )
        self.windows.append(w)
        self._t0, self._steps0, self._phases0 = now, agent_steps, phases
        return w


def steady_state(windows: list[Window], warmup: int = 1) -> tuple[float, float]:
    """(agent-steps/s over the windows after `warmup`, seconds they cover). Falls back to all
    windows when there are no others, so a very short run still reports something."""
    rest = windows[warmup:] or windows
    steps = sum(w.agent_steps for w in rest)
    secs = sum(w.seconds for w in rest)
    return (steps / secs if secs > 0 else 0.0), secs
