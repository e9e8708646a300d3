"""The arena's simulation kernels, compiled with numba.

One call advances every agent of one arena by a step and writes rewards and observations into
the caller's (shared, pufferlib-owned) buffers. Python-level work per step is a single call, so
the per-step cost is dominated by the kernel, not by interpreter overhead; that keeps the env
cheap enough that wrapper dispatch costs stay visible, as on the real C++ env (docs/background.md).

Semantics (pinned by tests/test_arena.py):
- agents act in index order; action 0 = noop, 1..4 = move up/down/left/right;
- moving into a building *uses* it: first put in the inputs its recipe still lacks, then take one
  unit of output if it holds any;
- a building converts when idle, holding all inputs and no output: it consumes the inputs and
  produces one unit `cooldown` ticks later (a mine has no inputs, so it restarts as soon as its
  output is taken); reset is tick 0;
- with combat on, moving into another agent while holding `laser_cost` lasers fires: the target
  loses one armor if it has any, else it is frozen for `freeze_steps` steps.
"""

from __future__ import annotations

import numba
import numpy as np

from .config import ITEM_INDEX, MINE

LASER = ITEM_INDEX["laser"]
ARMOR = ITEM_INDEX["armor"]

# (drow, dcol) per action
MOVES = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.int64)


@numba.njit(cache=True)
def _tick_buildings(btype, bstock, btimer, binv, recipe, cooldown):
    for b in range(btype.shape[0]):
        t = btype[b] - MINE
        if btimer[b] > 0:
            btimer[b] -= 1
            if btimer[b] == 0:
                bstock[b] += 1
        if btimer[b] == 0 and bstock[b] == 0:
            ready = True
            for k in range(recipe.shape[1]):
                if binv[b, k] < recipe[t, k]:
                    ready = False
                    break
            if ready:
                for k in range(recipe.shape[1]):
                    binv[b, k] -= recipe[t, k]
                btimer[b] = cooldown[t]


@numba.njit(cache=True)
def start_buildings(btype, bstock, btimer, binv, recipe, cooldown):
    """Tick 0: idle, empty buildings whose recipe is met (mines) start converting."""
    _tick_buildings(btype, bstock, btimer, binv, recipe, cooldown)


@numba.njit(cache=True)
def step(
    actions, grid, occ, bidx, btype, bstock, btimer, binv, apos, ainv, afrozen, agets,
    areward_acc, visited, recipe, out_item, cooldown, reward, reward_cap, combat, laser_cost,
    freeze_steps, rewards_out,
):
    n_agents = apos.shape[0]
    n_items = ainv.shape[1]
    for i in range(n_agents):
        rewards_out[i] = 0.0
    for i in range(n_agents):
        if afrozen[i] > 0:
            afrozen[i] -= 1
            continue
        a = actions[i]
        if a <= 0 or a >= 5:
            continue
        r0 = apos[i, 0]
        c0 = apos[i, 1]
        r1 = r0 + MOVES[a, 0]
        c1 = c0 + MOVES[a, 1]
        cell = grid[r1, c1]
        other = occ[r1, c1]
        if other > 0:
            j = other - 1
            if combat and ainv[i, LASER] >= laser_cost:
                ainv[i, LASER] -= laser_cost
                if ainv[j, ARMOR] > 0:
                    ainv[j, ARMOR] -= 1
                else:
                    afrozen[j] = freeze_steps
        elif cell == 0:
            occ[r0, c0] = 0
            occ[r1, c1] = i + 1
            apos[i, 0] = r1
            apos[i, 1] = c1
            visited[i, r1, c1] = True
        elif cell >= MINE:
            b = bidx[r1, c1]
            t = cell - MINE
            for k in range(n_items):
                need = recipe[t, k] - binv[b, k]
                if need > 0:
                    give = min(need, ainv[i, k])
                    binv[b, k] += give
                    ainv[i, k] -= give
            if bstock[b] > 0:
                bstock[b] -= 1
                k = out_item[t]
                ainv[i, k] += 1
                agets[i, k] += 1
                r = reward[k]
                room = reward_cap[k] - areward_acc[i, k]
                if r > room:
                    r = room
                if r > 0.0:
                    areward_acc[i, k] += r
                    rewards_out[i] += r
    _tick_buildings(btype, bstock, btimer, binv, recipe, cooldown)


@numba.njit(cache=True)
def observe(grid, occ, bidx, bstock, apos, ainv, afrozen, obs):
    """Write each agent's egocentric window into obs[agent, channel, row, col] (uint8)."""
    n_agents = apos.shape[0]
    size = obs.shape[2]
    half = size // 2
    height = grid.shape[0]
    width = grid.shape[1]
    obs[:] = 0
    for i in range(n_agents):
        r0 = apos[i, 0] - half
        c0 = apos[i, 1] - half
        for dr in range(size):
            r = r0 + dr
            if r < 0 or r >= height:
                continue
            for dc in range(size):
                c = c0 + dc
                if c < 0 or c >= width:
                    continue
                cell = grid[r, c]
                if cell > 0:
                    # channels 0..7 follow the cell types WALL..ARMORY (1..7) shifted by one,
                    # except channel 2 (agent), so buildings land on 3..7
                    if cell <= 2:
                        obs[i, cell - 1, dr, dc] = 1
                    else:
                        obs[i, cell, dr, dc] = 1
                        if bstock[bidx[r, c]] > 0:
                            obs[i, 8, dr, dc] = 1
                if occ[r, c] > 0:
                    obs[i, 2, dr, dc] = 2 if afrozen[occ[r, c] - 1] > 0 else 1
        for k in range(ainv.shape[1]):
            v = ainv[i, k]
            obs[i, 9, 0, k] = 255 if v > 255 else v
