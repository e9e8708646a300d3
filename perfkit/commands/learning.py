"""`perfkit learn`: did a variant stop learning? Every variant trains the same agent-steps under
the same seeds (seed s of every variant sees the same env seeds and initial policy), one fresh
trial process per seed, several side by side where the cores allow. With a precision asked, the
first seeds' spread decides once how many seeds in all (Stein's two-stage rule), within
--max-seeds and --max-minutes; learn.json is rewritten after every finished seed, so nothing
measured is lost."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perfkit.core.machine import machine_info
from perfkit.core.scenario import Variant
from perfkit.core.stats import COUNTER_PREFIX
from perfkit.core.threads import available_cores
from perfkit.engine.seeds import TrialJob, run_parallel, seeds_at_once
from perfkit.records.learning import DEFAULT_METRICS, TRAINING_STATS, LearnResult, learn_seed, seed_of
from perfkit.records.trial import TrialResult

PREFLIGHT_STEPS = 5_000  # random-action env steps to see which metrics the env's episodes report
PREFLIGHT_SECONDS = 10.0


class LearnInputError(ValueError):
    """Input that cannot give a learning verdict (a metric the env does not report, a budget below
    one epoch): a usage error before any training."""


SEED_FIELD = "{seed}"  # in a command, replaced by the seed; PERFKIT_SEED carries it too
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # a command's thread pools, sized to its share of the cores


@dataclass(frozen=True)
class CommandLearning:
    """How `learn --cmd` reads a command: its step counter, the metrics, how long it may take to
    print its first count."""

    progress: str = "auto"
    metrics: tuple[str, ...] = ()  # NAME=REGEX or a known NAME, as compare --cmd's --metric
    start_timeout: float = 120.0


@dataclass
class LearnJob:
    variants: list[Variant]
    steps: int  # agent-steps per seed
    seeds: int  # seeds before the precision rule may stop (all of them without --precision)
    max_seeds: int
    metrics: list[str]
    lower_is_better: list[str] = field(default_factory=list)
    precision: float | None = None
    max_seconds: float | None = None
    parallel: int = 1
    ppo: dict[str, Any] = field(default_factory=dict)
    num_envs: int | None = None
    first_seed: int = 1
    paired: bool = True
    confidence: float = 0.95
    command: CommandLearning | None = None  # the variants are the user's commands (`learn --cmd`)
    nodes: dict[str, dict] | None = None  # --backend ray: the cluster's nodes ({id: info}), their slots run the seeds

    @property
    def cores_per_trial(self) -> int:
        return max(1, available_cores() // self.parallel)


def auto_parallel(workers: int = 0, gpus: int = 0) -> int:
    """Seeds side by side on this machine (`seeds.seeds_at_once` of its cores)."""
    return seeds_at_once(available_cores(), workers, gpus)


def gpus_of(variants: list[Variant]) -> int:
    """GPUs the trials would use: none unless a variant's device is cuda, or auto with CUDA present."""
    devices = {dict(v.scenario.values).get("device", "auto") for v in variants}
    if devices <= {"cpu"}:
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run(job: LearnJob, run_dir: Path, on_trial: Callable[[int, int, str, int, TrialResult], None] | None = None,
        clock: Callable[[], float] = time.monotonic, runner=None) -> LearnResult:
    """Train every variant under seeds first_seed, first_seed + 1, ... until the rule stops;
    `on_trial(finished, planned, variant, seed, trial)` after each. `runner` runs a batch of trial
    jobs (`seeds.run_parallel`, the default, or a cluster's `ClusterSeeds`)."""
    runner = runner or run_parallel
    result = LearnResult(
        variants=[v.label for v in job.variants], scenarios={v.label: v.scenario.to_dict() for v in job.variants},
        steps=job.steps, seeds=[], paired=job.paired, metrics=list(job.metrics),
        lower_is_better=list(job.lower_is_better), trials={v.label: [] for v in job.variants},
        confidence=job.confidence, precision=job.precision, parallel=job.parallel, machine=machine_info(),
        backend="ray" if job.nodes else "local", nodes=dict(job.nodes or {}),
        stopping={"rule": {"seeds": job.seeds, "max_seeds": job.max_seeds, "precision": job.precision,
                           "max_seconds": job.max_seconds}})
    path = run_dir / "learn.json"
    start = clock()
    per_batch = max(1, math.ceil(job.parallel / len(job.variants)))  # enough seeds to fill the cores
    reason, target, planned = "seeds", job.seeds, False

    def done(tj: TrialJob, tr: TrialResult) -> None:
        result.trials[tj.label].append(tr)
        result.seconds = clock() - start
        result.save(path)
        if on_trial is not None:
            on_trial(sum(len(ts) for ts in result.trials.values()), max(target, len(result.seeds)) * len(job.variants),
                     tj.label, learn_seed(int(tr.scenario.get("seed", 0))), tr)

    try:
        while True:
            n = len(result.seeds)
            if n >= target:
                if not job.precision or planned:
                    reason = "seeds" if not job.precision else "max seeds" if target >= job.max_seeds else "planned"
                    break
                # Stein's two-stage rule: the first seeds' spread decides, once, how many seeds in all
                target, planned = result.planned_seeds(job.max_seeds), True
                result.stopping["planned_seeds"] = target
                result.save(path)
                continue
            if planned and job.max_seconds is not None and clock() - start >= job.max_seconds:
                reason = "time"
                break
            batch = [job.first_seed + i for i in range(n, target if not planned else min(n + per_batch, target))]
            result.seeds.extend(batch)
            trial_jobs = [_trial_job(job, v, i, s, run_dir) for s in batch for i, v in enumerate(job.variants)]
            runner(trial_jobs, job.parallel, done)
    except KeyboardInterrupt as stop:
        seen = {id(t) for ts in result.trials.values() for t in ts}
        for tj, tr in getattr(stop, "results", []):
            if id(tr) not in seen:
                result.trials[tj.label].append(tr)
        result.interrupted, reason = True, "interrupted"
    result.stopping["reason"] = reason
    result.seconds = clock() - start
    result.save(path)
    return result


