"""Several variants' training loops in ONE process, advanced an epoch at a time in rotating order.

Each variant has its own env, policy, optimizer and buffers (a `Trainer`); a *round* runs one
epoch of every variant, rotating the order (A B C, B C A, C A B, ...) so no variant always follows
another. Blocks next to each other see the same machine state, so their ratio is far steadier than
the ratio of two processes started seconds apart: this is what makes a 2-5% difference visible on a
shared machine in a minute or two. Only axes that do not change the process can share one (see
`perfkit.core.scenario.PROCESS_AXES`); `compare` runs the others as fresh processes.

Statistics: per round, the log-ratio of each variant's epoch SPS to the first variant's; the first
`warmup_rounds` rounds are left out (lazy imports, caches); consecutive rounds are averaged in
batches of `len(variants)` rounds, one full rotation each, so an order effect cancels inside a batch
and the interval (`stats.rounds_interval`: a trimmed mean, so a neighbour's stall of one side weighs
no more than any round) is taken over nearly independent batch means.

Rebuilds (`rebuild_seconds`, what compare sets): every so often the trainers are built afresh in
the next rotation of the build order, each going on from the one it replaces (`Trainer.continue_from`:
the same weights and counts in new tensors). Two trainers of the same code can differ by a fixed
~0.2% for as long as they live, with where they were built; rounds are grouped by build order and
the interval averages the orders (`stats.compare_strata`), so such an offset cancels.

`python -m perfkit.engine.session SPEC.json OUT.json` runs a session in its own process (what
`compare --mode inprocess` does); OUT.json is rewritten atomically every few rounds and at the end,
also on Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from perfkit.core import stats
from perfkit.core.files import atomic_write_text
from perfkit.core.machine import machine_info
from perfkit.core.markers import call_marked, marker_name
from perfkit.core.scenario import Scenario, label_slug
from perfkit.core.sentinel import Sentinel
from perfkit.core.stats import block_comparisons
from perfkit.engine.rounds import ROUNDS, Rounds, StopRule
from perfkit.records.trial import TrialResult

WARMUP_ROUNDS = 2
SAVE_EVERY_SECONDS = 10.0  # how often the session record on disk is brought up to date
# compare rebuilds its trainers this often, in the next build order (see run_rounds): two trainers
# of the same code built one after the other can differ by a fixed ~0.2% for their whole life
# (docs/benchmarks.md, "A quiet day"), more than a precise compare's interval holds
REBUILD_SECONDS = 15.0


@dataclass
class SessionSpec:
    """What `python -m perfkit.engine.session` runs: the variants, the PPO config and when to stop."""

    variants: list[dict]  # {"label": ..., "scenario": Scenario.to_dict()}
    seconds: float | None = None  # wall-clock budget for the whole session
    agent_steps: int | None = None  # or: agent-steps per variant after warm-up
    precision: float | None = None
    min_rounds: int = stats.MIN_ROUNDS  # after warm-up, in batch means
    min_seconds: float = 0.0  # the precision may stop the session only after this long
    warmup_rounds: int = WARMUP_ROUNDS
    ppo: dict[str, Any] = field(default_factory=dict)
    num_envs: int | None = None
    progress: bool = False
    batch_rounds: int | None = None  # rounds per batch mean (default: one rotation, len(variants))
    rebuild_seconds: float | None = None  # rebuild every trainer, in the next build order, this often


@dataclass
class Session:
    labels: list[str]
    # per round: {"round", "order", "t" (seconds since the rounds began, at its end), and per label:
    # "sps" (agent-steps/s), "others_cores", "agent_steps", "seconds", "phases" (seconds per phase)}
    blocks: list[dict]
    trials: dict[str, TrialResult]
    warmup_rounds: int
    stop_reason: str = "rounds"
    interrupted: bool = False
    errors: dict[str, str] = field(default_factory=dict)  # label -> why that variant failed
    batch_rounds: int | None = None

    def precision_reached(self, precision: float, min_batches: int) -> bool:
        comps = block_comparisons(self.blocks, self.labels, self.warmup_rounds, self.batch_rounds).values()
        return stats.precision_reached([c for _, c in comps], precision, min((n for n, _ in comps), default=0),
                                       min_batches)

    def to_dict(self) -> dict:
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)  # lets a sampler's own CPU be told apart
        return {"labels": self.labels, "blocks": self.blocks, "warmup_rounds": self.warmup_rounds,
                "stop_reason": self.stop_reason, "interrupted": self.interrupted, "errors": self.errors,
                "trials": {k: t.to_dict() for k, t in self.trials.items()},
                "cpu_seconds": usage.ru_utime + usage.ru_stime}


def run_session(spec: SessionSpec, out_dir: Path | None = None, on_round: Callable[[int, dict], None] | None = None,
                save: Callable[[Session], None] | None = None, clock: Callable[[], float] = time.perf_counter
                ) -> Session:
    """Build one Trainer per variant, then run rounds until the spec's rule stops them."""
    from perfkit.engine.trial import apply_thread_policy, resolve_device
    from perfkit.train.ppo import PPOConfig

    scenarios = [Scenario.from_dict(v["scenario"]) for v in spec.variants]
    labels = [v["label"] for v in spec.variants]
    first = dict(scenarios[0].values)
    threads = apply_thread_policy(first)
    device = resolve_device(first["device"])
    cfg = PPOConfig(**spec.ppo)
    trainers, meta = {}, {}
    for label, sc in zip(labels, scenarios, strict=True):
        trainers[label], meta[label] = _build(label, sc, spec, cfg, device, out_dir)
    machine = machine_info()

    def record(session: Session) -> Session:
        return _with_trials(session, trainers, meta, device, cfg, threads, machine)

    def rebuild(order: list[str]) -> None:
        """Fresh trainers in `order`, each going on from the one it replaces (its weights and counts)."""
        for label in order:
            old = trainers[label]
            trainers[label], _ = _build(label, meta[label][0], spec, cfg, device, out_dir)
            trainers[label].continue_from(old)
            old.vecenv.close()

    try:
        session = run_rounds(trainers, spec, on_round, (lambda s: save(record(s))) if save else None, clock,
                             cfg.num_steps, rebuild=rebuild if spec.rebuild_seconds else None)
    finally:
        for t in trainers.values():
            t.vecenv.close()
    return record(session)


