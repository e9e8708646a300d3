"""Rollout workers and the vector backend (docs/axes.md, workers)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pufferlib.vector


@dataclass(frozen=True)
class VecPlan:
    backend: str  # "serial" | "multiprocessing"
    num_workers: int
    num_envs: int

    def to_dict(self) -> dict:
        return {"backend": self.backend, "num_workers": self.num_workers, "num_envs": self.num_envs}


def _pow2_floor(n: int) -> int:
    p = 1
    while p * 2 <= n:
        p *= 2
    return p


def resolve_workers(spec: str, cpu_count: int, gpus: int) -> int:
    """Worker count for a `workers` axis value; 0 means serial stepping in this process.

    auto — after the refactor: max(1, (cpu_count // 2) // gpus), no rounding.
    pow2 — before it: the same ideal rounded down to a power of two.
    (gpus is at least 1 here: the original divided by cuda.device_count(), which is 0 on a CPU box.)
    """
    gpus = max(1, gpus)
    if spec == "serial":
        return 0
    ideal = (cpu_count // 2) // gpus
    if spec == "auto":
        return max(1, ideal)
    if spec == "pow2":
        return max(1, _pow2_floor(max(1, ideal)))
    return int(spec)


def plan(spec: str, num_envs: int, cpu_count: int | None = None, gpus: int = 0) -> VecPlan:
    workers = resolve_workers(spec, cpu_count or os.cpu_count() or 1, gpus)
    if workers == 0:
        return VecPlan("serial", 0, num_envs)
    # Every worker steps the same number of envs: round the env count up to a multiple.
    envs = -(-num_envs // workers) * workers
    return VecPlan("multiprocessing", workers, envs)


def make(creator, p: VecPlan, seed: int):
    if p.backend == "serial":
        return pufferlib.vector.make(creator, backend=pufferlib.vector.Serial, num_envs=p.num_envs, seed=seed)
    import psutil

    cores = psutil.cpu_count(logical=False) or 1
    return pufferlib.vector.make(
        creator,
        backend=pufferlib.vector.Multiprocessing,
        num_envs=p.num_envs,
        num_workers=p.num_workers,
        batch_size=p.num_envs,
        overwork=p.num_workers > cores,
        seed=seed,
    )
