"""Statistics for SPS samples: summaries, a ratio with its confidence interval, and a verdict;
and the one rule for averaging learning stats.

Pure functions over lists of floats; no I/O, no rendering; the same samples always give the same
interval and verdict.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.stats

UNSTABLE_CV = 0.10  # pyperf's rule of thumb: std dev >= 10% of the mean is an unstable measurement
MIN_TRIALS = 2  # a t-interval needs two; with two it is wide, as it should be
# Fixed-precision stopping looks at no fewer rounds: a run that stops early does so because its
# spread came out small by chance, so its interval is too narrow. Simulated (bench/stop_rule_sim.py,
# 3% outliers, precision 0.02), the worst false-verdict rate over per-round sd 0.01-0.08 is 8.6%
# with 3 rounds, 6.7% with 5, 6.4% with 6, 6.0% with 8 (5% without stopping).
MIN_ROUNDS = 6

FASTER, SLOWER, SAME, TOO_FEW = "faster", "slower", "no significant difference", "too few trials"


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    mean: float
    stdev: float
    min: float
    max: float
    geomean: float = float("nan")  # the headline: ratios of geometric means are what the verdicts use

    @property
    def cv(self) -> float:
        return self.stdev / self.mean if self.mean else 0.0

    @property
    def unstable(self) -> bool:
        return self.n >= 2 and self.cv >= UNSTABLE_CV


def summarize(xs: list[float]) -> Summary:
    if not xs:
        raise ValueError("cannot summarize an empty sample")
    return Summary(
        n=len(xs),
        median=float(statistics.median(xs)),
        mean=float(statistics.fmean(xs)),
        stdev=float(statistics.stdev(xs)) if len(xs) > 1 else 0.0,
        min=float(min(xs)),
        max=float(max(xs)),
        geomean=float(np.exp(np.mean(np.log(np.asarray(xs, float))))) if min(xs) > 0 else 0.0,
    )


@dataclass(frozen=True)
class Comparison:
    """`other` relative to `base`: ratio of geometric means (>1: other is faster) and its CI."""

    ratio: float
    ci_low: float
    ci_high: float
    confidence: float
    verdict: str


def compare_samples(base: list[float], other: list[float], confidence: float = 0.95,
                    paired: bool | None = None) -> Comparison:
    """`other` vs `base` as a ratio of geometric means with a t-interval on log SPS.

    When both lists have the same length they are taken as *paired* by round (trial k of each
    variant ran back to back, A B A B ...), so slow drifts of the machine cancel: the interval is
    on the per-round log ratios. Otherwise (a run cut short) the two samples are compared as
    independent (Welch); `paired=False` forces that (e.g. against a stored baseline). With 2-5
    trials a percentile bootstrap is far too confident (with 3 rounds it calls any 3-of-3
    majority significant); the t-interval widens honestly instead.
    """
    if len(base) < MIN_TRIALS or len(other) < MIN_TRIALS:
        ratio = float(statistics.median(other) / statistics.median(base)) if base and other else float("nan")
        return Comparison(ratio, float("nan"), float("nan"), confidence, TOO_FEW)
    lb, lo_ = np.log(np.asarray(base, float)), np.log(np.asarray(other, float))
    if paired is None:
        paired = len(lb) == len(lo_)
    if paired:
        return compare_log_ratios(lo_ - lb, confidence)
    vb, vo = lb.var(ddof=1) / len(lb), lo_.var(ddof=1) / len(lo_)
    center, se = float(lo_.mean() - lb.mean()), math.sqrt(vb + vo)
    df = (vb + vo) ** 2 / ((vb**2 / (len(lb) - 1)) + (vo**2 / (len(lo_) - 1))) if vb + vo > 0 else 1
    return _t_interval(center, se, df, confidence)


def compare_log_ratios(d: list[float], confidence: float = 0.95) -> Comparison:
    """Paired t-interval from per-round log ratios log(other/base) directly (what `compare_samples`
    does with paired samples), for callers whose rounds are blocks or batch means."""
    d = np.asarray(d, float)
    if len(d) < MIN_TRIALS:
        ratio = math.exp(float(d.mean())) if len(d) else float("nan")
        return Comparison(ratio, float("nan"), float("nan"), confidence, TOO_FEW)
    return _t_interval(float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))), len(d) - 1, confidence)


# Rounds of variants that take turns on one machine (epochs in one process, commands in turns) are
# judged by a trimmed mean: the TRIM share of the rounds at each end is cut before the interval is
# taken, so a neighbour that takes whole blocks from one side does not widen it (see
# `trimmed_log_ratios`; the share was chosen by replaying recorded runs, docs/benchmarks.md).
TRIM = 0.1
# ...and looks at no fewer batch means before it may stop on precision: a trimmed mean's spread is
# itself noisier with few values, so stopping on its width early inflates false verdicts more than
# the mean's does. Simulated (bench/stop_rule_sim.py, 2000 twin runs per case, precision 0.02):
# 6.5% with 10, 7.2% with 6 at sd 0.04 with 3% stalls; 4.3% with 10 under 15% stalls.
MIN_TRIMMED_ROUNDS = 10


def rounds_interval(d: list[float], confidence: float = 0.95) -> Comparison:
    """The interval of paired rounds that take turns on one machine: `trimmed_log_ratios` at TRIM."""
    return trimmed_log_ratios(d, confidence, TRIM)


def _cut_per_end(n: int, trim: float) -> int:
    """How many of n values a trimmed mean at `trim` cuts from each end: floor(trim * n), or 0 when
    fewer than two values would be left."""
    g = int(trim * n)
    return g if n - 2 * g >= 2 else 0


def trimmed_out(values: list[float], trim: float = TRIM) -> set[int]:
    """Positions of the values a trimmed mean at `trim` leaves out: the floor(trim * n) smallest
    and as many largest (ties broken by position, as a stable sort orders them)."""
    n = len(values)
    g = _cut_per_end(n, trim)
    if g == 0:
        return set()
    order = np.argsort(np.asarray(values, float), kind="stable")
    return {int(i) for i in order[:g]} | {int(i) for i in order[n - g:]}


def trimmed_log_ratios(d: list[float], confidence: float = 0.95, trim: float = TRIM) -> Comparison:
    """Yuen's trimmed-mean interval on per-round log ratios (the Tukey-McLaughlin one-sample form):
    the mean of the values left after cutting g = floor(trim * n) from each end, with a standard
    error from the winsorized variance, s_w / ((1 - 2g/n) sqrt(n)), and t with n - 2g - 1 degrees of
    freedom. A neighbour that takes whole blocks from one side gives the ratios heavy tails; the
    cut ends stop each stall from widening the interval. With g = 0 (fewer than 1/trim values) it
    is the paired t-interval of `compare_log_ratios`, so a few process trials keep their verdicts.
    `scipy.stats.mstats.trimmed_mean_ci` computes the same interval where trim * n is whole."""
    x = np.sort(np.asarray(d, float))
    n = len(x)
    g = _cut_per_end(n, trim)
    if g == 0:
        return compare_log_ratios(x, confidence)
    w = np.clip(x, x[g], x[n - g - 1])  # winsorized: the cut values replaced by the nearest kept one
    se = float(w.std(ddof=1)) / ((1 - 2 * g / n) * math.sqrt(n))
    return _t_interval(float(x[g:n - g].mean()), se, n - 2 * g - 1, confidence)


def _t_interval(center: float, se: float, df: float, confidence: float) -> Comparison:
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, df)) * se
    lo, hi = math.exp(center - half), math.exp(center + half)
    verdict = FASTER if lo > 1.0 else SLOWER if hi < 1.0 else SAME
    return Comparison(math.exp(center), lo, hi, confidence, verdict)



NODES_DISAGREE_P = 0.01  # one-way ANOVA of the per-round log ratios by node: below this, the nodes disagree


@dataclass(frozen=True)
class NodeBlocked:
    """A ratio measured on several machines, every round on one machine (node): the overall
    comparison, one per node, and the p-value of "every node sees the same ratio" (None with fewer
    than two nodes of two rounds)."""

    overall: Comparison
    per_node: dict[str, Comparison]
    disagree_p: float | None
    rounds: dict[str, int] = field(default_factory=dict)  # per node: the rounds behind its ratio

    @property
    def nodes_disagree(self) -> bool:
        return self.disagree_p is not None and self.disagree_p < NODES_DISAGREE_P


def compare_node_blocked(log_ratios: dict[str, list[float]], confidence: float = 0.95) -> NodeBlocked:
    """Per-round log ratios log(other/base) grouped by the node each round ran on.

    A round runs every variant on one node, so a fast node speeds up both sides of its ratios and
    cancels. Rounds of one node still share that machine's view of the change, so the node is a
    block (a randomized block design with these machines as the blocks): the centre is the mean of
    all rounds, the interval uses the spread within nodes (pooled, N - J degrees of freedom). It
    answers "on these machines"; whether the nodes agree is tested apart (one-way ANOVA,
    `disagree_p`), for a warning and the per-node ratios, and never switches the interval. When no
    node ran two rounds (or the rounds of every node agree exactly), there is no spread within a
    node to use, and the interval is over the nodes' means (J - 1 degrees of freedom).
    With one node this is the paired t-interval of `compare_log_ratios`."""
    groups = {n: np.asarray(d, float) for n, d in log_ratios.items() if len(d)}
    per_node = {n: compare_log_ratios(d, confidence) for n, d in groups.items()}
    rounds = {n: len(d) for n, d in groups.items()}
    all_d = np.concatenate(list(groups.values())) if groups else np.asarray([], float)
    if len(groups) < 2:
        return NodeBlocked(compare_log_ratios(all_d, confidence), per_node, None, rounds)
    n, j = len(all_d), len(groups)
    within, _ = pooled_within_var(list(groups.values()))
    means = np.asarray([d.mean() for d in groups.values()])
    p = None
    testable = [d for d in groups.values() if len(d) >= 2]
    if len(testable) >= 2:
        p = float(scipy.stats.f_oneway(*testable).pvalue) if within > 0 else (0.0 if np.ptp(means) > 0 else 1.0)
    if within > 0:
        overall = _t_interval(float(all_d.mean()), math.sqrt(within / n), n - j, confidence)
    else:
        overall = _t_interval(float(means.mean()), float(means.std(ddof=1) / math.sqrt(j)), j - 1, confidence)
    return NodeBlocked(overall, per_node, p, rounds)


def pooled_within_var(groups) -> tuple[float, int]:
    """(variance around each group's own mean, pooled over the groups; its degrees of freedom):
    the noise of a measurement once the differences between groups (machines) are taken out.
    (0.0, 0) when no group has two values."""
    groups = [np.asarray(g, float) for g in groups if len(g)]
    dof = sum(len(g) - 1 for g in groups)
    if dof < 1:
        return 0.0, 0
    return sum(float(((g - g.mean()) ** 2).sum()) for g in groups) / dof, dof


def mean_interval(xs, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean +- t * its standard error. NaN bounds with fewer than two
    values, NaN everywhere with none."""
    xs = np.asarray(xs, float)
    if len(xs) == 0:
        return math.nan, math.nan, math.nan
    centre = float(xs.mean())
    if len(xs) < 2:
        return centre, math.nan, math.nan
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, len(xs) - 1)) * float(xs.std(ddof=1)) / math.sqrt(len(xs))
    return centre, centre - half, centre + half