def _trial_job(job: LearnJob, v: Variant, index: int, seed: int, run_dir: Path) -> TrialJob:
    from dataclasses import replace

    if job.command is not None:
        return _command_job(job, v, index, seed, run_dir)
    scenario = replace(v.scenario, seed=seed_of(job.paired, index, seed))
    spec: dict[str, Any] = {"scenario": scenario.to_dict(), "seconds": None, "steps": job.steps,
                            "cores": job.cores_per_trial}
    if job.ppo:
        spec["ppo"] = job.ppo
    if job.num_envs:
        spec["num_envs"] = job.num_envs
    # the trial records its scenario's label; the variant's label (without the seed) files it
    return TrialJob(spec, run_dir / "trials" / v.slug / f"seed-{seed}.json", scenario.to_dict(), v.label)


def _command_job(job: LearnJob, v: Variant, index: int, seed: int, run_dir: Path) -> TrialJob:
    """Seed s of a command: `{seed}` in its text replaced by the seed it trains (s, or with
    `--pairing none` s + i * 100,000 for variant i), PERFKIT_SEED set to it; stopped at --steps.
    Seeds side by side share the cores: unless the user set them, OMP_NUM_THREADS and
    MKL_NUM_THREADS give each its share (torch and numpy size their thread pools by them), so
    two seeds on two cores do not run four threads that stall each other."""
    import os
    from dataclasses import replace

    trial_seed = seed_of(job.paired, index, seed)
    n = learn_seed(trial_seed)
    cmd = v.scenario
    env = {**dict(cmd.env), "PERFKIT_SEED": str(n)}
    ours = [var for var in THREAD_VARS if var not in os.environ and var not in env]
    for var in ours:
        env[var] = str(job.cores_per_trial)
    cmd = replace(cmd, text=cmd.text.replace(SEED_FIELD, str(n)),  # type: ignore[type-var]
                  env=tuple(sorted(env.items())))
    spec = {"command": cmd.to_dict(), "label": v.label, "steps": job.steps, "seed": trial_seed,
            "progress": job.command.progress, "metrics": list(job.command.metrics), "asked": list(job.metrics),
            "user_pythonpath": os.environ.get("PYTHONPATH"),  # perfkit's child gets its own; the command, the user's
            "start_timeout": job.command.start_timeout,
            "perfkit_threads": ours}  # set by perfkit: a cluster's slot sets them to its own cores
    return TrialJob(spec, run_dir / "trials" / v.slug / f"seed-{seed}.json", {**cmd.to_dict(), "seed": trial_seed},
                    v.label, module="perfkit.engine.command")


