"""Child processes: each in its own process group, stopped as a whole, its exit described.

A stop that reaches perfkit (Ctrl-C, or SIGTERM inside `stop_on_sigterm`) is forwarded once to the
child's whole group (a profiler and the trial under it), the child gets a grace period to save what
it measured, then the group is killed: nothing is left running.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

# The directory that holds `perfkit/` and `envs/`: a child process imports both from the same tree
# as this one.
SOURCE_ROOT = Path(__file__).resolve().parents[2]
STDERR_TAIL = 15  # lines of a failed child's stderr kept in its record


def run_child(cmd: list[str], progress: bool = False, grace_seconds: float = 30.0) -> tuple[int, str]:
    """Run `cmd` in its own process group; (exit status, stderr text). On KeyboardInterrupt (Ctrl-C
    or a SIGTERM turned into one by `stop_on_sigterm`), SIGINT goes to the child's group once, the
    child gets `grace_seconds` to save, then SIGKILL; the KeyboardInterrupt is re-raised."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=None if progress else subprocess.PIPE,
                            text=True, env=child_env(), start_new_session=True)
    try:
        _, err = proc.communicate()
    except KeyboardInterrupt:
        signal_group(proc, signal.SIGINT)
        try:
            proc.communicate(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            signal_group(proc, signal.SIGKILL)
            proc.communicate()
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
            signal_group(proc, signal.SIGKILL)
            proc.wait()
        raise
    return proc.returncode, err or ""


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def exit_text(code: int, err: str) -> str:
    how = f"killed by signal {-code} ({signal.Signals(-code).name})" if code < 0 else f"exited {code}"
    tail = [ln for ln in err.strip().splitlines() if ln.strip()][-STDERR_TAIL:]
    return f"trial process {how}" + ("; stderr:\n" + "\n".join(tail) if tail else " with no stderr")


def child_env() -> dict[str, str]:
    """The trial must import perfkit and envs from the same tree as this process."""
    env = dict(os.environ)
    root = str(SOURCE_ROOT)
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
