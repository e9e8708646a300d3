"""Statistics for learning across seeds: a seed's final value and curve from its windows, the
interquartile mean (IQM) across seeds with a bootstrap interval, the paired difference B - A with
a t-interval, the probability of improvement, steps to a threshold, and a verdict.

The seed is the unit (Henderson et al. 2018; Colas et al. 2018): every number below is computed
from one value per seed. The IQM with a percentile bootstrap interval, and the probability
of improvement, follow rliable (Agarwal et al. 2021). The verdict rests on the paired difference's
t-interval, not on a bootstrap: with 3-10 seeds a percentile bootstrap of a mean is too narrow
(it covers about 85% at 5 seeds), the t-interval widens honestly. Pure functions; seeded
resampling, so the same seeds always give the same numbers.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.stats

LEARNS_WORSE, LEARNS_BETTER, NO_DIFFERENCE, TOO_FEW_SEEDS = (
    "learns worse", "learns better", "no significant difference", "too few seeds")
NOT_TESTED = "not tested"  # a metric shown with its numbers but no verdict (only asked metrics get one)
MIN_SEEDS = 2
FINAL_FRACTION = 0.2  # a seed's final value: its episodes in the last 20% of its agent-steps
RESAMPLES = 2000
NAN = float("nan")


@dataclass(frozen=True)
class Estimate:
    """A number with its interval (NaN bounds when there is too little to say)."""

    value: float
    low: float = NAN
    high: float = NAN

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


# -- one seed: its windows -> points (agent-steps at the window's end, episodes, metric) ---------

def points(windows: list[dict[str, Any]], metric: str) -> list[tuple[int, float, float]]:
    """(cumulative agent-steps at the end of the window, episodes that ended in it, the metric's
    mean over them) for every window whose episodes reported the metric."""
    out, steps = [], 0
    for w in windows:
        steps += int(w.get("agent_steps", 0))
        lr = w.get("learning") or {}
        value, episodes = lr.get(metric), float(lr.get("episodes", 0) or 0)
        if value is not None and episodes > 0 and math.isfinite(value):
            out.append((steps, episodes, float(value)))
    return out


def final_value(pts: list[tuple[int, float, float]], total_steps: int, fraction: float = FINAL_FRACTION) -> float:
    """The episode-weighted mean of the metric over the windows that end in the last `fraction` of
    the seed's agent-steps; NaN when no episode reported it there (an early value would pass for a
    final one)."""
    late = [p for p in pts if p[0] > (1 - fraction) * total_steps]
    if not late:
        return NAN
    weight = sum(e for _, e, _ in late)
    return sum(e * v for _, e, v in late) / weight


def curve(pts: list[tuple[int, float, float]], edges: np.ndarray) -> np.ndarray:
    """The metric's episode-weighted mean in each agent-step bin (edges[i], edges[i+1]]; NaN where
    no episode ended."""
    out = np.full(len(edges) - 1, NAN)
    pts = [(min(s, edges[-1]), e, v) for s, e, v in pts]  # the budget's last epoch may overshoot it: last bin
    for i in range(len(edges) - 1):
        inside = [(e, v) for s, e, v in pts if edges[i] < s <= edges[i + 1]]
        if inside:
            out[i] = sum(e * v for e, v in inside) / sum(e for e, _ in inside)
    return out


def steps_to(values: np.ndarray, edges: np.ndarray, threshold: float, higher_is_better: bool = True) -> float:
    """Agent-steps at the end of the first bin whose value reaches `threshold`; inf if none did."""
    for i, v in enumerate(values):
        if not math.isnan(v) and (v >= threshold if higher_is_better else v <= threshold):
            return float(edges[i + 1])
    return math.inf


# -- across seeds --------------------------------------------------------------------------------

def iqm(x, axis: int = -1) -> float:
    """Interquartile mean: the mean of the middle half (rliable's aggregate; robust to a seed that
    failed outright, more efficient than the median)."""
    return scipy.stats.trim_mean(x, 0.25, axis=axis)


def _bootstrap(data: tuple, statistic, confidence: float, seed: int, paired: bool = False) -> tuple[float, float]:
    """scipy's percentile bootstrap; (NaN, NaN) when the resamples are degenerate (all equal)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DegenerateDataWarning: the interval is then NaN, and said so
        res = scipy.stats.bootstrap(data, statistic, confidence_level=confidence, n_resamples=RESAMPLES,
                                    method="percentile", paired=paired, vectorized=True,
                                    random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def iqm_interval(x, confidence: float = 0.95, seed: int = 0) -> Estimate:
    """IQM across seeds with a percentile-bootstrap interval (NaN bounds below two seeds)."""
    x = np.asarray([v for v in x if not math.isnan(v)], float)
    if len(x) == 0:
        return Estimate(NAN)
    center = float(iqm(x))
    if len(x) < MIN_SEEDS:
        return Estimate(center)
    if np.all(x == x[0]):
        return Estimate(center, center, center)
    lo, hi = _bootstrap((x,), iqm, confidence, seed)
    return Estimate(center, lo, hi)


def median_interval(x, confidence: float = 0.95, seed: int = 0) -> Estimate:
    """Median with a percentile-bootstrap interval; values may be inf (a seed that never got there):
    the median or a bound is inf when more than half the (resampled) seeds are."""
    x = np.asarray([v for v in x if not math.isnan(v)], float)
    if len(x) == 0:
        return Estimate(NAN)
    center = float(np.median(x))
    if len(x) < MIN_SEEDS:
        return Estimate(center)
    if np.all(x == x[0]):
        return Estimate(center, center, center)
    finite = x[np.isfinite(x)]
    if len(finite) == 0:
        return Estimate(math.inf, math.inf, math.inf)
    top = float(finite.max())
    never = top + abs(top) + 1  # stands in for inf: above every finite value
    lo, hi = _bootstrap((np.where(np.isfinite(x), x, never),), np.median, confidence, seed)
    # a resampled median above the largest finite value includes a seed that never got there
    return Estimate(center, math.inf if lo > top else lo, math.inf if hi > top else hi)


def paired_difference(a, b, confidence: float = 0.95, first_stage: int | None = None) -> Estimate:
    """Mean of the per-seed differences b_s - a_s with a paired t-interval (seed s of both variants
    saw the same env seeds and initial policy). Seeds missing from either side are left out.

    `first_stage`: the seeds were added by Stein's two-stage rule (`stein_seeds`) after the first
    `first_stage` of them; the interval is then the wider of the ordinary one and Stein's (the
    first stage's spread over all the seeds), so a first stage that happened to agree closely
    cannot make the final interval too narrow."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if not (math.isnan(x) or math.isnan(y))]
    d = np.asarray([y - x for x, y in pairs], float)
    if len(d) == 0:
        return Estimate(NAN)
    center = float(d.mean())
    if len(d) < MIN_SEEDS:
        return Estimate(center)
    half = max(_t(confidence, len(d) - 1) * float(d.std(ddof=1)) / math.sqrt(len(d)),
               _stein_half(a, b, first_stage, len(d), confidence))
    return Estimate(center, center - half, center + half)


def _t(confidence: float, df: float) -> float:
    return float(scipy.stats.t.ppf(0.5 + confidence / 2, df))


def _stein_half(a, b, first_stage: int | None, n: int, confidence: float) -> float:
    """Stein's half-width: the first stage's spread of b_i - a_i over all n seeds (0 without a first stage)."""
    first = _first_stage(a, b, first_stage) if first_stage else np.empty(0)
    return _t(confidence, len(first) - 1) * float(first.std(ddof=1)) / math.sqrt(n) if len(first) >= MIN_SEEDS else 0.0


def _first_stage(a, b, k: int) -> np.ndarray:
    return np.asarray([y - x for x, y in zip(a[:k], b[:k], strict=True) if not (math.isnan(x) or math.isnan(y))],
                      float)


def stein_seeds(a, b, reference: float, precision: float, max_seeds: int, confidence: float = 0.95) -> int:
    """Stein's two-stage rule (Stein 1945): from the spread of the first seeds' differences, the
    seeds whose interval would be within ±precision of the reference's value; at least the seeds
    already run, at most max_seeds. Decided once, from the first stage alone: adding seeds one at
    a time until the interval looks narrow stops when the spread came out small by chance, and
    then calls twins different more often (7% instead of 5% in bench/learning_rule_sim.py)."""
    d = _first_stage(a, b, len(a))
    if len(d) < MIN_SEEDS:
        return max_seeds
    if not reference or math.isnan(reference):
        return max_seeds
    need = (_t(confidence, len(d) - 1) * float(d.std(ddof=1)) / (precision * abs(reference))) ** 2
    return int(min(max_seeds, max(len(a), math.ceil(need))))


def welch_difference(a, b, confidence: float = 0.95, first_stage: int | None = None) -> Estimate:
    """Mean(b) - mean(a) with Welch's t-interval, for seeds that are not paired (different seed
    sets). `first_stage`: as in `paired_difference`, never narrower than the first stage's spread
    (of b_i - a_i by position, the spread the seeds were planned from) allows."""
    a0, b0 = list(a), list(b)
    a = np.asarray([v for v in a if not math.isnan(v)], float)
    b = np.asarray([v for v in b if not math.isnan(v)], float)
    if len(a) == 0 or len(b) == 0:
        return Estimate(NAN)
    center = float(b.mean() - a.mean())
    if len(a) < MIN_SEEDS or len(b) < MIN_SEEDS:
        return Estimate(center)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        return Estimate(center, center, center)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = max(_t(confidence, df) * math.sqrt(va + vb), _stein_half(a0, b0, first_stage, min(len(a), len(b)), confidence))
    return Estimate(center, center - half, center + half)


def _poi(a, b, axis=-1):
    """P(b > a) over every pair of seeds (ties count half): the Mann-Whitney U over n_a * n_b."""
    a, b = np.asarray(a), np.asarray(b)
    gt = (b[..., None, :] > a[..., :, None]).mean(axis=(-2, -1))
    eq = (b[..., None, :] == a[..., :, None]).mean(axis=(-2, -1))
    return gt + 0.5 * eq


def probability_of_improvement(a, b, confidence: float = 0.95, higher_is_better: bool = True,
                               seed: int = 0) -> Estimate:
    """P(a seed of B ends better than a seed of A), with a bootstrap interval resampling each
    variant's seeds (rliable's probability of improvement)."""
    a = np.asarray([v for v in a if not math.isnan(v)], float)
    b = np.asarray([v for v in b if not math.isnan(v)], float)
    if len(a) == 0 or len(b) == 0:
        return Estimate(NAN)
    if not higher_is_better:
        a, b = -a, -b
    center = float(_poi(a, b))
    if len(a) < MIN_SEEDS or len(b) < MIN_SEEDS:
        return Estimate(center)
    lo, hi = _bootstrap((a, b), _poi, confidence, seed)
    return Estimate(center, lo, hi)


def verdict(diff: Estimate, higher_is_better: bool = True) -> str:
    """From the interval of B - A: below zero is worse for a metric where higher is better."""
    if math.isnan(diff.low):
        return TOO_FEW_SEEDS
    if diff.high < 0:
        return LEARNS_WORSE if higher_is_better else LEARNS_BETTER
    if diff.low > 0:
        return LEARNS_BETTER if higher_is_better else LEARNS_WORSE
    return NO_DIFFERENCE


def precision_met(diff: Estimate, reference: float, precision: float) -> bool:
    """The difference's interval is within ±precision of the reference's value (relative); never
    met when the reference is zero (nothing to be relative to) or the interval is undefined."""
    if math.isnan(diff.low) or not reference or math.isnan(reference):
        return False
    return diff.half_width <= precision * abs(reference)
