"""Env creators by name: what a scenario's `env` axis resolves to.

A creator has the signature `pufferlib.vector.make` calls: `creator(buf=..., seed=...)`. Creators
are module-level `functools.partial`s so the multiprocessing backend can ship them to workers.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from dataclasses import dataclass

from envs.arena.config import preset as arena_preset
from envs.arena.env import ArenaEnv
from envs.curriculum import make_curriculum, wrap

FACTORY_CONTRACT = "pkg.module:callable taking (buf=None, seed=0) and returning a pufferlib.PufferEnv"
CONFIG_METHODS = ("set_env_config", "get_env_config")  # what the curriculum wrapper calls on an env


class EnvSpecError(ValueError):
    """The env axis names something that cannot be built; the message says why and what to do."""


@dataclass(frozen=True)
class EnvCheck:
    """What `check_env` found out about an env axis value that can be built."""

    value: str
    kind: str  # "arena" | "mettagrid" | "factory"
    missing_config_methods: tuple[str, ...] = ()  # of CONFIG_METHODS, the ones the env lacks

    @property
    def has_set_env_config(self) -> bool:
        """True when the curriculum wrapper (wrapper=getattribute|getattr) can drive this env."""
        return not self.missing_config_methods


def _bad_factory(value: str, reason: str) -> EnvSpecError:
    return EnvSpecError(f"--env {value}: {reason}; expected {FACTORY_CONTRACT}")


def _describe(e: BaseException) -> str:
    if isinstance(e, SyntaxError):
        where = f"{e.filename}, line {e.lineno}" if e.filename else f"line {e.lineno}"
        return f"SyntaxError: {e.msg} ({where})"
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def check_env(value: str) -> EnvCheck:
    """Check that an env axis value can be built, before anything runs; raise `EnvSpecError` with
    the value, the reason and (for a factory) what a factory must be.

    `arena` always passes; `mettagrid` needs its optional package. For `pkg.module:factory` this
    imports the module (any exception it raises, SyntaxError included, is reported), checks the
    attribute is callable, builds ONE env with `factory(buf=None, seed=0)`, checks it is a
    `pufferlib.PufferEnv` with a Discrete action space, closes it and reports which of
    `set_env_config`/`get_env_config` (needed by the curriculum wrapper) it lacks.
    """
    if value == "arena":
        return EnvCheck(value, "arena")
    if value == "mettagrid":
        from envs.mettagrid import INSTALL_HINT, available

        if not available():
            raise EnvSpecError(INSTALL_HINT)
        return EnvCheck(value, "mettagrid")
    module_name, sep, attr = value.partition(":")
    if not sep or not module_name or not attr:
        raise EnvSpecError(f"unknown env {value!r}; valid: arena, mettagrid, {FACTORY_CONTRACT}")
    load = "cannot load the factory"
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - a user's module may raise anything at import
        if isinstance(e, ModuleNotFoundError) and e.name and (module_name + ".").startswith(e.name + "."):
            raise _bad_factory(value, f"{load}: cannot import module {module_name!r} ({_describe(e)})") from None
        raise _bad_factory(value, f"{load}: importing module {module_name!r} failed ({_describe(e)})") from None
    if not hasattr(module, attr):
        raise _bad_factory(value, f"{load}: module {module_name!r} has no attribute {attr!r}")
    factory = getattr(module, attr)
    if not callable(factory):
        raise _bad_factory(value, f"{load}: {attr!r} is not callable (an object of type {type(factory).__name__})")
    try:
        env = factory(buf=None, seed=0)
    except (Exception, SystemExit) as e:  # noqa: BLE001
        raise _bad_factory(value, f"building one env with {attr}(buf=None, seed=0) raised {_describe(e)}") from None
    problem = _env_problem(env)
    if problem is None:
        try:
            env.close()
        except (Exception, SystemExit) as e:  # noqa: BLE001 - the vector env closes every env after a trial
            problem = f"close() raised {_describe(e)}"
    else:
        with contextlib.suppress(Exception, SystemExit):  # already reporting the real problem
            getattr(env, "close", lambda: None)()
    if problem is not None:
        raise _bad_factory(value, f"{attr}(buf=None, seed=0) returned {_what(env)}: {problem}")
    missing = tuple(m for m in CONFIG_METHODS if not callable(getattr(env, m, None)))
    return EnvCheck(value, "factory", missing)


def _what(env) -> str:
    return "None" if env is None else f"a {type(env).__module__}.{type(env).__qualname__}"


def _env_problem(env) -> str | None:
    """Why pufferlib's vector env or perfkit's policy could not use `env`, or None."""
    import gymnasium
    import pufferlib
    import pufferlib.emulation

    if not isinstance(env, (pufferlib.PufferEnv, pufferlib.emulation.GymnasiumPufferEnv,
                            pufferlib.emulation.PettingZooPufferEnv)):
        lacking = [a for a in ("single_observation_space", "single_action_space", "num_agents")
                   if not hasattr(env, a)]
        return "not a pufferlib.PufferEnv" + (f" (no {', '.join(lacking)})" if lacking else "")
    if not isinstance(env.single_action_space, gymnasium.spaces.Discrete):
        return (f"single_action_space is {env.single_action_space}; perfkit's policy needs a "
                "gymnasium.spaces.Discrete")
    return None


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


def _custom(buf=None, seed=0, *, target, dispatch, config_timing, factory=None):
    """A user's env: `factory` when given (already imported, as bisect imports each commit's
    code), else imported from `target` (pkg.module:factory)."""
    if factory is None:
        module_name, _, attr = target.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise EnvSpecError(f"cannot load env factory {target!r}: {e}") from e
    env = factory(buf=buf, seed=seed)
    missing = [m for m in CONFIG_METHODS if not hasattr(env, m)]
    if dispatch != "none" and missing:
        raise EnvSpecError(
            f"env {target!r} has no {'/'.join(missing)}, so wrapper={dispatch} cannot drive it; "
            "use wrapper=none or add set_env_config/get_env_config"
        )
    return wrap(env, dispatch, config_timing)


def make_creator(values: dict[str, str], factory=None):
    """The env creator for a scenario's axis values (`factory`: the user env's, already imported)."""
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
        target = functools.partial(_custom, target=env, factory=factory, **common)
        return target
    raise EnvSpecError(f"unknown env {env!r}; valid: arena, mettagrid, pkg.module:factory")
