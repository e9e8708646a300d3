"""Arena configuration and the three presets (docs/axes.md, preset).

A config is plain data: the map builder and the simulation core turn it into arrays. Every
field that a preset changes is a field here, so the *resolved* config a trial ran (and its hash)
answers "is the recipe actually being used?".
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

# Inventory items, in the order of the core's arrays and of the observation's self plane.
ITEMS: tuple[str, ...] = ("ore_red", "battery_red", "heart", "laser", "armor", "blueprint")
ITEM_INDEX = {name: i for i, name in enumerate(ITEMS)}

# Grid cell types. Buildings are >= MINE; their recipes are indexed by type - MINE.
EMPTY, WALL, BLOCK, MINE, GENERATOR, ALTAR, LASERY, ARMORY = range(8)
OBJECT_TYPES = {
    "wall": WALL,
    "block": BLOCK,
    "mine": MINE,
    "generator": GENERATOR,
    "altar": ALTAR,
    "lasery": LASERY,
    "armory": ARMORY,
}
BUILDINGS = ("mine", "generator", "altar", "lasery", "armory")


@dataclass(frozen=True)
class Reward:
    """Reward for each unit of an item an agent *gets*, capped per agent per episode."""

    value: float
    cap: float | None = None  # None = uncapped


@dataclass(frozen=True)
class ArenaConfig:
    """Everything that defines one arena task. Frozen: a curriculum hands out new instances."""

    name: str = "custom"
    num_agents: int = 24
    width: int = 25  # including the border wall
    height: int = 25
    obs_size: int = 11  # egocentric window, odd
    max_steps: int = 1000
    objects: dict[str, int] = field(
        default_factory=lambda: {"mine": 10, "generator": 5, "altar": 5, "block": 20, "wall": 20}
    )
    altar_batteries: int = 1  # batteries an altar consumes per heart
    cooldowns: dict[str, int] = field(
        default_factory=lambda: {"mine": 50, "generator": 25, "altar": 10, "lasery": 10, "armory": 10}
    )
    initial_resource_count: int = 0  # output a building holds at reset
    rewards: dict[str, Reward] = field(default_factory=lambda: {"heart": Reward(1.0)})
    combat: bool = False
    laser_cost: int = 1
    freeze_steps: int = 10  # how long a lasered agent cannot act

    def __post_init__(self) -> None:
        errors = []
        if self.obs_size % 2 == 0 or self.obs_size < 3:
            errors.append(f"obs_size {self.obs_size} must be odd and >= 3")
        if self.width < 5 or self.height < 5:
            errors.append(f"map {self.width}x{self.height} must be at least 5x5")
        if self.num_agents < 1:
            errors.append(f"num_agents {self.num_agents} must be >= 1")
        if self.max_steps < 1:
            errors.append(f"max_steps {self.max_steps} must be >= 1")
        if self.altar_batteries < 1:
            errors.append(f"altar_batteries {self.altar_batteries} must be >= 1")
        for name, count in self.objects.items():
            if name not in OBJECT_TYPES:
                errors.append(f"unknown object {name!r}; valid: {', '.join(OBJECT_TYPES)}")
            elif count < 0:
                errors.append(f"object count {name}={count} must be >= 0")
        for name in self.rewards:
            if name not in ITEM_INDEX:
                errors.append(f"unknown reward item {name!r}; valid: {', '.join(ITEMS)}")
        free = (self.width - 2) * (self.height - 2)
        needed = sum(self.objects.values()) + self.num_agents
        if needed > free:
            errors.append(f"{needed} objects+agents do not fit in {free} interior cells")
        if errors:
            raise ValueError("invalid ArenaConfig: " + "; ".join(errors))

    @property
    def num_channels(self) -> int:
        return NUM_CHANNELS

    def replace(self, **changes) -> ArenaConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["rewards"] = {k: {"value": r.value, "cap": r.cap} for k, r in sorted(self.rewards.items())}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ArenaConfig:
        d = dict(d)
        d["rewards"] = {k: Reward(**v) for k, v in d.get("rewards", {}).items()}
        return cls(**d)

    def config_hash(self) -> str:
        """Stable short hash of the resolved config (name excluded: same recipe, same hash)."""
        d = self.to_dict()
        d.pop("name")
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


# Observation planes: one-hot object planes, a "building has output" plane, and the agent's own
# inventory written into the first cells of the last plane.
CHANNELS = ("wall", "block", "agent", "mine", "generator", "altar", "lasery", "armory", "ready", "self")
NUM_CHANNELS = len(CHANNELS)

_SHAPED = {
    "ore_red": Reward(0.1, 1.0),
    "battery_red": Reward(0.8, 1.0),
    "laser": Reward(0.5, 1.0),
    "armor": Reward(0.5, 1.0),
    "blueprint": Reward(0.5, 1.0),
}


def basic_easy_shaped() -> ArenaConfig:
    """The old default (`/env/mettagrid/arena/basic_easy_shaped`)."""
    return ArenaConfig(
        name="basic_easy_shaped",
        objects={"mine": 10, "generator": 5, "altar": 5, "block": 20, "wall": 20},
        altar_batteries=1,
        rewards={**_SHAPED, "heart": Reward(1.0)},
        combat=True,  # laser cost 1, but there is no lasery, so no lasers ever exist
        laser_cost=1,
        initial_resource_count=0,
    )


def make_arena() -> ArenaConfig:
    """The new default after the refactor: harder altar, combat buildings, heart-only reward."""
    return ArenaConfig(
        name="make_arena",
        objects={"mine": 10, "generator": 5, "altar": 5, "block": 0, "wall": 10, "lasery": 1, "armory": 1},
        altar_batteries=3,
        rewards={"heart": Reward(1.0)},
        combat=True,
        laser_cost=1,
        initial_resource_count=0,
    )


def fixed_recipe() -> ArenaConfig:
    """The recipe that restored learning: old objects, shaped rewards, heart cap 255, no combat,
    buildings start holding one unit of output."""
    return ArenaConfig(
        name="fixed_recipe",
        objects={"mine": 10, "generator": 5, "altar": 5, "block": 20, "wall": 20},
        altar_batteries=1,
        rewards={**_SHAPED, "heart": Reward(1.0, 255.0)},
        combat=False,
        laser_cost=100,
        initial_resource_count=1,
    )


PRESETS = {
    "basic_easy_shaped": basic_easy_shaped,
    "make_arena": make_arena,
    "fixed_recipe": fixed_recipe,
}


def preset(name: str) -> ArenaConfig:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}") from None
