"""Env creators by name: what a scenario's `env` axis resolves to.

A creator has the signature `pufferlib.vector.make` calls: `creator(buf=..., seed=...)`. Creators
are module-level `functools.partial`s so the multiprocessing backend can ship them to workers.
"""

from __future__ import annotations

import functools
import importlib

from envs.arena.config import preset as arena_preset
from envs.arena.env import ArenaEnv
from envs.curriculum import make_curriculum, wrap


class EnvSpecError(ValueError):
    """The env axis names something that cannot be built; the message says why and what to do."""


def _arena(buf=None, seed=0, *, preset, desync, desync_rng, inject_cost_us, dispatch, config_timing, curriculum):
    cfg = arena_preset(preset)
    env = ArenaEnv(cfg, buf=buf, seed=seed, desync=desync, desync_rng=desync_rng, inject_cost_us=inject_cost_us)
    return wrap(env, dispatch, config_timing, make_curriculum(curriculum, cfg, seed))


def _mettagrid(buf=None, seed=0, *, preset, desync, desync_rng, inject_cost_us, dispatch, config_timing,
               curriculum):
    from envs.mettagrid import make_mettagrid_env

    if inject_cost_us:
        raise EnvSpecError("inject-cost-us is a knob of the reference arena only; use env=arena")
    cfg = arena_preset(preset)
    env = make_mettagrid_env(cfg, buf=buf, seed=seed, desync=desync, desync_rng=desync_rng)
    return wrap(env, dispatch, config_timing, make_curriculum(curriculum, cfg, seed))


def _custom(buf=None, seed=0, *, target, dispatch, config_timing):
    module_name, _, attr = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise EnvSpecError(f"cannot load env factory {target!r}: {e}") from e
    env = factory(buf=buf, seed=seed)
    if dispatch != "none" and not hasattr(env, "set_env_config"):
        raise EnvSpecError(
            f"env {target!r} has no set_env_config/get_env_config, so wrapper={dispatch} cannot drive it; "
            "use wrapper=none or add those methods"
        )
    return wrap(env, dispatch, config_timing)


def make_creator(values: dict[str, str]):
    """The env creator for a scenario's axis values."""
    env = values["env"]
    common = dict(dispatch=values["wrapper"], config_timing=values["env-config"])
    if env in ("arena", "mettagrid"):
        return functools.partial(
            _arena if env == "arena" else _mettagrid,
            preset=values["preset"],
            desync=values["desync"],
            desync_rng=values["desync-rng"],
            inject_cost_us=float(values["inject-cost-us"]),
            curriculum=values["curriculum"],
            **common,
        )
    if ":" in env:
        target = functools.partial(_custom, target=env, **common)
        return target
    raise EnvSpecError(f"unknown env {env!r}; valid: arena, mettagrid, pkg.module:factory")
