"""A user's own env, as perfkit's benchmarks load it: `--env forage:make` with this folder on
PYTHONPATH. Nothing here comes from perfkit's arena: 16 agents forage on a 16x16 torus, each sees a
5x5 window, food regrows at random. `make_slow` is the same env with a hidden per-step cost in
`_reconcile_ledger` (the cost, in microseconds per step, comes from PERFKIT_BENCH_COST_US so a
benchmark can calibrate it), `make_slower` the same with PERFKIT_BENCH_COST_US_2 (two costs side by
side in one gate run); `make_twin` is the same code as `make` under another name. `make_stale` has
a learning bug and no speed bug: it takes the agents' view before they move instead of after, so
every observation is one step late (the learning benchmark's subtle regression).
"""

from __future__ import annotations

import os
import time

import gymnasium
import numpy as np
import pufferlib

SIZE, AGENTS, VIEW = 16, 16, 5
MOVES = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]])


def _reconcile_ledger(microseconds: float) -> None:
    """The hidden cost: busy-waits, as a slow bookkeeping call would."""
    end = time.perf_counter() + microseconds * 1e-6
    while time.perf_counter() < end:
        pass


class Forage(pufferlib.PufferEnv):
    def __init__(self, buf=None, seed: int = 0, cost_us: float = 0.0, max_steps: int = 256, scratch: int = 0,
                 stale: bool = False):
        self.single_observation_space = gymnasium.spaces.Box(0, 255, (VIEW * VIEW,), dtype=np.uint8)
        self.single_action_space = gymnasium.spaces.Discrete(5)
        self.num_agents = AGENTS
        super().__init__(buf)
        self.cost_us, self.max_steps, self.scratch, self.stale = cost_us, max_steps, scratch, stale
        self.rng = np.random.default_rng(seed)
        self._offsets = np.stack(np.meshgrid(np.arange(VIEW) - VIEW // 2, np.arange(VIEW) - VIEW // 2,
                                             indexing="ij"), -1).reshape(-1, 2)
        self._eaten = 0.0

    def _observe(self) -> None:
        cells = (self.pos[:, None, :] + self._offsets[None]) % SIZE
        self.observations[:] = self.food[cells[..., 0], cells[..., 1]] * 255

    def _scratch_tally(self, agent: int) -> float:
        tally = np.full(self.scratch, float(agent))
        return tally[0]

    def reset(self, seed=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.food = (self.rng.random((SIZE, SIZE)) < 0.2).astype(np.uint8)
        self.pos = self.rng.integers(0, SIZE, (AGENTS, 2))
        self.t, self._eaten = 0, 0.0
        self._observe()
        return self.observations, []

    def step(self, actions):
        if self.cost_us:
            _reconcile_ledger(self.cost_us)
        if self.stale:
            self._observe()  # the bug: the view is taken before the move, so it is one step late
        self.pos = (self.pos + MOVES[np.asarray(actions, dtype=np.int64)]) % SIZE
        got = self.food[self.pos[:, 0], self.pos[:, 1]].astype(np.float32)
        self.food[self.pos[:, 0], self.pos[:, 1]] = 0
        self.food |= (self.rng.random((SIZE, SIZE)) < 0.01).astype(np.uint8)
        self.rewards[:] = got
        self._eaten += float(got.sum())
        self.t += 1
        done = self.t >= self.max_steps
        self.terminals[:] = False
        self.truncations[:] = done
        infos = []
        if done:
            infos = [{"food_per_agent": self._eaten / AGENTS, "episode_return": self._eaten / AGENTS}]
            self.reset()
        else:
            for agent in range(AGENTS if self.scratch else 0):
                self._scratch_tally(agent)
            if not self.stale:
                self._observe()
        return self.observations, self.rewards, self.terminals, self.truncations, infos

    def close(self):
        pass


def make(buf=None, seed=0):
    return Forage(buf=buf, seed=seed)


def make_twin(buf=None, seed=0):
    return Forage(buf=buf, seed=seed)


def make_slow(buf=None, seed=0):
    return Forage(buf=buf, seed=seed, cost_us=float(os.environ.get("PERFKIT_BENCH_COST_US", "0")))


def make_slower(buf=None, seed=0):
    return Forage(buf=buf, seed=seed, cost_us=float(os.environ.get("PERFKIT_BENCH_COST_US_2", "0")))


def make_scratch(buf=None, seed=0):
    return Forage(buf=buf, seed=seed, scratch=int(os.environ.get("PERFKIT_BENCH_SCRATCH", "0")))


def make_stale(buf=None, seed=0):
    return Forage(buf=buf, seed=seed, stale=True)
