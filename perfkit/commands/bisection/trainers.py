"""The driver's side of the trainer protocol: the one `perfkit.engine.bisect_trainer` process
holding the commits' trainers, a command and its answer at a time (`ask`), and `CommitBroken`
when a commit's scenario cannot run."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path


class CommitBroken(RuntimeError):
    """The scenario cannot run at this commit (import or build error): the commit is skipped."""


class TrainerProcess:
    """The one `perfkit.engine.bisect_trainer` process holding the commits' trainers (see there why one)."""

    def __init__(self, spec: dict, log: Path, timeout: float = 300.0):
        self.spec, self.log, self.timeout = spec, log, timeout
        self.proc: subprocess.Popen | None = None

    def _start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._err = open(self.log, "a")  # noqa: SIM115 -- closed in close()
        # its own session: a Ctrl-C reaches the driver, which ends it itself
        self.proc = subprocess.Popen([sys.executable, "-m", "perfkit.engine.bisect_trainer", json.dumps(self.spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, text=True,
                                     start_new_session=True)

    def ask(self, **cmd) -> dict:
        """One command, its answer; CommitBroken for an error answer, an answer that is not one (the
        line read is named), or a process that died (it is started again at the next command: the
        trainers it held are gone). Interrupted while it waits (Ctrl-C), the process is ended at
        once: its answer may still come, and would be read as the next command's."""
        if self.proc is None:
            self._start()
        try:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
            ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
            line = self.proc.stdout.readline() if ready else ""
        except OSError:
            line = ""
        except KeyboardInterrupt:
            self.close(kill=True)
            raise
        if not line:
            self.close()
            raise CommitBroken(f"the trainer process ended or stopped answering ({cmd['cmd']}): {self._tail()}")
        try:
            got = json.loads(line)
        except json.JSONDecodeError:
            got = None
        if not isinstance(got, dict):  # out of step with the protocol: nothing it says next can be trusted
            self.close(kill=True)
            raise CommitBroken(f"the trainer process answered {cmd['cmd']} with a line that is not a JSON answer: "
                               f"{line.strip()[:300]!r}; its log ends: {self._tail(300)}")
        if "error" in got:
            raise CommitBroken(got["error"])
        return got

    def _tail(self, chars: int = 600) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:].strip()
        except OSError:
            return ""

    def close(self, kill: bool = False) -> None:
        """Ask the process to quit (10 s, then it is killed); with `kill`, kill it and its group at once."""
        if self.proc is None:
            return
        if self.proc.poll() is None and not kill:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the group is its own
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        self._err.close()
        self.proc = None
