"""The curriculum wrapper in each dispatch style and config timing of the investigation (docs/background.md).

dispatch
  `getattribute` — as shipped: `__getattribute__` intercepts *every* attribute access. Names on an
      allow-list resolve on the wrapper; everything else is forwarded to the wrapped env, falling
      back to the wrapper on `AttributeError`. Faithful quirk: `reset` is not on the allow-list, so
      `wrapper.reset()` runs the inner env's reset and the wrapper's own `reset` never runs.
  `getattr` — the fix: explicit overrides for the names the vector-env base class defines itself,
      and `__getattr__` for the rest (only reached when normal lookup fails).
  `none` — no wrapper (`wrap` returns the env itself).

config timing
  `per-episode` — as shipped: at episode end, inside `step`, complete the task, draw the next one
      and call `env.set_env_config(cfg)` at once.
  `deferred` — the proposed fix: keep the next config pending and apply it in the wrapper's
      `reset`. Combined with `getattribute` the wrapper's reset never runs, so the pending config is
      never applied: `configs_applied` in the episode infos shows it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pufferlib

from envs.arena.config import ArenaConfig
from envs.values import CONFIG_TIMINGS, CURRICULA, DISPATCH_STYLES  # noqa: F401 -- re-exported


@dataclass
class Task:
    task_id: int
    cfg: ArenaConfig
    completions: int = 0
    total_score: float = 0.0

    def complete(self, score: float) -> None:
        self.completions += 1
        self.total_score += score


class Curriculum:
    """Draws tasks uniformly from a fixed list with its own seeded generator."""

    def __init__(self, tasks: list[ArenaConfig], seed: int = 0):
        if not tasks:
            raise ValueError("a curriculum needs at least one task")
        self.tasks = [Task(i, cfg) for i, cfg in enumerate(tasks)]
        self._rng = np.random.default_rng([seed, 0xC0])

    def get_task(self) -> Task:
        if len(self.tasks) == 1:
            return self.tasks[0]
        return self.tasks[int(self._rng.integers(len(self.tasks)))]


def make_curriculum(name: str, base: ArenaConfig, seed: int = 0) -> Curriculum:
    """`single`: the preset as the only task (what a recipe's single-task curriculum does: the
    same config is re-applied every episode). `mixed`: the preset plus variants that differ in
    altar cost and in map objects."""
    if name == "single":
        return Curriculum([base], seed)
    if name == "mixed":
        harder = base.replace(name=f"{base.name}+altar3", altar_batteries=3)
        open_map = base.replace(name=f"{base.name}+open", objects={**base.objects, "block": 0, "wall": 10})
        return Curriculum([base, harder, open_map], seed)
    raise ValueError(f"unknown curriculum {name!r}; valid: {', '.join(CURRICULA)}")


class _CurriculumLogic:
    """Behaviour shared by both dispatch styles; only attribute lookup differs between them."""

    def _init(self, env, curriculum: Curriculum, config_timing: str) -> None:
        if config_timing not in CONFIG_TIMINGS:
            raise ValueError(f"config timing {config_timing!r} invalid; valid: {', '.join(CONFIG_TIMINGS)}")
        self._env = env
        self._curriculum = curriculum
        self._config_timing = config_timing
        self._current_task = curriculum.get_task()
        self._pending_config = None
        self.configs_applied = 0
        self.tasks_completed = 0
        env.set_env_config(self._current_task.cfg)

    def step(self, actions):
        obs, rewards, terminals, truncations, infos = self._env.step(actions)
        if terminals.all() or truncations.all():
            self._end_episode(infos)
        return obs, rewards, terminals, truncations, infos

    def _end_episode(self, infos) -> None:
        score = float(infos[0]["episode_return"]) if infos else 0.0
        self._current_task.complete(score)
        self.tasks_completed += 1
        self._current_task = self._curriculum.get_task()
        cfg = self._current_task.cfg
        if self._config_timing == "per-episode":
            self._env.set_env_config(cfg)
            self.configs_applied += 1
        else:
            self._pending_config = cfg
        for info in infos:
            info["curriculum.tasks_completed"] = float(self.tasks_completed)
            info["curriculum.configs_applied"] = float(self.configs_applied)

    def _reset(self, seed=None):
        if self._pending_config is not None:
            self._env.set_env_config(self._pending_config)
            self._pending_config = None
            self.configs_applied += 1
        return self._env.reset(seed)


class GetattributeCurriculumEnv(_CurriculumLogic, pufferlib.PufferEnv):
    """As shipped: every attribute access goes through `__getattribute__`."""

    # Resolved on the wrapper itself; note `reset` is missing, as in the original.
    _OWN = frozenset(
        {
            "_env", "_curriculum", "_config_timing", "_current_task", "_pending_config",
            "configs_applied", "tasks_completed", "step", "_end_episode", "_reset", "_init",
            "__dict__", "__class__",
        }
    )

    def __init__(self, env, curriculum: Curriculum, config_timing: str = "per-episode"):
        self._init(env, curriculum, config_timing)

    def reset(self, seed=None):  # never reached through attribute lookup: see module docstring
        return self._reset(seed)

    def __getattribute__(self, name):
        if name in GetattributeCurriculumEnv._OWN:
            return object.__getattribute__(self, name)
        try:
            return getattr(object.__getattribute__(self, "_env"), name)
        except AttributeError:
            return object.__getattribute__(self, name)

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)


class GetattrCurriculumEnv(_CurriculumLogic, pufferlib.PufferEnv):
    """The fix: explicit overrides for names `PufferEnv` defines, `__getattr__` for the rest."""

    def __init__(self, env, curriculum: Curriculum, config_timing: str = "per-episode"):
        self._init(env, curriculum, config_timing)

    def reset(self, seed=None):
        return self._reset(seed)

    def close(self):
        return self._env.close()

    def render(self):
        return self._env.render()

    def async_reset(self, seed=None):
        return self._env.async_reset(seed)

    def send(self, actions):
        return self._env.send(actions)

    def recv(self):
        return self._env.recv()

    @property
    def single_observation_space(self):
        return self._env.single_observation_space

    @property
    def single_action_space(self):
        return self._env.single_action_space

    @property
    def num_agents(self):
        return self._env.num_agents

    @property
    def emulated(self):
        return self._env.emulated

    @property
    def done(self):
        return self._env.done

    @property
    def driver_env(self):
        return self._env.driver_env

    def __getattr__(self, name):
        if name == "_env":  # not yet set (during unpickling): avoid infinite recursion
            raise AttributeError(name)
        return getattr(self._env, name)


def wrap(env, dispatch: str, config_timing: str = "per-episode", curriculum: Curriculum | None = None):
    """Wrap `env` in the curriculum wrapper of the given dispatch style (`none`: no wrapper)."""
    if dispatch == "none":
        return env
    if curriculum is None:
        curriculum = Curriculum([env.get_env_config()])
    if dispatch == "getattribute":
        return GetattributeCurriculumEnv(env, curriculum, config_timing)
    if dispatch == "getattr":
        return GetattrCurriculumEnv(env, curriculum, config_timing)
    raise ValueError(f"dispatch {dispatch!r} invalid; valid: {', '.join(DISPATCH_STYLES)}")