def geomean_interval(xs: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """t-interval of the geometric mean (`Summary.geomean`, the headline): the mean of log SPS
    +- t * its standard error, exponentiated. (geomean, geomean) with fewer than two samples."""
    centre, lo, hi = mean_interval(np.log(np.asarray(xs, float)), confidence)
    if math.isnan(lo):
        return math.exp(centre), math.exp(centre)
    return math.exp(lo), math.exp(hi)


def describe(c: Comparison) -> str:
    """'1.23x faster', '0.81x (slower)', 'no significant difference' — for humans."""
    if c.verdict == FASTER:
        return f"{c.ratio:.2f}x faster"
    if c.verdict == SLOWER:
        return f"{1 / c.ratio:.2f}x slower"
    return c.verdict


def compare_to_runs(run_means: list[float], now: list[float], confidence: float = 0.95) -> Comparison:
    """`now` (per-round values from ONE process) against earlier processes' mean values.

    What varies between CI jobs is mostly per process (machine, placement, clocks), so rounds
    inside one process understate it. The interval is a prediction interval from the spread of the
    earlier processes' means (t with K-1 degrees of freedom), widened by this run's own error:
    a new, unchanged run falls outside it about 1 - confidence of the time.
    """
    k = len(run_means)
    if k < MIN_TRIALS or len(now) < MIN_TRIALS:
        return Comparison(float("nan"), float("nan"), float("nan"), confidence, TOO_FEW)
    base = np.log(np.asarray(run_means, float))
    cur = np.log(np.asarray(now, float))
    d = float(cur.mean() - base.mean())
    var = base.var(ddof=1) * (1 + 1 / k) + cur.var(ddof=1) / len(cur)
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, k - 1)) * math.sqrt(var)
    lo, hi = math.exp(d - half), math.exp(d + half)
    verdict = FASTER if lo > 1.0 else SLOWER if hi < 1.0 else SAME
    return Comparison(math.exp(d), lo, hi, confidence, verdict)


