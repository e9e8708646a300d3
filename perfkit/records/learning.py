"""LearnResult: `perfkit learn`'s learn.json: every variant trained for the same agent-steps under
the same seeds, one trial per seed, and the learning statistics derived from them (a final value
per seed, IQM with its interval, the paired difference to the first variant, the probability of
improvement, steps to a threshold, a verdict per asked metric). Nothing derived is stored: it is
recomputed from the trials (perfkit/core/learning_stats.py), so `perfkit report` shows the same."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perfkit.core import learning_stats as ls
from perfkit.core.stats import COUNTER_PREFIX
from perfkit.records.store import Field, Record, read_dataclass
from perfkit.records.trial import TrialResult

# What a window's learning stats hold besides episode metrics: the PPO update's own numbers and
# the count of episodes; never offered as learning metrics.
TRAINING_STATS = frozenset({"pg_loss", "v_loss", "entropy", "approx_kl", "clipfrac", "episodes"})
CURVE_BINS = 20
# pufferlib seeds a trial's env i with its seed + i, so consecutive trial seeds would share all but
# one env seed: learn's seed s runs as trial seed s * SEED_SPACING (env seeds s*1000 .. s*1000 + 999,
# disjoint for fewer than 1,000 envs).
SEED_SPACING = 1000
UNPAIRED_OFFSET = 100_000  # without pairing, variant i trains learn seeds s + i * UNPAIRED_OFFSET


def seed_of(paired: bool, variant_index: int, seed: int) -> int:
    """The trial seed variant i trains for learn's seed s (the same for every variant when paired)."""
    return (seed if paired else seed + variant_index * UNPAIRED_OFFSET) * SEED_SPACING


def learn_seed(trial_seed: int) -> int:
    """Learn's seed s of a trial seed, for progress lines and tables (its variant offset kept)."""
    return trial_seed // SEED_SPACING
DEFAULT_METRICS = ("heart.get", "episode_return")  # the first the env reports is the default asked metric


def episode_metrics(trials: list[TrialResult]) -> list[str]:
    """Numeric keys that episodes reported in any window of these trials, sorted."""
    keys = set()
    for t in trials:
        for w in t.windows:
            lr = w.get("learning") or {}
            if lr.get("episodes"):
                keys.update(k for k in lr if k not in TRAINING_STATS and not k.startswith(COUNTER_PREFIX))
    return sorted(keys)


@dataclass(frozen=True)
class MetricComparison:
    """One metric of one variant against the reference (the first variant)."""

    metric: str
    higher_is_better: bool
    seeds: int  # seeds with a final value on both sides (paired) or on the smaller side
    reference: ls.Estimate  # IQM of the reference's final values
    value: ls.Estimate  # IQM of this variant's
    difference: ls.Estimate  # B - A: mean of per-seed differences (paired) or of means (Welch)
    improvement: ls.Estimate  # P(B better than A)
    verdict: str  # learning_stats' verdicts, or NOT_TESTED for a metric not asked for
    precision_met: bool | None  # with --precision: the difference's interval within ±P of A's value

    @property
    def relative(self) -> float:
        ref = self.reference.value
        return self.difference.value / abs(ref) if ref and not math.isnan(ref) else math.nan


