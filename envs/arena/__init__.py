"""perfkit's reference arena: a numba-compiled multi-agent resource gridworld (FACTS §6)."""

from .config import ITEMS, PRESETS, ArenaConfig, Reward, preset
from .env import DESYNC_MODES, DESYNC_RNGS, ArenaEnv, make_arena_env

__all__ = [
    "ITEMS", "PRESETS", "ArenaConfig", "Reward", "preset",
    "DESYNC_MODES", "DESYNC_RNGS", "ArenaEnv", "make_arena_env",
]