def baseline_floor(run_means: list[float], confidence: float = 0.95) -> float:
    """The part of `compare_to_runs`' interval that comes from the earlier processes alone, as a
    ratio: exp(t(K-1) * sd(log means) * sqrt(1 + 1/K)). No run of the current process, however long,
    narrows it. NaN with fewer than two runs."""
    k = len(run_means)
    if k < MIN_TRIALS:
        return math.nan
    sd = float(np.log(np.asarray(run_means, float)).std(ddof=1))
    return math.exp(float(scipy.stats.t.ppf(0.5 + confidence / 2, k - 1)) * sd * math.sqrt(1 + 1 / k))


def half_width(c: Comparison) -> float:
    """Relative half-width of the ratio's interval: max(ci_high/ratio - 1, 1 - ci_low/ratio);
    0.02 means the ratio is known to about +-2%. inf without an interval (too few rounds)."""
    if any(math.isnan(x) for x in (c.ratio, c.ci_low, c.ci_high)) or c.ratio <= 0:
        return math.inf
    return max(c.ci_high / c.ratio - 1.0, 1.0 - c.ci_low / c.ratio)


def precision_reached(comparisons: list[Comparison], precision: float, n: int, min_rounds: int = MIN_ROUNDS) -> bool:
    """Stop adding rounds: at least `min_rounds` rounds (`n` done) and every ratio known to
    +-precision (relative half-width, see `half_width`).

    The rule looks at the interval's width only, never at whether it excludes 1: stopping when a
    result "looks significant" inflates false verdicts, while stopping on width barely does (see
    bench/stop_rule_sim.py and its test). An empty list is never precise: nothing was measured.
    """
    return n >= min_rounds and bool(comparisons) and all(half_width(c) <= precision for c in comparisons)


