"""A scripted agent that runs the resource chain greedily: the upper-bound reference for what a
learned policy should approach on a preset.

Each agent walks (shortest path around walls, blocks and buildings) to the nearest building it can
use next: an altar when it holds the batteries a heart needs (or an altar holds a heart), else a
generator when it holds ore (or one holds a battery), else a mine with ore ready, else the nearest
mine to wait at. Distances come from one breadth-first search per building per episode.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from .config import ALTAR, EMPTY, GENERATOR, ITEM_INDEX, MINE
from .env import ArenaEnv

ORE, BATTERY = ITEM_INDEX["ore_red"], ITEM_INDEX["battery_red"]
# action -> (drow, dcol), as in core.MOVES
STEPS = ((1, -1, 0), (2, 1, 0), (3, 0, -1), (4, 0, 1))


def _bfs(grid: np.ndarray, start: tuple[int, int]) -> np.ndarray:
    """Steps from every walkable cell to a cell next to `start` (the building itself)."""
    h, w = grid.shape
    dist = np.full((h, w), np.iinfo(np.int32).max, dtype=np.int64)
    q: deque[tuple[int, int]] = deque()
    r0, c0 = start
    for _, dr, dc in STEPS:
        r, c = r0 + dr, c0 + dc
        if 0 <= r < h and 0 <= c < w and grid[r, c] == EMPTY:
            dist[r, c] = 0
            q.append((r, c))
    while q:
        r, c = q.popleft()
        for _, dr, dc in STEPS:
            rr, cc = r + dr, c + dc
            if 0 <= rr < h and 0 <= cc < w and grid[rr, cc] == EMPTY and dist[rr, cc] > dist[r, c] + 1:
                dist[rr, cc] = dist[r, c] + 1
                q.append((rr, cc))
    return dist


class GreedyChainPolicy:
    def __init__(self, env: ArenaEnv, seed: int = 0):
        self.env = env
        self._episode_id = None
        self._rng = np.random.default_rng(seed)  # breaks deadlocks between agents blocking each other

    def _plan(self) -> None:
        env = self.env
        grid = env._grid
        self.buildings: dict[int, list[tuple[int, tuple[int, int], np.ndarray]]] = {MINE: [], GENERATOR: [], ALTAR: []}
        for b, t in enumerate(env._btype):
            if t in self.buildings:
                rows, cols = np.nonzero(env._bidx == b)
                pos = (int(rows[0]), int(cols[0]))
                self.buildings[int(t)].append((b, pos, _bfs(grid, pos)))
        self._episode_id = id(env._grid)

    def _target(self, i: int) -> tuple[int, tuple[int, int], np.ndarray] | None:
        env = self.env
        inv = env._ainv[i]
        need = env.cfg.altar_batteries
        r, c = env._apos[i]
        stock = env._bstock

        def nearest(kind: int, ready_only: bool = False):
            cands = [x for x in self.buildings[kind] if not ready_only or stock[x[0]] > 0]
            return min(cands, key=lambda x: x[2][r, c], default=None)

        if inv[BATTERY] >= need or (inv[BATTERY] == 0 and nearest(ALTAR, True)):
            return nearest(ALTAR, ready_only=inv[BATTERY] < need) or nearest(ALTAR)
        if inv[ORE] > 0 or nearest(GENERATOR, True):
            return nearest(GENERATOR, ready_only=inv[ORE] == 0) or nearest(GENERATOR)
        return nearest(MINE, True) or nearest(MINE)

    def actions(self) -> np.ndarray:
        env = self.env
        if self._episode_id != id(env._grid):
            self._plan()
        out = np.zeros(env.num_agents, dtype=np.int32)
        for i in range(env.num_agents):
            target = self._target(i)
            if target is None:
                continue
            _, (br, bc), dist = target
            r, c = env._apos[i]
            best, best_d = 0, dist[r, c]
            for a, dr, dc in STEPS:
                rr, cc = r + dr, c + dc
                if (rr, cc) == (br, bc):
                    best, best_d = a, -1  # adjacent: use the building
                    break
                if env._grid[rr, cc] == EMPTY and env._occ[rr, cc] == 0 and dist[rr, cc] < best_d:
                    best, best_d = a, dist[rr, cc]
            if best == 0 and best_d > 0 and self._rng.random() < 0.5:
                best = int(self._rng.integers(1, 5))  # blocked on the way: sidestep at random
            out[i] = best
        return out


def scripted_episode_stats(env: ArenaEnv, seed: int) -> dict[str, float]:
    """Run one full episode of the greedy policy; return the episode's stats."""
    env.reset(seed=seed)
    policy = GreedyChainPolicy(env, seed)
    while True:
        _, _, _, _, infos = env.step(policy.actions())
        if infos:
            return infos[0]
