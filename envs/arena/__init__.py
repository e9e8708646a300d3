"""perfkit's reference arena: a numba-compiled multi-agent resource gridworld (docs/axes.md, preset).

The env itself (numba, pufferlib) loads on first use of `ArenaEnv` or `make_arena_env`, so the
presets and configs import fast (the CLI reads them for --help)."""

from .config import ITEMS, PRESETS, ArenaConfig, Reward, preset

__all__ = [
    "ITEMS", "PRESETS", "ArenaConfig", "Reward", "preset",
    "DESYNC_MODES", "DESYNC_RNGS", "ArenaEnv", "make_arena_env",
]
_LAZY = ("DESYNC_MODES", "DESYNC_RNGS", "ArenaEnv", "make_arena_env")


def __getattr__(name: str):
    if name in _LAZY:
        from . import env

        return getattr(env, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
