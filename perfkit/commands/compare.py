"""`perfkit compare` (and `explain --vary`, which runs one): a plan of variants on a backend.

The one place that chooses how a compare runs: all variants in one process (epochs interleaved),
a fresh process per trial, users' commands started once and run in turns, or the trials on a Ray
cluster's nodes; and, when asked, py-spy sampling every block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perfkit.core.scenario import Variant
from perfkit.engine.local import (
    Interleave,
    Runner,
    SamplingRunner,
    SubprocessRunner,
    run_compare,
    run_inprocess,
    run_interleaved,
)
from perfkit.engine.profilers.pyspy import Sampling
from perfkit.engine.rounds import StopRule
from perfkit.records.compare import CompareResult
from perfkit.records.trial import TrialResult

BACKENDS = ("local", "ray")


@dataclass
class CompareJob:
    """What to run: the variants, when to stop, each trial's budget and trainer, and where."""

    variants: list[Variant]
    rule: StopRule
    inprocess: bool  # every variant in one process (the varied axes allow it)
    seconds: float | None = None  # a trial's budget (or, in one process, a block's share of it)
    steps: int | None = None
    ppo: dict[str, Any] = field(default_factory=dict)
    num_envs: int | None = None
    sampling: Sampling | None = None  # py-spy on every block
    backend: str = "local"
    ray_address: str = "auto"
    ray_requeues: int = 2
    stop_on_failure: bool = False
    workload: Runner | None = None  # what runs in a trial when it is not the built-in trainer (a user's command)
    interleave: Interleave | None = None  # users' commands started once and run in turns
    repo: str | None = None  # --rev: the repository whose revisions the commands run in (worktrees)

    def runner(self) -> Runner:
        if self.workload is not None:
            return self.workload
        return SubprocessRunner(seconds=self.seconds, steps=self.steps, ppo=self.ppo, num_envs=self.num_envs)


def run(job: CompareJob, run_dir: Path, on_trial: Callable[[int, int, Variant, TrialResult], None] | None = None,
        on_nodes: Callable[[dict[str, dict]], None] | None = None, progress: bool = True,
        on_round: Callable[[int, dict], None] | None = None) -> CompareResult:
    """Run the job; `sps.json` in `run_dir` is up to date after every trial (every few seconds in one
    process) and at the end. Ctrl-C returns what finished, `interrupted` set. With `job.repo`, each
    command runs in a worktree of its revision (under `run_dir/worktrees`, removed at the end)."""
    if job.repo is not None:
        return _in_worktrees(job, run_dir, on_trial, on_nodes, progress, on_round)
    if job.backend == "ray":
        from perfkit.engine.cluster import run_compare_ray

        return run_compare_ray(job.variants, job.rule, job.runner(), run_dir, job.ray_address, on_trial,
                               job.stop_on_failure, job.ray_requeues, on_nodes=on_nodes)
    if job.interleave is not None:
        return run_interleaved(job.variants, job.rule, run_dir, job.interleave, job.seconds or 10.0, on_round,
                               sampling=job.sampling)
    if job.inprocess:
        return run_inprocess(job.variants, job.rule, run_dir, job.seconds, job.steps, job.ppo, job.num_envs,
                             progress=progress, sampling=job.sampling)
    runner = SamplingRunner(job.runner(), job.sampling) if job.sampling else job.runner()
    result = run_compare(job.variants, job.rule, runner, run_dir, on_trial, stop_on_failure=job.stop_on_failure)
    if job.sampling:
        result.sampler = job.sampling.to_dict()
        result.save(run_dir / "sps.json")
    return result


def _in_worktrees(job: CompareJob, run_dir: Path, on_trial, on_nodes, progress, on_round) -> CompareResult:
    """The job with every command's working folder in a worktree of its revision: the folder
    perfkit runs in, relative to the repository's top, inside that worktree."""
    import os
    from dataclasses import replace

    from perfkit.commands.bisection.git import Commit, Worktrees, git

    top = Path(git(job.repo, "rev-parse", "--show-toplevel").strip())
    here = Path(os.getcwd()).resolve()
    sub = here.relative_to(top.resolve()) if here.is_relative_to(top.resolve()) else Path()
    with Worktrees(top, run_dir / "worktrees") as trees:
        variants = []
        for v in job.variants:
            cmd = v.scenario
            path = trees.add(Commit(cmd.sha, cmd.rev))  # type: ignore[attr-defined]
            variants.append(Variant(v.label, replace(cmd, cwd=str((path / sub).resolve()))))  # type: ignore
        return run(replace(job, variants=variants, repo=None), run_dir, on_trial, on_nodes, progress, on_round)
