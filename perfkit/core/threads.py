"""Torch thread policy for `threads=auto`: never oversubscribe the cores this process may use.

torch's intra-op pool splits every op across its threads and waits for the slowest one, so a
thread that loses its core to a neighbour stalls the whole op. Measured on a shared 2-core
machine: 2 intra-op threads collapse 30x when a neighbour takes one core; 1 thread slows down
only by the share of the core it loses.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

MAX_THREADS = 256
MAX_AUTO_THREADS = 4  # PPO's small MLP matmuls stop scaling around 4 threads; more only add stalls


def available_cores() -> int:
    """CPUs this process may run on: the affinity mask (containers, taskset, cgroup cpusets
    restrict it), else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # macOS and Windows have no sched_getaffinity
        return os.cpu_count() or 1


def choose_threads(cores: int, workers: int, device: str) -> tuple[int, str]:
    """(torch intra-op threads, one-line reason) for `threads=auto`.

    - cuda: 1. The host thread only launches kernels and copies batches; the math runs on the GPU,
      and more host threads just compete with rollout workers for cores.
    - cpu: `max(1, min(4, (cores - workers) // 2))`. Each rollout worker process keeps a core
      busy, so `cores - workers` are left for the trainer; taking half of them leaves at least one
      for the parent's own Python (env stepping in serial mode, buffer copies) and for whatever
      else shares the machine, so one stolen core never stalls every thread of an op. The cap of
      4: the per-op work of a PPO-sized network stops scaling there.
    On 2 cores serial this gives 1, as it must (see the module docstring); 16 cores with 8
    workers gives 4; workers >= cores gives 1.
    """
    if cores < 1:
        raise ValueError(f"cores {cores} must be >= 1")
    if workers < 0:
        raise ValueError(f"workers {workers} must be >= 0 (0 for serial)")
    kind = device.split(":", 1)[0]
    if kind == "cuda":
        return 1, "cuda: the host only launches kernels, 1 intra-op thread"
    if kind != "cpu":
        raise ValueError(f"device {device!r} is not valid here; valid: cpu, cuda, cuda:N (resolve 'auto' first)")
    available = cores - workers
    n = max(1, min(MAX_AUTO_THREADS, available // 2))
    who = f"{workers} rollout workers" if workers else "serial"
    return n, (f"cpu: {cores} cores, {who}: {available} left, half of them (1..{MAX_AUTO_THREADS}) "
               f"-> {n} thread{'s' if n > 1 else ''}, so a busy neighbour core cannot stall every thread")


def parse_threads(value: str) -> str:
    """Validate a `threads` axis value: 'auto' or an integer 1..256 (returned normalised)."""
    v = str(value).strip().lower()
    if v == "auto":
        return v
    try:
        n = int(v)
    except ValueError:
        n = None
    if n is None or not 1 <= n <= MAX_THREADS:
        raise ValueError(f"threads={value!r} is not valid; valid: auto or an integer 1..{MAX_THREADS}")
    return str(n)


@dataclass(frozen=True)
class ThreadsApplied:
    threads: int  # torch.get_num_threads() after setting
    interop_threads: int  # torch.get_num_interop_threads() after trying
    interop_applied: bool  # False: torch had already started inter-op work (it can be set only once)
    note: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def apply_threads(n: int) -> ThreadsApplied:
    """Set torch's intra-op threads to n and, if torch still allows it, inter-op threads to n too
    (PPO does no inter-op parallel work; keeping that pool as small as the intra-op one means it
    can never oversubscribe either). Call early in the trial process, before any torch work.
    Environment variables such as OMP_NUM_THREADS only act before torch is imported: not here."""
    import torch

    if n < 1:
        raise ValueError(f"threads {n} must be >= 1")
    torch.set_num_threads(n)
    note = None
    try:
        torch.set_num_interop_threads(n)
        applied = True
    except RuntimeError as e:  # "cannot set number of interop threads after parallel work has started"
        applied, note = False, f"inter-op threads left at {torch.get_num_interop_threads()}: {e}"
    return ThreadsApplied(torch.get_num_threads(), torch.get_num_interop_threads(), applied, note)