def _build(label: str, sc: Scenario, spec: SessionSpec, cfg, device, out_dir: Path | None):
    from envs.registry import make_creator
    from perfkit.engine.trial import NUM_ENVS
    from perfkit.train import vecenv as vec
    from perfkit.train.build import build_trainer

    values = dict(sc.values)
    creator = make_creator(values)
    plan = vec.plan("serial", spec.num_envs or NUM_ENVS)
    env = vec.make(creator, plan, seed=sc.seed)
    driver = env.driver_env
    env_cfg = driver.get_env_config() if hasattr(driver, "get_env_config") else None
    ckpt_dir = str(out_dir / f"{label_slug(label)}-checkpoints") if out_dir else None
    return build_trainer(env, values, creator, cfg, device, sc.seed, ckpt_dir), (sc, plan, driver.num_agents, env_cfg)


class EpochTrainer(Protocol):
    """What a session rotates through: `perfkit.train.ppo.Trainer`, or a fake in a test."""

    agent_steps: int
    num_agents: int

    def run_epoch(self) -> Any: ...  # a Window: .sps, .agent_steps, .seconds, .phases


def run_rounds(trainers: dict[str, EpochTrainer], spec: SessionSpec, on_round=None, save=None,
               clock: Callable[[], float] = time.perf_counter, steps_per_epoch: int = 0,
               rebuild: Callable[[list[str]], None] | None = None) -> Session:
    """Rounds of one epoch per trainer, in rotating order, until the spec's rule stops them. A
    trainer that raises is recorded as failed and leaves the rotation; the others go on (with fewer
    than two left nothing can be compared, and the session stops). Ctrl-C ends it, interrupted.

    With `rebuild` (and `spec.rebuild_seconds`), every `rebuild_seconds` the trainers are built
    afresh, `rebuild(order)`, in the next rotation of the labels (build j: labels rotated by j, so
    over len(labels) builds each variant is built in each place once). Each round then carries its
    "build" and its "build_order" (j mod len(labels)); the first `warmup_rounds` rounds of every
    build are warm-up, and the interval is taken per build order and averaged over them
    (`stats.block_comparisons`), so an offset that comes with the place a trainer was built in
    cancels instead of biasing the ratio. The precision may stop the rounds only once every
    build order has two batch means past its warm-up."""
    labels = list(trainers)
    session = Session(labels, [], {}, spec.warmup_rounds, batch_rounds=spec.batch_rounds)
    active = list(labels)
    # the precision is asked only after warm-up plus `min_rounds` batch means (a full rotation each,
    # or `batch_rounds`)
    rule = StopRule(rounds=None, precision=spec.precision, max_seconds=spec.seconds, min_seconds=spec.min_seconds)
    sentinel = Sentinel()
    sentinel.start()
    min_batches = max(spec.min_rounds, stats.MIN_TRIMMED_ROUNDS)  # the interval is a trimmed mean
    rounds = Rounds(rule, clock, min_rounds=spec.warmup_rounds + min_batches * (spec.batch_rounds or len(labels)))
    last_save = clock()
    builds = _Builds(labels, spec, rebuild, clock)
    try:
        while rounds.more():
            block = _one_round(rounds.done, rounds.order(active), trainers, sentinel, session, active,
                               warmup=builds.warmup(rounds.done))
            block["t"] = round(rounds.elapsed, 3)  # seconds since the rounds began, at this round's end
            builds.tag(block)
            session.blocks.append(block)
            if on_round is not None:
                on_round(block["round"], block)
            if not active or (len(active) < 2 and len(labels) > 1):
                rounds.stop("a variant failed" if active else "every variant failed")
            elif rounds.finished(lambda: builds.every_order_steady()
                                 and session.precision_reached(spec.precision, min_batches)):
                pass
            elif spec.agent_steps is not None and all(
                    t.agent_steps >= spec.agent_steps + spec.warmup_rounds * steps_per_epoch * t.num_agents
                    for label, t in trainers.items() if label in active):
                rounds.stop(ROUNDS)  # the budget of agent-steps is spent
            elif save is not None and clock() - last_save >= SAVE_EVERY_SECONDS:
                save(session)
                last_save = clock()
            if not rounds.reason and active:
                builds.maybe_rebuild(rounds.done, session, active)
        session.stop_reason = rounds.reason or ROUNDS
    except KeyboardInterrupt:
        session.interrupted, session.stop_reason = True, "interrupted"
    return session


