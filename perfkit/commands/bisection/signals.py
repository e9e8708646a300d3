"""Ctrl-C and SIGTERM during a bisection as one request to stop (`Interrupts`), so that the
cleanup the first one starts runs to its end."""

from __future__ import annotations

import signal
import threading
from typing import Any


class Interrupts:
    """SIGINT and SIGTERM, within this block, as one request to stop. The first raises
    KeyboardInterrupt (in the main thread); every later one is counted and nothing more, so the
    cleanup the first one started (trainers ended, worktrees removed, the record saved) runs to its
    end however often Ctrl-C is pressed. After `hold()` none is raised any more, only counted (the
    cleanup of a run that ended by itself, the printing of its result). `received` counts them all.
    The previous handlers come back at the end of the block; with `linger`, once a signal came,
    they are ignored instead, until the process exits (a command on its way out after Ctrl-C: a
    signal during its exit cannot turn exit status 130 into a traceback). Outside the main thread
    (where Python cannot set handlers) it changes nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, linger: bool = False) -> None:
        self.linger = linger
        self.received = 0
        self._raised = self._held = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.received += 1
        if not (self._raised or self._held):
            self._raised = True
            raise KeyboardInterrupt

    def hold(self) -> None:
        self._held = True

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            if self.linger and self.received:
                old = signal.SIG_IGN
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        self._old.clear()
