"""`python -m perfkit.epochs SPEC`: one scenario's trainer, kept alive, running training on request.

`perfkit bisect` runs one such process per tested commit, each with that commit's worktree first
on the import path, and asks them in turn for blocks of training: the processes take turns (the
idle ones wait on a pipe and use no CPU), so commits whose code cannot share one process are still
compared epoch block by epoch block, interleaved, as variants are in one process.

Protocol, one JSON object per line. The process answers its start with {"ready": ..., "module":
path of the env module it imported} or {"error": ...}; then reads commands on stdin:
  {"cmd": "block", "seconds": S}    train epochs until S seconds passed (at least one epoch):
                                    {"agent_steps", "seconds", "epochs", "learning"}
  {"cmd": "learn", "epochs": E, "seed": K}
                                    a fresh trainer (seed K) trained E epochs: {"learning": per-episode
                                    means over the last quarter of its epochs, "seconds"}
  {"cmd": "quit"}
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def _build(spec: dict, seed: int):
    from envs.registry import make_creator
    from perfkit.train import vecenv as vec
    from perfkit.train.cadence import Cadence
    from perfkit.train.ppo import PPOConfig, Trainer
    from perfkit.trial import NUM_ENVS, resolve_device

    values = spec["values"]
    creator = make_creator(values)
    env = vec.make(creator, vec.plan("serial", spec.get("num_envs") or NUM_ENVS), seed=seed)
    return Trainer(env, PPOConfig(**spec.get("ppo", {})), resolve_device(values["device"]), seed=seed,
                   checkpoint=Cadence.parse(values["checkpoint"]), evaluate=Cadence.parse(values["eval"]),
                   make_eval_env=lambda: creator(seed=seed + 99_991), fault=values["fault"])


def _module_file(values: dict) -> str | None:
    """Where the env's module was imported from (a user env `pkg.module:factory`), else None."""
    env = values["env"]
    if ":" not in env:
        return None
    return getattr(sys.modules.get(env.split(":", 1)[0]), "__file__", None)


def _learning_tail(windows, share: float = 0.25) -> dict[str, float]:
    from perfkit.stats import mean_learning

    tail = windows[-max(1, int(len(windows) * share)):]
    return mean_learning([w.learning for w in tail if w.learning])


def serve(spec: dict, stdin=sys.stdin, stdout=sys.stdout, clock=time.perf_counter) -> int:
    from perfkit.train.ppo import describe_error
    from perfkit.trial import apply_thread_policy

    def say(obj: dict[str, Any]) -> None:
        stdout.write(json.dumps(obj) + "\n")
        stdout.flush()

    try:
        apply_thread_policy(spec["values"])
        trainer = _build(spec, spec.get("seed", 1))
        # lazy imports, caches, a fresh process's first page faults: left out as SPS leaves them out
        start = clock()
        while trainer.epoch < spec.get("warmup_epochs", 1) or clock() - start < spec.get("warmup_seconds", 0.0):
            trainer.run_epoch()
    except Exception as e:  # noqa: BLE001 -- the commit's env cannot be built: the driver skips it
        say({"error": describe_error(e)})
        return 1
    say({"ready": True, "module": _module_file(spec["values"])})
    for line in stdin:
        cmd = json.loads(line)
        try:
            if cmd["cmd"] == "quit":
                break
            if cmd["cmd"] == "block":
                steps = epochs = 0
                start = clock()
                learning: dict[str, float] = {}
                while epochs == 0 or clock() - start < cmd["seconds"]:
                    w = trainer.run_epoch()
                    steps, epochs = steps + w.agent_steps, epochs + 1
                    learning = w.learning or learning
                say({"agent_steps": steps, "seconds": clock() - start, "epochs": epochs, "learning": learning})
            elif cmd["cmd"] == "learn":
                start = clock()
                fresh = _build(spec, int(cmd["seed"]))
                windows = [fresh.run_epoch() for _ in range(int(cmd["epochs"]))]
                fresh.vecenv.close()
                say({"learning": _learning_tail(windows), "seconds": clock() - start})
            else:
                say({"error": f"unknown command {cmd['cmd']!r}"})
        except Exception as e:  # noqa: BLE001 -- report it; the driver records a failed block
            say({"error": describe_error(e)})
    trainer.vecenv.close()
    return 0


if __name__ == "__main__":
    sys.exit(serve(json.loads(sys.argv[1])))