# -- before any training ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Preflight:
    """What a short random-action run of the env showed: agents per env, the numeric keys its
    episodes reported (None when no episode ended in the run), env steps taken."""

    agents: int
    metrics: list[str] | None
    env_steps: int


def preflight(variant: Variant, max_steps: int = PREFLIGHT_STEPS, max_seconds: float = PREFLIGHT_SECONDS,
              clock: Callable[[], float] = time.monotonic) -> Preflight:
    """Step the variant's env with random actions until an episode ends (or the limits), to learn
    its agents and its episode metrics without training."""
    from envs.registry import make_creator

    try:
        return _random_run(make_creator(dict(variant.scenario.values)), variant.scenario.seed, max_steps, max_seconds,
                           clock)
    except LearnInputError:
        raise
    except Exception as e:  # the user's env raising: a clear error before any training, not a traceback
        raise LearnInputError(f"{variant.label}: a short random-action run of the env failed: "
                              f"{type(e).__name__}: {e}") from None


def _random_run(creator, seed: int, max_steps: int, max_seconds: float, clock) -> Preflight:
    """Through the same vector env the trainer steps (one env, serial), so the episode infos seen
    here are the ones training will see, whatever kind of env the user gave."""
    from perfkit.train import vecenv as vec

    env = vec.make(creator, vec.VecPlan("serial", 0, 1), seed=seed)
    try:
        env.async_reset(seed)
        env.recv()
        rng = np.random.default_rng(seed)
        n, agents = env.single_action_space.n, env.driver_env.num_agents
        keys: set[str] = set()
        t0, steps = clock(), 0
        for steps in range(1, max_steps + 1):
            env.send(rng.integers(0, n, agents).astype(np.int32))
            infos = env.recv()[5]
            for info in infos:  # one dict per episode that ended
                keys.update(k for k, v in info.items() if isinstance(v, (int, float, np.number)))
            if infos or clock() - t0 > max_seconds:
                break
        metrics = sorted(k for k in keys if k not in TRAINING_STATS and not k.startswith(COUNTER_PREFIX)) if infos \
            else None
        return Preflight(agents, metrics, steps)
    finally:
        env.close()


def choose_metrics(asked: list[str], seen: list[str] | None) -> list[str]:
    """The asked metrics, each checked against what the env reported; with none asked, the first
    of heart.get, episode_return the env reports (episode_return when nothing was seen)."""
    if asked:
        if seen is not None:
            missing = [m for m in asked if m not in seen]
            if missing:
                raise LearnInputError(
                    f"--metric {missing[0]!r}: the env's episodes do not report it; they report: "
                    f"{', '.join(seen) or 'no numeric key'}")
        return list(asked)
    if seen:
        return [next((m for m in DEFAULT_METRICS if m in seen), seen[0])]
    return ["episode_return"]


def workers_of(variant: Variant) -> int:
    """Rollout worker processes a trial of this variant starts (0: serial stepping)."""
    from perfkit.train.vecenv import resolve_workers

    return resolve_workers(dict(variant.scenario.values)["workers"], available_cores(), 0)


def num_envs_of(variant: Variant, num_envs: int | None) -> int:
    """Envs a trial of this variant steps (the worker count rounds it up)."""
    from perfkit.engine.trial import NUM_ENVS
    from perfkit.train.vecenv import plan

    return plan(dict(variant.scenario.values)["workers"], num_envs or NUM_ENVS, available_cores()).num_envs


def num_steps_of(ppo: dict[str, Any] | None) -> int:
    from perfkit.train.config import PPOConfig

    return PPOConfig(**(ppo or {})).num_steps


def check_budget(steps: int, agents: int, num_envs: int, num_steps: int) -> None:
    """A seed must train at least one epoch (a rollout of num_steps on every env, then an update)."""
    epoch = num_envs * agents * num_steps
    if steps < epoch:
        raise LearnInputError(f"--steps {steps:,} is less than one epoch ({num_envs} envs x {agents} agents x "
                              f"{num_steps} steps = {epoch:,} agent-steps); give at least {epoch:,}, and many "
                              "epochs for learning to show")
