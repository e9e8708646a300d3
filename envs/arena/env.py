"""`ArenaEnv`: the reference arena as a `pufferlib.PufferEnv`.

Lifecycle, as on the real stack: `step` ends an episode by setting `truncations` and returning
the episode's stats in `infos`; the env then reports `done`, and the vector env calls `reset()`
before the next step (`pufferlib.vector.Serial` checks `env.done`). `set_env_config(cfg)` swaps
the task and rebuilds the map builder at once; `reset()` builds a fresh map and simulation core.
"""

from __future__ import annotations

import time

import gymnasium
import numpy as np
import pufferlib

from envs.values import DESYNC_MODES, DESYNC_RNGS  # noqa: F401 -- re-exported

from . import core
from .config import (
    ALTAR,
    BUILDINGS,
    ITEM_INDEX,
    ITEMS,
    MINE,
    NUM_CHANNELS,
    OBJECT_TYPES,
    ArenaConfig,
    basic_easy_shaped,
)


class MapBuilder:
    """Turns a config into the arrays a map is drawn from (the part `set_env_config` rebuilds)."""

    def __init__(self, cfg: ArenaConfig):
        self.cfg = cfg
        h, w = cfg.height, cfg.width
        rows, cols = np.mgrid[1 : h - 1, 1 : w - 1]
        self.interior = np.stack([rows.ravel(), cols.ravel()], axis=1)
        # Deterministic object order (sorted by type) so a seed fixes the layout.
        self.object_types = np.array(
            [OBJECT_TYPES[name] for name in sorted(cfg.objects) for _ in range(cfg.objects[name])],
            dtype=np.int8,
        )
        n_types = len(BUILDINGS)
        n_items = len(ITEMS)
        self.recipe = np.zeros((n_types, n_items), dtype=np.int32)
        self.recipe[GENERATOR_T, ITEM_INDEX["ore_red"]] = 1
        self.recipe[ALTAR - MINE, ITEM_INDEX["battery_red"]] = cfg.altar_batteries
        self.recipe[LASERY_T, ITEM_INDEX["ore_red"]] = 1
        self.recipe[LASERY_T, ITEM_INDEX["battery_red"]] = 2
        self.recipe[ARMORY_T, ITEM_INDEX["ore_red"]] = 3
        self.out_item = np.array(
            [ITEM_INDEX[i] for i in ("ore_red", "battery_red", "heart", "laser", "armor")], dtype=np.int32
        )
        self.cooldown = np.array([cfg.cooldowns[b] for b in BUILDINGS], dtype=np.int32)
        self.reward = np.zeros(n_items, dtype=np.float32)
        self.reward_cap = np.full(n_items, np.inf, dtype=np.float32)
        for item, r in cfg.rewards.items():
            self.reward[ITEM_INDEX[item]] = r.value
            if r.cap is not None:
                self.reward_cap[ITEM_INDEX[item]] = r.cap

    def build(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A fresh grid (border walls + objects) and agent positions."""
        cfg = self.cfg
        grid = np.zeros((cfg.height, cfg.width), dtype=np.int8)
        grid[0, :] = grid[-1, :] = grid[:, 0] = grid[:, -1] = OBJECT_TYPES["wall"]
        cells = self.interior[rng.permutation(len(self.interior))]
        n_obj = len(self.object_types)
        grid[cells[:n_obj, 0], cells[:n_obj, 1]] = self.object_types
        agents = cells[n_obj : n_obj + cfg.num_agents].astype(np.int64)
        return grid, agents


GENERATOR_T = OBJECT_TYPES["generator"] - MINE
LASERY_T = OBJECT_TYPES["lasery"] - MINE
ARMORY_T = OBJECT_TYPES["armory"] - MINE


class ArenaEnv(pufferlib.PufferEnv):
    """24-agent resource arena. Deterministic for a seed.

    desync: how the *first* episode is shortened (docs/axes.md, desync): `off`; `max-steps` (old: the first
    episode's max_steps is drawn from [1, max_steps]); `early-reset` (new: truncated at a step drawn
    from [1, max_steps)). desync_rng: `per-env` (a generator seeded from this env's seed, the fix)
    or `shared` (the process-global NumPy RNG, which forked workers inherit: the bug).
    inject_cost_us: burn this many microseconds per step in `_injected_cost` (a known hidden cost
    for validating profilers and gates).
    """

    def __init__(
        self,
        cfg: ArenaConfig | None = None,
        buf=None,
        seed: int = 0,
        desync: str = "off",
        desync_rng: str = "per-env",
        inject_cost_us: float = 0.0,
    ):
        if desync not in DESYNC_MODES:
            raise ValueError(f"desync {desync!r} invalid; valid: {', '.join(DESYNC_MODES)}")
        if desync_rng not in DESYNC_RNGS:
            raise ValueError(f"desync_rng {desync_rng!r} invalid; valid: {', '.join(DESYNC_RNGS)}")
        cfg = cfg or basic_easy_shaped()
        self.num_agents = cfg.num_agents
        self.single_observation_space = gymnasium.spaces.Box(
            0, 255, (NUM_CHANNELS, cfg.obs_size, cfg.obs_size), dtype=np.uint8
        )
        self.single_action_space = gymnasium.spaces.Discrete(5)
        super().__init__(buf)
        self._shape = (cfg.num_agents, cfg.obs_size)
        self.seed = seed
        self.desync = desync
        self.desync_rng = desync_rng
        self.inject_cost_us = float(inject_cost_us)
        self._rng = np.random.default_rng(seed)
        self.config_builds = 0  # map builders built: what set_env_config costs, counted
        self.set_env_config(cfg)
        self.first_episode_limit = self._draw_first_limit()
        self.episodes = 0
        self.resets = 0
        self._done = False
        self._t = 0

    # -- config -----------------------------------------------------------------------------
    def set_env_config(self, cfg: ArenaConfig) -> None:
        """Swap the task; rebuilds the map builder now, the map at the next reset."""
        if (cfg.num_agents, cfg.obs_size) != self._shape:
            raise ValueError(
                f"set_env_config cannot change num_agents/obs_size from {self._shape} to "
                f"{(cfg.num_agents, cfg.obs_size)}: the vector env's buffers are fixed"
            )
        self.cfg = cfg
        self.map_builder = MapBuilder(cfg)
        self.config_builds += 1

    def get_env_config(self) -> ArenaConfig:
        return self.cfg

    def _draw_first_limit(self) -> int:
        m = self.cfg.max_steps
        if self.desync == "off":
            return m
        if self.desync_rng == "shared":
            draw = np.random.randint  # process-global state: identical in forked workers
        else:
            draw = np.random.default_rng([self.seed, 0xDE5]).integers
        if self.desync == "max-steps":
            return int(draw(1, m + 1))  # [1, max_steps]
        return int(draw(1, m))  # early-reset: [1, max_steps)

    # -- PufferEnv API ------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self._done

    def reset(self, seed: int | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        cfg = self.cfg
        mb = self.map_builder
        grid, apos = mb.build(self._rng)
        occ = np.zeros(grid.shape, dtype=np.int32)
        occ[apos[:, 0], apos[:, 1]] = np.arange(1, cfg.num_agents + 1)
        brow, bcol = np.nonzero(grid >= MINE)
        n_b = len(brow)
        bidx = np.full(grid.shape, -1, dtype=np.int32)
        bidx[brow, bcol] = np.arange(n_b)
        self._grid, self._occ, self._bidx, self._apos = grid, occ, bidx, apos
        self._btype = grid[brow, bcol].astype(np.int32)
        self._bstock = np.full(n_b, cfg.initial_resource_count, dtype=np.int32)
        self._btimer = np.zeros(n_b, dtype=np.int32)
        self._binv = np.zeros((n_b, len(ITEMS)), dtype=np.int32)
        self._ainv = np.zeros((cfg.num_agents, len(ITEMS)), dtype=np.int32)
        self._afrozen = np.zeros(cfg.num_agents, dtype=np.int32)
        self._agets = np.zeros((cfg.num_agents, len(ITEMS)), dtype=np.int32)
        self._acc = np.zeros((cfg.num_agents, len(ITEMS)), dtype=np.float32)
        self._visited = np.zeros((cfg.num_agents, *grid.shape), dtype=np.bool_)
        self._visited[np.arange(cfg.num_agents), apos[:, 0], apos[:, 1]] = True
        self._return = np.zeros(cfg.num_agents, dtype=np.float64)
        core.start_buildings(self._btype, self._bstock, self._btimer, self._binv, mb.recipe, mb.cooldown)
        self._limit = self.first_episode_limit if self.episodes == 0 else cfg.max_steps
        self._t = 0
        self._done = False
        self.resets += 1
        self.rewards[:] = 0
        self.terminals[:] = False
        self.truncations[:] = False
        core.observe(grid, occ, bidx, self._bstock, apos, self._ainv, self._afrozen, self.observations)
        return self.observations, []

    def step(self, actions):
        if self._done:  # a backend that steps a finished env without reset (e.g. 1 env/worker)
            self.reset()
            return self.observations, self.rewards, self.terminals, self.truncations, []
        if self.inject_cost_us > 0:
            _injected_cost(self.inject_cost_us)
        mb = self.map_builder
        cfg = self.cfg
        core.step(
            actions, self._grid, self._occ, self._bidx, self._btype, self._bstock, self._btimer,
            self._binv, self._apos, self._ainv, self._afrozen, self._agets, self._acc,
            self._visited, mb.recipe, mb.out_item, mb.cooldown, mb.reward, mb.reward_cap,
            cfg.combat, cfg.laser_cost, cfg.freeze_steps, self.rewards,
        )
        core.observe(
            self._grid, self._occ, self._bidx, self._bstock, self._apos, self._ainv, self._afrozen,
            self.observations,
        )
        self._return += self.rewards
        self._t += 1
        if self._t < self._limit:
            return self.observations, self.rewards, self.terminals, self.truncations, []
        self.truncations[:] = True
        self._done = True
        self.episodes += 1
        return self.observations, self.rewards, self.terminals, self.truncations, [self.episode_stats()]

    def episode_stats(self) -> dict[str, float]:
        """Per-agent means for the episode so far (what `infos` carries at episode end)."""
        stats = {
            "episode_return": float(self._return.mean()),
            "episode_length": float(self._t),
            "truncated": float(self._t < self.cfg.max_steps),
            "unique_cells": float(self._visited.sum() / self.cfg.num_agents),
        }
        gets = self._agets.mean(axis=0)
        for k, item in enumerate(ITEMS):
            stats[f"{item}.get"] = float(gets[k])
        return stats

    def close(self):
        pass

    # -- scripted helpers (tests, diagnose) -----------------------------------------------------
    def agent_inventory(self, agent: int) -> dict[str, int]:
        return {item: int(self._ainv[agent, k]) for k, item in enumerate(ITEMS)}

    def place(self, grid: np.ndarray, agents: np.ndarray) -> None:
        """Replace the current map with a hand-built one (for scripted timing tests)."""
        self._rng = np.random.default_rng(self.seed)
        builder = self.map_builder
        self.map_builder = _FixedMap(builder, grid, agents)
        try:
            self.reset()
        finally:
            self.map_builder = builder


class _FixedMap:
    def __init__(self, builder: MapBuilder, grid: np.ndarray, agents: np.ndarray):
        self._builder, self._grid, self._agents = builder, grid, agents

    def __getattr__(self, name):
        return getattr(self._builder, name)

    def build(self, rng):
        return self._grid.copy(), self._agents.astype(np.int64).copy()


def _injected_cost(microseconds: float) -> None:
    """Busy-wait: a deliberate, named hidden cost that profilers and gates must find."""
    end = time.perf_counter() + microseconds * 1e-6
    while time.perf_counter() < end:
        pass


def make_arena_env(
    cfg: ArenaConfig | None = None, buf=None, seed: int = 0, **kwargs
) -> ArenaEnv:
    """Creator with the signature `pufferlib.vector.make` calls (`buf`, `seed`)."""
    return ArenaEnv(cfg, buf=buf, seed=seed, **kwargs)


__all__ = ["ArenaEnv", "MapBuilder", "make_arena_env", "DESYNC_MODES", "DESYNC_RNGS"]
