"""py-spy around a trial: perfkit launches the trial under `py-spy record` (no attach, no root).

One run records raw folded stacks; the SVG flamegraph and the speedscope JSON are rendered from
them, so all three describe the same samples.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from perfkit.core.folded import read_folded
from perfkit.engine.profilers import ProfilerUnavailable, find_tool
from perfkit.records.trial import require_ok

HOW_TO_FIX = (
    "py-spy reads the trial's memory with ptrace-like calls: run perfkit as the same user as the trial "
    "(it launches the trial itself); if /proc/sys/kernel/yama/ptrace_scope is 3, or a container drops "
    "CAP_SYS_PTRACE, allow it (docker run --cap-add SYS_PTRACE)"
)


def executable() -> str:
    path = find_tool("py-spy")
    if path is None:
        raise ProfilerUnavailable(f"py-spy is neither beside {sys.executable} nor on PATH; install it with "
                                  "`pip install py-spy` (a binary wheel)")
    return path


def check() -> None:
    """Fail early and clearly if py-spy cannot sample a child process on this machine."""
    exe = executable()
    proc = subprocess.run([exe, "record", "-r", "50", "-o", "/dev/null", "-f", "raw", "--", "python3", "-c",
                           "import time; t=time.time()\nwhile time.time()-t<0.2: pass"],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        msg = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise ProfilerUnavailable(f"py-spy could not sample a child process: {msg}. {HOW_TO_FIX}")


def prefix(out: Path, rate: int = 100, native: bool = False, subprocesses: bool = True,
           nonblocking: bool = True) -> list[str]:
    """Command prefix that runs a trial under py-spy, writing raw folded stacks to `out`.

    nonblocking: read the stacks without pausing the trial: cheaper, but a stack read while the
    program runs can be torn (see `Sampling`). `perfkit profile` samples this way for its
    flamegraphs; explain and compare --flamegraph, which name callers, pause.
    """
    cmd = [executable(), "record", "--rate", str(rate), "--format", "raw", "--output", str(out)]
    if subprocesses:
        cmd.append("--subprocesses")
    if native:
        cmd.append("--native")
    if nonblocking:
        cmd.append("--nonblocking")
    return [*cmd, "--"]


@dataclass(frozen=True)
class Sampling:
    """How py-spy samples the blocks that explain and compare --flamegraph split by marker frame.

    blocking (py-spy's default) pauses the process for each stack read. Without it, py-spy reads a
    running process frame by frame; Python 3.11+ reuses a returned frame's slot for the next call,
    so when a short function returns mid-read its callee is shown under whatever was called next
    (a user's `_scratch_tally -> np.full` read as `_observe -> np.full` in up to a third of the
    samples): the function is right, the caller it is named with is not. Every variant pays the
    pause alike (blocks alternate in one process); bench/explain_faults.py measures its cost."""

    rate: int = 200
    blocking: bool = True

    def prefix(self, out: Path, subprocesses: bool = True) -> list[str]:
        return prefix(out, self.rate, subprocesses=subprocesses, nonblocking=not self.blocking)

    def to_dict(self) -> dict:
        return {"tool": "py-spy", "rate": self.rate, "blocking": self.blocking}


def profile(runner, variant, out_dir: Path, rate: int = 100, native: bool = False,
            subprocesses: bool = True) -> dict:
    """Run one trial of `variant` under py-spy, writing its folded stacks (pyspy.folded); drawing
    them is `perfkit.render.flame_report.draw_flamegraphs`' job."""
    out_dir.mkdir(parents=True, exist_ok=True)
    folded = out_dir / "pyspy.folded"
    run = replace(runner, prefix=prefix(folded, rate, native, subprocesses))
    tr = require_ok(run(variant, 0, out_dir / "pyspy-trial.json"))
    return {"sps": tr.sps, "samples": read_folded(folded, torn_ok=True).total, "sentinel": tr.sentinel,
            "files": {"folded": str(folded)},
            "options": {"rate": rate, "native": native, "subprocesses": subprocesses}}
