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


class CommandTrainers:
    """The same protocol (`ask`) for a user's own training command (`bisect --cmd`): each trainer is
    the command started in its commit's worktree (from the same subfolder) and run in turns with
    the others, paused between its blocks (perfkit/engine/command.py: `PausedCommand`); a block's
    steps and seconds come from the step counter it prints."""

    def __init__(self, text: str, sub: Path, log_dir: Path, progress: str = "auto", metrics: tuple[str, ...] = (),
                 warmup_seconds: float = 10.0, start_timeout: float = 120.0):
        self.text, self.sub, self.log_dir = text, sub, log_dir
        self.progress, self.metrics = progress, metrics
        self.warmup_seconds, self.start_timeout = warmup_seconds, start_timeout
        self.held: dict = {}

    @property
    def proc(self):
        """Not None while it holds a command (the driver asks before dropping one)."""
        return self.held or None

    def ask(self, **cmd) -> dict:
        from perfkit.engine.command import CommandExited

        try:
            return self._handle(cmd)
        except CommandExited as e:
            pc = self.held.pop(cmd.get("key"), None)
            if pc is not None:
                pc.stop()
            raise CommitBroken(str(e)) from None

    def _handle(self, cmd: dict) -> dict:
        from perfkit.core.command import Command
        from perfkit.core.scenario import Variant
        from perfkit.engine.command import PausedCommand

        key = cmd.get("key")
        if cmd["cmd"] == "load":
            where = Path(cmd["paths"][0]) / self.sub
            variant = Variant(key, Command("bisect", self.text, cwd=str(where)))  # type: ignore[arg-type]
            self.log_dir.mkdir(parents=True, exist_ok=True)
            pc = PausedCommand(variant, self.log_dir / f"{key}-{where.parent.name}.log", self.progress, self.metrics,
                               2.0, self.start_timeout)
            self.held[key] = pc
            pc.start(self.warmup_seconds)
            return {}
        if cmd["cmd"] == "block":
            pc = self.held[key]
            pc.block_seconds = cmd["seconds"]
            w = pc.run_epoch()
            return {"agent_steps": w.agent_steps, "seconds": w.seconds}
        if cmd["cmd"] == "drop":
            pc = self.held.pop(key, None)
            if pc is not None:
                pc.stop()
            return {}
        raise CommitBroken(f"bisect --cmd measures SPS only (asked {cmd['cmd']!r})")

    def close(self, kill: bool = False) -> None:
        for pc in self.held.values():
            pc.stop()
        self.held.clear()