def batch_means(log_ratios: list[float], batch: int) -> list[float]:
    """Means of consecutive non-overlapping batches of `batch` values; a trailing partial batch is
    dropped so every mean has the same variance. Per-epoch pairs from one process are
    autocorrelated (a neighbour stays for a while); batch means of long enough batches are
    nearly independent, so a t-interval over them is honest where one over the epochs is not."""
    if batch < 1:
        raise ValueError(f"batch {batch} must be >= 1")
    k = len(log_ratios) // batch
    return [float(np.mean(log_ratios[i * batch:(i + 1) * batch])) for i in range(k)]


COUNTER_PREFIX = "curriculum."  # cumulative counts (tasks completed, configs applied): the latest is the largest


def mean_learning(ds: list[dict[str, float]]) -> dict[str, float]:
    """Average each learning stat over the dicts that report it; cumulative counters
    (`curriculum.*`) keep their max instead, since the last report holds the count. The one rule
    for episodes within a window, windows within a trial and trials within a variant."""
    keys = sorted({k for d in ds for k in d})
    out = {}
    for k in keys:
        vals = [d[k] for d in ds if k in d]
        out[k] = max(vals) if k.startswith(COUNTER_PREFIX) else sum(vals) / len(vals)
    return out


# -- blocks of one process (compare --mode inprocess): one round = one epoch of every variant ------

