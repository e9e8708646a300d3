"""The real environment under test: perfkit's arena presets built on the released `mettagrid`
package (0.26.x; optional: `pip install 'perfkit[mettagrid]'`).

In that version `make_arena` has walls only, so this adapter adds the resource chain itself:
mines, generators and altars are grid objects whose on-use handlers move items between agent and
building (take output, else deposit inputs), and timestep events convert inputs to outputs at the
cooldowns of the real env (a mine refills every 50 steps up to one ore; a generator turns one ore into
a battery every 25; an altar turns N batteries into a heart every 10). These are periodic, where
the reference arena restarts a cooldown when a building is emptied: timings differ by up to one
period. Blocks are placed as walls. Rewards follow the preset's item map with caps, computed from
the inventory as the real stack does.

The env auto-resets inside `step` and returns infos as a dict; the adapter returns them as the
list of dicts the vector env wants, once per episode, with mettagrid's `heart.gained`-style stats
renamed to perfkit's `heart.get`. `set_env_config` goes through `set_mg_config` (the next
simulation uses it); desync uses an early-reset handler with the same per-env/shared RNG choice
as the reference arena.
"""

from __future__ import annotations

import numpy as np
import pufferlib

from envs.arena.config import ITEMS, ArenaConfig

INSTALL_HINT = "--env mettagrid needs the optional package: pip install 'perfkit[mettagrid]' (mettagrid==0.26.22)"


def available() -> bool:
    try:
        import mettagrid.envs.mettagrid_puffer_env  # noqa: F401
    except ImportError:
        return False
    return True


def mg_config(cfg: ArenaConfig):
    """Translate an arena preset into a MettaGridConfig."""
    from mettagrid.builder.envs import make_arena
    from mettagrid.config.event_config import EventConfig, periodic
    from mettagrid.config.filter import targetHas
    from mettagrid.config.filter.resource_filter import actorHas
    from mettagrid.config.game_value import InventoryValue
    from mettagrid.config.handler_config import Handler, firstMatch
    from mettagrid.config.mettagrid_config import GridObjectConfig, InventoryConfig, ResourceLimitsConfig
    from mettagrid.config.mutation import deposit, updateTarget, withdraw
    from mettagrid.config.query import query
    from mettagrid.config.reward_config import reward
    from mettagrid.config.tag import typeTag

    mg = make_arena(num_agents=cfg.num_agents, combat=cfg.combat and cfg.laser_cost < 100)
    game = mg.game
    game.max_steps = cfg.max_steps
    game.resource_names = list(ITEMS)
    n = cfg.altar_batteries
    recipes = {  # building: (inputs, output, cooldown)
        "mine": ({}, "ore_red", cfg.cooldowns["mine"]),
        "generator": ({"ore_red": 1}, "battery_red", cfg.cooldowns["generator"]),
        "altar": ({"battery_red": n}, "heart", cfg.cooldowns["altar"]),
        "lasery": ({"ore_red": 1, "battery_red": 2}, "laser", cfg.cooldowns["lasery"]),
        "armory": ({"ore_red": 3}, "armor", cfg.cooldowns["armory"]),
    }
    events = {}
    for name, (inputs, output, cooldown) in recipes.items():
        if not cfg.objects.get(name):
            continue
        limits = {output: ResourceLimitsConfig(base=1, resources=[output])}
        for item, k in inputs.items():
            limits[item] = ResourceLimitsConfig(base=k, resources=[item])
        take = Handler(filters=[targetHas({output: 1})], mutations=[withdraw({output: 1})])
        puts = [Handler(filters=[actorHas({item: 1})], mutations=[deposit({item: 1})]) for item in inputs]
        game.objects[name] = GridObjectConfig(
            name=name,
            inventory=InventoryConfig(default_limit=0, limits=limits,
                                      initial={output: cfg.initial_resource_count}),
            on_use_handler=firstMatch([take, *puts]),
        )
        events[f"{name}_produces"] = EventConfig(
            name=f"{name}_produces",
            target_query=query(typeTag(name)),
            timesteps=periodic(start=cooldown, period=cooldown, end=cfg.max_steps),
            filters=[targetHas(inputs)] if inputs else [],
            mutations=[updateTarget({**{i: -k for i, k in inputs.items()}, output: 1})],
        )
    game.events = events
    game.agent.rewards = {
        item: reward(InventoryValue(item=item), weight=r.value, max=r.cap) for item, r in cfg.rewards.items()
    }
    counts = {k: v for k, v in cfg.objects.items() if v and k != "block"}
    counts["wall"] = cfg.objects.get("wall", 0) + cfg.objects.get("block", 0)  # blocks: plain obstacles here
    game.map_builder.instance.objects = counts
    game.map_builder.width, game.map_builder.height = cfg.width, cfg.height
    mg.desync_episodes = False  # perfkit's own handler below, so both RNG styles can be chosen
    return mg


