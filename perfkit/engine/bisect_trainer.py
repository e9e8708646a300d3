"""`python -m perfkit.engine.bisect_trainer SPEC`: one process holding several commits' trainers, training on request.

`perfkit bisect` runs one such process. Each commit's env code is imported from that commit's
worktree in isolation (its worktree first on the import path while its module is imported, then
its modules taken out of `sys.modules`, so the next commit's import loads that commit's code; the
factory keeps its own modules alive). The trainers then take turns, block by block, in one
process, as `compare`'s variants do: whatever makes one process faster than another (memory
layout, where the OS puts its threads) is shared by the commits compared, not mistaken for one.
Limit: code a commit imports later, at call time, or a compiled extension built in the worktree,
cannot be told apart from another commit's.

Protocol, one JSON object per line on stdin, one answer per line on stdout. The process keeps
these two to itself: at start it moves them to private descriptors, then points fd 1 (and
`sys.stdout`) at stderr, the log, and fd 0 at /dev/null, so whatever a commit's code prints (at
import, in its factory, from C) goes to the log and cannot be mistaken for an answer, and nothing it
reads can swallow a command:
  {"cmd": "load", "key": K, "paths": [...]}   import the env from these paths, build a trainer
                                              under key K and warm it up: {"ready", "module"}
  {"cmd": "block", "key": K, "seconds": S}    train K's epochs until S seconds passed (at least
                                              one): {"agent_steps", "seconds", "epochs", "learning"}
  {"cmd": "learn", "key": K, "epochs": E, "seed": N}
                                              a fresh trainer of K's code (seed N) trained E epochs:
                                              {"learning": each metric's final value, as learn
                                              takes a seed's (`final_values`)}
  {"cmd": "drop", "key": K}                   close K's trainer: {"dropped": K}
  {"cmd": "quit"}
Any failure is answered {"error": ...} and the process goes on.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
import time
from typing import Any


def import_isolated(target: str, paths: list[str]):
    """The factory `pkg.module:attr` imported from `paths` alone, and the file it came from;
    afterwards every module loaded from those paths is taken out of sys.modules again."""
    module_name, _, attr = target.partition(":")
    top = module_name.split(".")[0]
    for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
        del sys.modules[name]  # a previous commit's copy (its factory keeps it alive)
    saved = list(sys.path)
    sys.path[:0] = paths
    importlib.invalidate_caches()
    roots = tuple(os.path.join(os.path.realpath(p), "") for p in paths)
    try:
        module = importlib.import_module(module_name)
        factory = getattr(module, attr)
    finally:
        sys.path[:] = saved
        for name, mod in list(sys.modules.items()):
            f = getattr(mod, "__file__", None)
            if f and os.path.realpath(f).startswith(roots):
                del sys.modules[name]
    return factory, getattr(module, "__file__", None)


class Server:
    def __init__(self, spec: dict, clock=time.perf_counter):
        self.spec, self.clock = spec, clock
        self.trainers: dict[str, Any] = {}
        self.factories: dict[str, Any] = {}

    def _trainer(self, key: str, seed: int):
        from envs.registry import make_creator
        from perfkit.engine.trial import NUM_ENVS, resolve_device
        from perfkit.train import vecenv as vec
        from perfkit.train.build import build_trainer
        from perfkit.train.ppo import PPOConfig

        values = self.spec["values"]
        creator = make_creator(values, factory=self.factories[key])
        env = vec.make(creator, vec.plan("serial", self.spec.get("num_envs") or NUM_ENVS), seed=seed)
        return build_trainer(env, values, creator, PPOConfig(**self.spec.get("ppo", {})),
                             resolve_device(values["device"]), seed)

    def load(self, key: str, paths: list[str]) -> dict:
        factory, module = import_isolated(self.spec["values"]["env"], paths)
        self.factories[key] = factory
        t = self._trainer(key, self.spec.get("seed", 1))
        # lazy imports, caches, first page faults: left out, as SPS leaves out its warm-up
        start = self.clock()
        while t.epoch < self.spec.get("warmup_epochs", 1) or self.clock() - start < self.spec.get("warmup_seconds", 0):
            t.run_epoch()
        self.trainers[key] = t
        return {"ready": True, "module": module}

    def block(self, key: str, seconds: float) -> dict:
        t = self.trainers[key]
        steps = epochs = 0
        learning: dict[str, float] = {}
        start = self.clock()
        while epochs == 0 or self.clock() - start < seconds:
            w = t.run_epoch()
            steps, epochs = steps + w.agent_steps, epochs + 1
            learning = w.learning or learning
        return {"agent_steps": steps, "seconds": self.clock() - start, "epochs": epochs, "learning": learning}

    def learn(self, key: str, epochs: int, seed: int) -> dict:
        start = self.clock()
        fresh = self._trainer(key, seed)
        try:
            windows = [fresh.run_epoch() for _ in range(epochs)]
        finally:
            fresh.vecenv.close()
        return {"learning": final_values(windows), "seconds": self.clock() - start}

    def drop(self, key: str) -> dict:
        t = self.trainers.pop(key, None)
        self.factories.pop(key, None)
        if t is not None:
            t.vecenv.close()
        return {"dropped": key}

    def handle(self, cmd: dict) -> dict | None:
        op = cmd.get("cmd")
        if op == "load":
            return self.load(cmd["key"], cmd["paths"])
        if op == "block":
            return self.block(cmd["key"], cmd["seconds"])
        if op == "learn":
            return self.learn(cmd["key"], int(cmd["epochs"]), int(cmd["seed"]))
        if op == "drop":
            return self.drop(cmd["key"])
        return {"error": f"unknown command {op!r}"}


def serve(spec: dict, stdin=sys.stdin, stdout=sys.stdout, clock=time.perf_counter) -> int:
    from perfkit.engine.trial import apply_thread_policy
    from perfkit.train.ppo import describe_error

    apply_thread_policy(spec["values"])
    server = Server(spec, clock)
    for line in stdin:
        try:
            cmd = json.loads(line)
        except json.JSONDecodeError:
            cmd = None
        if not isinstance(cmd, dict):
            stdout.write(json.dumps({"error": f"not a JSON command: {line.strip()[:200]!r}"}) + "\n")
            stdout.flush()
            continue
        if cmd.get("cmd") == "quit":
            break
        try:
            answer = server.handle(cmd)
        except (Exception, SystemExit) as e:  # noqa: BLE001 -- a commit's code may raise anything: answer it
            if cmd.get("cmd") == "load":
                server.drop(cmd["key"])
            answer = {"error": describe_error(e) if isinstance(e, Exception) else f"SystemExit: {e}"}
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()
    for key in list(server.trainers):
        server.drop(key)
    return 0


def private_channels() -> tuple[Any, Any]:
    """(commands, answers): the process's stdin and stdout, moved to descriptors of their own. Then
    fd 1 and `sys.stdout` write to stderr (the log) and fd 0 reads /dev/null, so that a commit's
    code that prints, from Python or from C, cannot corrupt an answer, nor read a command."""
    sys.stdout.flush()
    commands = os.fdopen(os.dup(0), "r", encoding="utf-8")
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdout = sys.stderr
    return commands, answers


def final_values(windows) -> dict[str, float]:
    """Each episode metric's final value over one seed's windows, as `perfkit learn` takes it
    (`learning_stats.final_value`: episode-weighted, over the windows ending in the last 20% of the
    seed's agent-steps); metrics no episode reported there are left out."""
    from perfkit.core.learning_stats import final_value, points

    rows = [{"agent_steps": w.agent_steps, "learning": w.learning} for w in windows]
    total = sum(w.agent_steps for w in windows)
    keys = sorted({k for w in windows for k in (w.learning or {})} - {"episodes"})
    values = {k: final_value(points(rows, k), total) for k in keys}
    return {k: v for k, v in values.items() if math.isfinite(v)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    commands, answers = private_channels()
    return serve(spec, commands, answers)


if __name__ == "__main__":
    sys.exit(main())