class _Builds:
    """When the trainers are rebuilt (`run_rounds`), which build a round belongs to and whether it
    is one of that build's warm-up rounds."""

    def __init__(self, labels: list[str], spec: SessionSpec, rebuild, clock):
        self.labels, self.spec, self.rebuild, self.clock = labels, spec, rebuild, clock
        self.on = rebuild is not None and bool(spec.rebuild_seconds)
        self.build, self.first_round, self.started = 0, 0, clock()
        self.steady: dict[int, int] = {}  # build order -> its rounds past warm-up

    def warmup(self, r: int) -> bool:
        return r - self.first_round < self.spec.warmup_rounds

    def tag(self, block: dict) -> None:
        if self.on:
            block["build"], block["build_order"] = self.build, self.build % len(self.labels)
            if not self.warmup(block["round"]):
                order = self.build % len(self.labels)
                self.steady[order] = self.steady.get(order, 0) + 1

    def every_order_steady(self) -> bool:
        """Has every build order two batch means past its warm-up (the least an interval takes)?"""
        need = 2 * (self.spec.batch_rounds or len(self.labels))
        return not self.on or (len(self.steady) >= len(self.labels) and min(self.steady.values()) >= need)

    def maybe_rebuild(self, rounds_done: int, session: Session, active: list[str]) -> None:
        if not self.on or self.clock() - self.started < self.spec.rebuild_seconds:
            return
        self.build += 1
        k = self.build % len(self.labels)
        order = [lb for lb in self.labels[k:] + self.labels[:k] if lb in active]
        try:
            self.rebuild(order)
        except Exception as e:  # noqa: BLE001 -- a rebuild that fails ends the rounds as a failed variant would
            from perfkit.train.ppo import describe_error

            for label in list(active):
                session.errors.setdefault(label, f"rebuilding the trainers failed: {describe_error(e)}")
            active.clear()
        self.first_round, self.started = rounds_done, self.clock()