def steady_blocks(blocks: list[dict], warmup: int) -> list[dict]:
    """The rounds that count: each process's rounds after its first `warmup`. Rounds that carry a
    `process` number (commands run as several processes one after another, `compare --cmd
    --processes`) are warmed up per process, rounds that carry a `build` number (trainers rebuilt
    mid-session, `perfkit.engine.session`) per build; rounds with neither share one process."""
    seen: dict[tuple[int, int], int] = {}
    out = []
    for b in blocks:
        k = (b.get("process", 0), b.get("build", 0))
        seen[k] = seen.get(k, 0) + 1
        if seen[k] > warmup:
            out.append(b)
    return out


def _group_key(b: dict) -> tuple[str, int]:
    """What a round's interval is grouped by: its build order when the trainers were rebuilt in
    turns (strata averaged with equal weights, `compare_strata`), else its process (the unit of
    `compare_processes`)."""
    return ("order", b["build_order"]) if "build_order" in b else ("process", b.get("process", 0))


def _grouped_batches(blocks: list[dict], first: str, label: str, warmup: int, batch: int,
                     flag: Callable[[dict], bool] | None = None):
    """Per group (`_group_key`): batch means of the steady rounds' log(SPS label / SPS first), a
    batch never spanning two processes or builds; with `flag`, also per batch whether any of its
    rounds was flagged."""
    runs: dict[tuple[int, int], tuple[tuple[str, int], list[float], list[bool]]] = {}
    for k, x, b in _paired_rounds(blocks, first, label, warmup):
        run = runs.setdefault((b.get("process", 0), b.get("build", 0)), (k, [], []))
        run[1].append(x)
        run[2].append(bool(flag(b)) if flag else False)
    size = max(1, batch)
    means: dict[tuple[str, int], list[float]] = {}
    flags: dict[tuple[str, int], list[bool]] = {}
    for key, xs, hit in runs.values():
        m = batch_means(xs, size)
        means.setdefault(key, []).extend(m)
        flags.setdefault(key, []).extend(any(hit[i * size:(i + 1) * size]) for i in range(len(m)))
    return means, flags


def block_log_ratios(blocks: list[dict], first: str, label: str, warmup: int, batch: int) -> dict[int, list[float]]:
    """Per group (a process; or, for trainers rebuilt in turns, a build order), batch means of its
    per-round log(SPS label / SPS first), warm-up rounds left out; a round in which either block
    measured nothing (sps 0) is skipped. A batch never spans two processes or builds."""
    means, _ = _grouped_batches(blocks, first, label, warmup, batch)
    return {k[1]: v for k, v in means.items()}


def _paired_rounds(blocks: list[dict], first: str, label: str, warmup: int):
    """(group key, log(SPS label / SPS first), block) of each steady round in which both measured."""
    for b in steady_blocks(blocks, warmup):
        if b["sps"].get(label, 0) > 0 and b["sps"].get(first, 0) > 0:
            yield _group_key(b), math.log(b["sps"][label] / b["sps"][first]), b


@dataclass(frozen=True)
class TrimmedRounds:
    """What the trimmed interval of one variant saw: batch means in all, how many it cut, how many
    held a disturbed round, and how many of those it cut."""

    batches: int
    cut: int
    disturbed: int
    disturbed_cut: int


def trimmed_rounds(blocks: list[dict], first: str, label: str, warmup: int, batch: int,
                   disturbed: Callable[[dict], bool]) -> TrimmedRounds:
    """The batches of `block_log_ratios` (each group's own trimmed mean: the ones
    `rounds_interval` trims in it), with `disturbed(block)` asked of every round."""
    means, flags = _grouped_batches(blocks, first, label, warmup, batch, disturbed)
    n = cut = dist = dist_cut = 0
    for key, m in means.items():
        out = trimmed_out(m)
        n, cut = n + len(m), cut + len(out)
        dist += sum(flags[key])
        dist_cut += sum(1 for i in out if flags[key][i])
    return TrimmedRounds(n, cut, dist, dist_cut)


