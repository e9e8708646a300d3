"""What a scenario decides about its trainer, in one place for every process that builds one."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from perfkit.train.cadence import Cadence

EVAL_SEED_OFFSET = 99_991  # the eval env's seed is the scenario's plus this: never one a training env uses


def scenario_options(values: Mapping[str, str], creator: Callable[..., Any], seed: int,
                     checkpoint_dir: str | None = None) -> dict[str, Any]:
    """The `Trainer`'s keyword arguments the scenario's axis values set: checkpoint and eval
    cadences, where checkpoints go, the eval env, and the injected fault."""
    return {"seed": seed, "checkpoint": Cadence.parse(values["checkpoint"]), "evaluate": Cadence.parse(values["eval"]),
            "checkpoint_dir": checkpoint_dir, "make_eval_env": lambda: creator(seed=seed + EVAL_SEED_OFFSET),
            "fault": values["fault"]}


def build_trainer(env, values: Mapping[str, str], creator: Callable[..., Any], cfg, device, seed: int,
                  checkpoint_dir: str | None = None):
    """A `Trainer` over `env` (built by `creator`) for a scenario's axis values."""
    from perfkit.train.ppo import Trainer

    return Trainer(env, cfg, device, **scenario_options(values, creator, seed, checkpoint_dir))
