"""py-spy around a trial: perfkit launches the trial under `py-spy record` (no attach, no root)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from perfkit.profilers import ProfilerUnavailable

FORMATS = {"flamegraph": ".svg", "speedscope": ".speedscope.json", "raw": ".folded"}


def executable() -> str:
    path = shutil.which("py-spy")
    if path is None:
        raise ProfilerUnavailable("py-spy is not on PATH; install it with `pip install py-spy` (it ships a binary wheel)")
    return path


def check() -> None:
    """Fail early and clearly if py-spy cannot sample a child process on this machine."""
    exe = executable()
    proc = subprocess.run([exe, "record", "-r", "50", "-o", "/dev/null", "-f", "raw", "--", "python3", "-c",
                           "import time; t=time.time()\nwhile time.time()-t<0.2: pass"],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        hint = ("py-spy needs permission to read another process's memory: run as the same user, and if "
                "/proc/sys/kernel/yama/ptrace_scope is above 1, lower it or grant CAP_SYS_PTRACE "
                "(docker: --cap-add SYS_PTRACE)")
        raise ProfilerUnavailable(f"py-spy could not sample a child process: {' | '.join(msg)}. {hint}")


def prefix(out: Path, fmt: str = "flamegraph", rate: int = 100, native: bool = False,
           subprocesses: bool = True, nonblocking: bool = True) -> list[str]:
    """The command-line prefix that runs a trial under py-spy, writing `out`.

    nonblocking: sample without pausing the trial. Pausing (py-spy's default) cost ~20% SPS on a
    2-core machine in our runs, against ~10% without pausing; stacks may then be slightly torn.
    """
    if fmt not in FORMATS:
        raise ValueError(f"py-spy format {fmt!r} invalid; valid: {', '.join(FORMATS)}")
    cmd = [executable(), "record", "--rate", str(rate), "--format", fmt, "--output", str(out)]
    if subprocesses:
        cmd.append("--subprocesses")
    if native:
        cmd.append("--native")
    if nonblocking:
        cmd.append("--nonblocking")
    return [*cmd, "--"]