@dataclass
class LearnResult(Record):
    kind = "learn"

    variants: list[str]
    scenarios: dict[str, dict[str, Any]]
    steps: int  # agent-steps per seed
    seeds: list[int]  # seed numbers of the reference variant, in the order they ran
    paired: bool  # seed s of every variant is seed s (else variant i trains seeds s + i * UNPAIRED_OFFSET)
    metrics: list[str]  # the asked metrics (a verdict each)
    lower_is_better: list[str]  # among them, those where lower is better
    trials: dict[str, list[TrialResult]]  # per variant, one per seed, in `seeds` order
    confidence: float = 0.95
    precision: float | None = None
    stopping: dict[str, Any] = field(default_factory=dict)  # rule, reason, minutes
    parallel: int = 1
    interrupted: bool = False
    seconds: float = 0.0
    machine: dict[str, Any] = field(default_factory=dict)
    backend: str = "local"  # where the seeds trained: this machine, or "ray" (a cluster's nodes)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # --backend ray: {node id: info, slots, lost}

    # -- derived -------------------------------------------------------------------------------
    def complete(self, tr: TrialResult) -> bool:
        """A seed counts when its trial finished its whole step budget (a user's command that ended
        by itself, exit status 0, finished its own: `perfkit.engine.command.run_to_steps`)."""
        return tr.status == "ok" and (tr.agent_steps >= self.steps or tr.exit_status == 0)

    def by_seed(self, label: str) -> list[TrialResult | None]:
        """Per seed (in `seeds` order) the variant's finished trial, None where it has none (still
        running, failed, interrupted): trials are filed as they finish, in any order."""
        i = self.variants.index(label)
        done = {int(t.scenario.get("seed", -1)): t for t in self.trials.get(label, []) if self.complete(t)}
        return [done.get(seed_of(self.paired, i, s)) for s in self.seeds]

    def finals(self, label: str, metric: str) -> list[float]:
        """Per seed (in `seeds` order): the final value, NaN for a seed that did not finish or whose
        episodes never reported the metric."""
        return [ls.final_value(ls.points(t.windows, metric), t.agent_steps) if t is not None else math.nan
                for t in self.by_seed(label)]

    def seeds_done(self, label: str) -> int:
        return sum(t is not None for t in self.by_seed(label))

    def available_metrics(self) -> list[str]:
        return episode_metrics([t for ts in self.trials.values() for t in ts])

    def shown_metrics(self) -> list[str]:
        """The asked metrics first, then every other metric the episodes reported."""
        rest = [m for m in self.available_metrics() if m not in self.metrics]
        return [*self.metrics, *rest]

    def compare(self, label: str, metric: str) -> MetricComparison:
        first = self.variants[0]
        higher = metric not in self.lower_is_better
        a, b = self.finals(first, metric), self.finals(label, metric)
        confidence = self.metric_confidence(metric)
        if self.paired:
            diff = ls.paired_difference(a, b, confidence, self.first_stage)
            seeds = sum(1 for x, y in zip(a, b, strict=True) if not (math.isnan(x) or math.isnan(y)))
        else:
            diff = ls.welch_difference(a, b, confidence, self.first_stage)
            seeds = min(sum(not math.isnan(x) for x in a), sum(not math.isnan(x) for x in b))
        ref = ls.iqm_interval(a, self.confidence)
        verdict = ls.verdict(diff, higher) if metric in self.metrics else ls.NOT_TESTED
        met = ls.precision_met(diff, ref.value, self.precision) if self.precision else None
        return MetricComparison(metric, higher, seeds, ref, ls.iqm_interval(b, self.confidence), diff,
                                ls.probability_of_improvement(a, b, self.confidence, higher), verdict, met)

    @property
    def first_stage(self) -> int | None:
        """With --precision, the seeds run before Stein's rule planned the rest."""
        return int(self.stopping.get("rule", {}).get("seeds") or 0) or None if self.precision else None

    def metric_confidence(self, metric: str) -> float:
        """Bonferroni over the verdicts asked for (each asked metric of each variant against the
        first), so together they keep the error rate of `confidence`; other metrics at `confidence`."""
        n = max(1, len(self.metrics) * (len(self.variants) - 1))
        return 1 - (1 - self.confidence) / n if metric in self.metrics else self.confidence

    def planned_seeds(self, max_seeds: int) -> int:
        """Stein's rule over every variant and asked metric: the seeds that make every difference's
        interval about ±precision of the reference's value (at most max_seeds)."""
        first = self.variants[0]
        need = len(self.seeds)
        for m in self.metrics:
            a = self.finals(first, m)
            ref = ls.iqm_interval(a).value
            for v in self.variants[1:]:
                need = max(need, ls.stein_seeds(a, self.finals(v, m), ref, self.precision, max_seeds,
                                                self.metric_confidence(m)))
        return need

    def comparisons(self, metric: str) -> dict[str, MetricComparison]:
        return {v: self.compare(v, metric) for v in self.variants[1:]}

    def precision_reached(self) -> bool:
        """Every asked metric's difference, for every variant, within ±precision of the reference."""
        return bool(self.precision) and all(
            self.compare(v, m).precision_met for v in self.variants[1:] for m in self.metrics)

    def curve_edges(self) -> np.ndarray:
        return np.linspace(0, self.steps, CURVE_BINS + 1)

    def curves(self, label: str, metric: str) -> list[np.ndarray]:
        """Per finished seed, the metric in each of CURVE_BINS agent-step bins."""
        edges = self.curve_edges()
        return [ls.curve(ls.points(t.windows, metric), edges) for t in self.by_seed(label) if t is not None]

    def start_and_end(self, metric: str) -> tuple[float, float]:
        """Where the reference started (its first bin with episodes, IQM across seeds) and ended
        (its final IQM)."""
        curves = self.curves(self.variants[0], metric)
        start = _nan_iqm([next((v for v in c if not math.isnan(v)), math.nan) for c in curves])
        return start, ls.iqm_interval(self.finals(self.variants[0], metric)).value

    def improved(self, metric: str) -> bool:
        start, end = self.start_and_end(metric)
        if math.isnan(start) or math.isnan(end):
            return False
        return end < start if metric in self.lower_is_better else end > start

    def threshold(self, metric: str) -> float:
        """Sample efficiency's bar: half way from where the reference started (its first bin's
        IQM across seeds) to where it ended (its final IQM)."""
        start, end = self.start_and_end(metric)
        return (start + end) / 2 if not (math.isnan(start) or math.isnan(end)) else math.nan

    def steps_to_threshold(self, label: str, metric: str) -> tuple[ls.Estimate, int, int]:
        """(median agent-steps to reach the threshold across seeds with its bootstrap interval;
        inf where more than half never reached it), seeds that reached it, seeds."""
        thr, edges = self.threshold(metric), self.curve_edges()
        higher = metric not in self.lower_is_better
        if math.isnan(thr):
            return ls.Estimate(math.nan), 0, 0
        curves = [c for c in self.curves(label, metric) if not np.all(np.isnan(c))]  # a seed without data is no "never"
        steps = [ls.steps_to(c, edges, thr, higher) for c in curves]
        return ls.median_interval(steps, self.confidence), sum(math.isfinite(s) for s in steps), len(steps)

    # -- JSON ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        d = {k: v for k, v in asdict(self).items() if k != "trials"}
        d["trials"] = {v: [t.to_dict() for t in ts] for v, ts in self.trials.items()}
        return d

    @classmethod
    def read(cls, f: Field) -> LearnResult:
        return read_dataclass(cls, f, {
            "variants": _read_variants,
            "scenarios": lambda x: x.mapping(Field.obj),
            "steps": lambda x: x.integer(1),
            "seeds": lambda x: x.sequence(Field.integer),
            "paired": Field.boolean,
            "metrics": lambda x: x.sequence(Field.string),
            "lower_is_better": lambda x: x.sequence(Field.string),
            "trials": lambda x: x.mapping(lambda ts: ts.sequence(TrialResult.read)),
            "confidence": lambda x: x.number(0.5, 0.9999),
            "precision": lambda x: x.optional(lambda y: y.number(0.0001, 10)),
            "stopping": _read_stopping,
            "parallel": lambda x: x.integer(1),
            "interrupted": Field.boolean,
            "seconds": lambda x: x.number(0),
            "machine": Field.obj,
            "backend": lambda x: x.choice("local", "ray"),
            "nodes": lambda x: x.mapping(Field.obj),
        })


def _read_variants(f: Field) -> list[str]:
    labels = f.sequence(Field.string)
    if not labels:
        f.fail("at least one variant")
    return labels


def _read_stopping(f: Field) -> dict[str, Any]:
    rule = f.get("rule", {})
    rule.obj()
    rule.get("seeds").optional(Field.integer)
    rule.get("max_seeds").optional(Field.integer)
    f.get("planned_seeds").optional(Field.integer)
    f.get("reason", "").string()
    return f.obj()


def _nan_iqm(xs: list[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return float(ls.iqm(np.asarray(xs))) if xs else math.nan