def _one_round(r: int, order: list[str], trainers: dict[str, EpochTrainer], sentinel: Sentinel, session: Session,
               active: list[str], warmup: bool) -> dict:
    """One epoch of each trainer in `order`: its SPS, steps, seconds, phases and what other
    processes took during it. A trainer that raises leaves `active` with its error recorded."""
    block: dict[str, Any] = {"round": r, "order": order, "sps": {}, "others_cores": {}, "agent_steps": {},
                             "seconds": {}, "phases": {}}
    for label in order:
        try:
            # under a frame named after the variant and round, so one profile of this process
            # splits by block (perfkit/core/markers.py)
            w = call_marked(marker_name(label, r, warmup=warmup), trainers[label].run_epoch)
        except Exception as e:  # noqa: BLE001 -- this variant failed: record it, the others go on
            from perfkit.train.ppo import describe_error

            # an error that is already a sentence for the user (a command that exited) stays one
            session.errors[label] = str(e) if getattr(e, "plain", False) else describe_error(e)
            active.remove(label)
            w = None
        use = sentinel.mark()  # since the previous epoch's end: this epoch, outside its window
        block["sps"][label] = w.sps if w is not None else 0.0
        if w is not None:
            block["agent_steps"][label], block["seconds"][label] = w.agent_steps, w.seconds
            block["phases"][label] = w.phases
        block["others_cores"][label] = use.others_cores if use is not None else None
    return block


def _with_trials(session: Session, trainers, meta, device, cfg, threads, machine) -> Session:
    from perfkit.engine.trial import trial_result

    for label, t in trainers.items():
        sc, plan, agents, env_cfg = meta[label]
        tr = trial_result(sc, t.outcome(session.interrupted), plan, agents, env_cfg, device, cfg,
                          warmup=session.warmup_rounds, machine=machine)
        tr.threads = threads
        tr.error = session.errors.get(label)
        session.trials[label] = tr
    return session


def main(argv: list[str] | None = None) -> int:
    from perfkit.engine.trial import child_args

    spec_path, out = child_args("perfkit.engine.session", argv)
    spec = SessionSpec(**json.loads(spec_path.read_text()))

    def save(s: Session) -> None:
        atomic_write_text(out, json.dumps({"kind": "session", **s.to_dict()}))

    last = [0.0]

    def on_round(r: int, block: dict) -> None:  # a line every few seconds, not every epoch
        if spec.progress and time.monotonic() - last[0] >= 5.0:
            last[0] = time.monotonic()
            cells = ", ".join(f"{k} {v:,.0f}" for k, v in block["sps"].items())
            print(f"round {r + 1}: {cells} agent-steps/s", file=sys.stderr, flush=True)

    try:
        session = run_session(spec, out.parent, on_round, save)
    except Exception as e:  # noqa: BLE001 -- building a variant failed: say which, as a failed session
        from perfkit.train.ppo import describe_error

        print(f"session failed: {describe_error(e)}", file=sys.stderr)
        return 1
    save(session)
    return 130 if session.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
