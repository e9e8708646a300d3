"""One optional line in your trainer, and perfkit sees its steps and phases.

    from perfkit import probe

    for update in range(num_updates):
        with probe.phase("env"):
            obs, reward, done, info = envs.step(action)
        probe.steps(num_envs)            # agent-steps just taken
        with probe.phase("learn"):
            loss.backward(); optimizer.step()

Under `perfkit compare --cmd ...` the counts and phase times go to perfkit over a pipe it opened
for this run (its file descriptor is in `PERFKIT_PROBE_FD`): the step counter then needs no
`--progress` regex, and the phases appear in the "where the time goes" table as they do for
perfkit's own trainer. Run outside perfkit, every call returns at once and nothing is written.

Importing this module loads nothing but the standard library (no torch, no numpy). A call costs a
clock read and an addition; a line goes to the pipe at most every `FLUSH_S` seconds.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager

ENV_FD = "PERFKIT_PROBE_FD"
FLUSH_S = 0.05

_fd: int | None = None
_steps = 0
_phases: dict[str, float] = {}
_last_flush = 0.0


def _open() -> int | None:
    value = os.environ.get(ENV_FD)
    if not value:
        return None
    try:
        fd = int(value)
        os.fstat(fd)
    except (ValueError, OSError):  # not ours (a stale variable, a closed descriptor): stay silent
        return None
    return fd


_fd = _open()


def active() -> bool:
    """Whether perfkit is listening."""
    return _fd is not None


def steps(n: int = 1) -> None:
    """`n` more agent-steps were taken (or env-steps: the same unit in every variant)."""
    global _steps
    if _fd is None:
        return
    _steps += n
    _maybe_flush()


@contextmanager
def phase(name: str):
    """Time the block as phase `name` (e.g. env, forward, learn)."""
    if _fd is None:
        yield
        return
    t0 = time.perf_counter()
    try:
        yield
    finally:
        _phases[name] = _phases.get(name, 0.0) + time.perf_counter() - t0


def flush() -> None:
    """Send the counts now (they also go at most every FLUSH_S seconds, and at exit)."""
    global _fd, _last_flush
    if _fd is None:
        return
    _last_flush = time.monotonic()
    line = json.dumps({"t": _last_flush, "steps": _steps, "phases": _phases}) + "\n"
    try:
        os.write(_fd, line.encode())
    except OSError:  # perfkit stopped listening: the trainer goes on unobserved
        _fd = None


def _maybe_flush() -> None:
    if time.monotonic() - _last_flush >= FLUSH_S:
        flush()


if _fd is not None:
    import atexit

    atexit.register(flush)