def _handlers():
    from mettagrid.simulator import SimulatorEventHandler

    class FirstEpisodeDesync(SimulatorEventHandler):
        """Truncate the first episode at a drawn step (docs/axes.md, desync), from a per-env or the shared RNG."""

        def __init__(self, mode: str, rng: str, seed: int):
            super().__init__()
            self.mode, self.rng, self.seed = mode, rng, seed
            self.step_limit: int | None = None
            self._first = True

        def on_episode_start(self) -> None:
            if not self._first or self.mode == "off":
                return
            self._first = False
            m = self._sim.config.game.max_steps
            draw = np.random.randint if self.rng == "shared" else np.random.default_rng([self.seed, 0xDE5]).integers
            self.step_limit = int(draw(1, m + 1 if self.mode == "max-steps" else m))

        def on_step(self) -> None:
            if self.step_limit is not None and self._sim.current_step >= self.step_limit:
                self._sim.end_episode()
                self.step_limit = None

    return FirstEpisodeDesync


class MettagridArena(pufferlib.PufferEnv):
    """An arena preset on the real mettagrid core, with perfkit's env interface."""

    obs_scale = 1 / 255  # observations are (location, feature, value) byte tokens

    def __init__(self, cfg: ArenaConfig, buf=None, seed: int = 0, desync: str = "off", desync_rng: str = "per-env"):
        from mettagrid.envs.mettagrid_puffer_env import MettaGridPufferEnv
        from mettagrid.simulator import Simulator

        self._desync = desync
        self._seed = seed
        self.cfg = cfg
        self.config_builds = 0
        sim = Simulator()
        self._early = _handlers()(desync, desync_rng, seed)
        sim.add_event_handler(self._early)
        self._env = MettaGridPufferEnv(sim, self._translate(cfg), buf=buf, seed=seed)
        self.single_observation_space = self._env.single_observation_space
        self.single_action_space = self._env.single_action_space
        self.num_agents = self._env.num_agents
        self.observations, self.rewards = self._env.observations, self._env.rewards
        self.terminals, self.truncations = self._env.terminals, self._env.truncations
        self.masks, self.actions, self.teacher_actions = self._env.masks, self._env.actions, self._env.teacher_actions
        self.action_space = self._env.action_space
        self.observation_space = self._env.observation_space
        self.agent_ids = np.arange(self.num_agents)
        self.metadata = {"render_modes": []}

    def _translate(self, cfg: ArenaConfig):
        self.config_builds += 1
        mg = mg_config(cfg)
        mg.game.map_builder.seed = self._seed  # unseeded, mettagrid draws every map from fresh entropy
        return mg

    @property
    def first_episode_limit(self) -> int | None:
        return self._early.step_limit

    def set_env_config(self, cfg: ArenaConfig) -> None:
        """Through mettagrid's set_mg_config: the next simulation (after this episode) uses it."""
        self.cfg = cfg
        self._env.set_mg_config(self._translate(cfg))

    def get_env_config(self) -> ArenaConfig:
        return self.cfg

    def reset(self, seed: int | None = None):
        obs, _ = self._env.reset(seed)
        return obs, []

    def step(self, actions):
        obs, rewards, terminals, truncations, _ = self._env.step(actions)
        if terminals.all() or truncations.all():
            return obs, rewards, terminals, truncations, [self.episode_stats()]
        return obs, rewards, terminals, truncations, []

    def episode_stats(self) -> dict[str, float]:
        """mettagrid's per-agent episode stats, averaged, under perfkit's names."""
        sim = self._env.current_simulation
        agents = sim.episode_stats["agent"]
        n = max(1, len(agents))
        stats = {
            "episode_return": float(np.mean(sim.episode_rewards)),
            "episode_length": float(sim.current_step),
            "truncated": float(sim.current_step < self.cfg.max_steps),
            "unique_cells": sum(a.get("cell.unique_visited", 0.0) for a in agents) / n,
        }
        for item in ITEMS:
            stats[f"{item}.get"] = sum(a.get(f"{item}.gained", 0.0) for a in agents) / n
        return stats

    def close(self):
        self._env.close()


def make_mettagrid_env(cfg: ArenaConfig, buf=None, seed: int = 0, desync: str = "off",
                       desync_rng: str = "per-env") -> MettagridArena:
    if not available():
        raise ImportError(INSTALL_HINT)
    return MettagridArena(cfg, buf=buf, seed=seed, desync=desync, desync_rng=desync_rng)

