import numpy as np
import pytest

from envs.arena.config import ALTAR, GENERATOR, MINE, WALL, ArenaConfig


@pytest.fixture
def tiny_chain_cfg():
    """One agent in a 5x5 room with a mine above, a generator right, an altar below."""

    def make(altar_batteries: int = 1, initial: int = 0) -> ArenaConfig:
        return ArenaConfig(name="tiny", num_agents=1, width=5, height=5, obs_size=5, objects={},
                           altar_batteries=altar_batteries, initial_resource_count=initial)

    return make


def chain_map():
    grid = np.zeros((5, 5), dtype=np.int8)
    grid[0, :] = grid[-1, :] = grid[:, 0] = grid[:, -1] = WALL
    grid[1, 2], grid[2, 3], grid[3, 2] = MINE, GENERATOR, ALTAR
    return grid, np.array([[2, 2]])
