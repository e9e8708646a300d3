"""Print perfkit's measured throughput next to the original investigation's reference figures
(docs/background.md), as ratios.

    python bench/ratios.py [--seconds 20]

- env: the reference arena alone, random actions, one process, one core (agent-steps/s), against
  the real `mettagrid` 0.26.22 env's ~120k agent-steps/s on one core of these machines; if
  `mettagrid` is installed (`pip install 'perfkit[mettagrid]'`) it is also measured side by side.
- trainer: perfkit's PPO end to end (96 agents, 128-unit MLP, 1 update epoch, CPU, serial), against
  the reference trainer's ~40k agent-steps/s (PuffeRL on the real env, same shape).
The reference numbers are the ones measured on this project's 2-core machines (docs/background.md); the
perfkit numbers are measured now, on this machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from tabulate import tabulate

REF_ENV_SPS = 120_000  # the investigation's figure: ~113-127k agent-steps/s, real mettagrid env, one process
REF_TRAINER_SPS = 40_000  # the investigation's figure: PuffeRL, 96 agents, MLP 128, 1 update epoch, CPU
ENV_GOAL, TRAINER_GOAL = 2.0, 1.25


def env_sps(seconds: float, seed: int = 0, make_env=None) -> float:
    """Agent-steps/s of one env (default: the reference arena) stepped with random actions."""
    from envs.arena import ArenaEnv, preset

    env = (make_env or ArenaEnv)(preset("basic_easy_shaped"), seed=seed)
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(0, 5, (1024, env.num_agents)).astype(np.int32)
    env.step(actions[0])  # compile / load the numba cache outside the timed region
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for k in range(256):
            if env.done:
                env.reset()
            env.step(actions[k])
        steps += 256
    return steps * env.num_agents / (time.perf_counter() - t0)


def trainer_sps(seconds: float) -> float:
    from perfkit.core.scenario import Scenario
    from perfkit.engine.trial import run_trial

    return run_trial(Scenario.build({"device": "cpu", "wrapper": "none"}), seconds=seconds).sps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="measuring time per row")
    args = ap.parse_args()
    rows = []
    e = env_sps(args.seconds)
    rows.append(["reference arena env, random actions, 1 core", f"{e:,.0f}", f"{REF_ENV_SPS:,} (reference)",
                 f"{e / REF_ENV_SPS:.2f}x", f"{ENV_GOAL}x"])
    from envs.mettagrid import available, make_mettagrid_env

    if available():
        m = env_sps(args.seconds, make_env=make_mettagrid_env)
        rows.append(["real mettagrid env, same machine, now", f"{m:,.0f}", "", f"arena/real = {e / m:.2f}x",
                     f"{ENV_GOAL}x"])
    t = trainer_sps(args.seconds)
    rows.append(["perfkit PPO end to end (96 agents, MLP 128, 1 epoch, CPU)", f"{t:,.0f}",
                 f"{REF_TRAINER_SPS:,} (reference)", f"{t / REF_TRAINER_SPS:.2f}x", f"{TRAINER_GOAL}x"])
    print(tabulate(rows, headers=["workload", "agent-steps/s", "reference", "ratio", "goal"], tablefmt="github"))


if __name__ == "__main__":
    main()