def _trimmed_mean_se(d: list[float], trim: float = TRIM) -> tuple[float, float, float]:
    """(trimmed mean, its standard error, degrees of freedom) as `trimmed_log_ratios` takes them
    (g = 0: the mean, its se and n - 1)."""
    x = np.sort(np.asarray(d, float))
    n = len(x)
    g = _cut_per_end(n, trim)
    if g == 0:
        return float(x.mean()), float(x.std(ddof=1) / math.sqrt(n)), n - 1
    w = np.clip(x, x[g], x[n - g - 1])  # winsorized: the cut values replaced by the nearest kept one
    return float(x[g:n - g].mean()), float(w.std(ddof=1)) / ((1 - 2 * g / n) * math.sqrt(n)), n - 2 * g - 1


def compare_strata(strata: dict[int, list[float]], confidence: float = 0.95) -> Comparison:
    """Batch means of one process, in strata: the build orders of trainers rebuilt in turns
    (`perfkit.engine.session`). Each stratum's trimmed mean (as `rounds_interval` takes it), then
    their plain average, so a fixed offset that comes with the place a trainer was built in cancels
    however unevenly the rounds fell between the orders; its standard error sqrt(sum se_i^2) / k,
    with Welch-Satterthwaite degrees of freedom. Strata with fewer than MIN_TRIALS batch means are
    left out (the rounds stop on precision only once every order has enough); with fewer than two
    left, every batch mean is pooled into one interval."""
    filled = [v for _, v in sorted(strata.items()) if len(v) >= MIN_TRIALS]
    if len(filled) < 2:
        return rounds_interval([x for v in strata.values() for x in v], confidence)
    parts = [_trimmed_mean_se(v) for v in filled]
    k = len(parts)
    centre = float(np.mean([m for m, _, _ in parts]))
    var = sum(se**2 for _, se, _ in parts) / k**2
    if var <= 0:
        return _t_interval(centre, 0.0, 1, confidence)
    df = var**2 / sum((se**2 / k**2) ** 2 / max(d, 1) for _, se, d in parts)
    return _t_interval(centre, math.sqrt(var), df, confidence)


def compare_processes(groups: dict[int, list[float]], confidence: float = 0.95) -> Comparison:
    """Log ratios grouped by the processes they were measured in. One group: the trimmed interval
    over its values (`rounds_interval`). Several: each process pair has its own speed offset
    (memory layout, hash seed, the core it lands on), which no number of rounds inside it averages
    away, so the process is the unit: the mean of the processes' own (trimmed) means, with a
    t-interval over them (J - 1 degrees of freedom), the one-way random-effects interval.
    Processes with no value are left out."""
    filled = [v for v in groups.values() if len(v)]
    if len(filled) < 2:  # one process (every round of compare in one process, every round checked)
        return rounds_interval(filled[0] if filled else [], confidence)
    m = np.asarray([float(scipy.stats.trim_mean(v, TRIM)) for v in filled])
    return _t_interval(float(m.mean()), float(m.std(ddof=1) / math.sqrt(len(m))), len(m) - 1, confidence)


def block_comparisons(blocks: list[dict], labels: list[str], warmup: int,
                      batch: int | None = None) -> dict[str, tuple[int, Comparison]]:
    """Every variant after the first against the first: (batch means used, Comparison). A batch
    is `batch` consecutive rounds (default: one full rotation, `len(labels)`); rounds from several
    processes are compared process by process (`compare_processes`), rounds of trainers rebuilt in
    turns build order by build order (`compare_strata`)."""
    out = {}
    for label in labels[1:]:
        means, _ = _grouped_batches(blocks, labels[0], label, warmup, batch or len(labels))
        groups = {k[1]: v for k, v in means.items()}
        by_order = any(k[0] == "order" for k in means)
        out[label] = (sum(len(v) for v in groups.values()),
                      compare_strata(groups) if by_order else compare_processes(groups))
    return out
