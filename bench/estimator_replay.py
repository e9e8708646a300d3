"""Which interval keeps `compare`'s verdicts honest, and fast, on a contended machine?

    python bench/estimator_replay.py replay results/verdict-power/records/churn --truth results/verdict-power/runs-churn.json
    python bench/estimator_replay.py simulate --pool results/verdict-power/records/churn --runs 400

`compare` (one process, epochs of the variants in rotation) stops once every ratio's 95% interval is
within +-precision, or at --max-minutes. Its interval comes from the per-round log ratios
log(SPS B / SPS A), averaged in batches of one rotation. A neighbour that comes and goes takes whole
blocks from one side, so those ratios have heavy tails and a mean-based interval pays for every
stall. This benchmark judges candidate estimators on the same rounds:

- `replay`: whole recorded runs (`bench/verdict_power.py --keep-records`, run with an unreachable
  precision so each goes to its time limit) judged by the stop rule of each estimator, round by
  round, as the session would have: where it would have stopped, its ratio, interval and verdict.
  Every estimator sees exactly the same rounds, so the comparison between them is paired.
- `simulate`: many seeded runs whose rounds are drawn from a pool of recorded twin rounds
  (contiguous stretches, so a neighbour that stays for a while stays in the draw) shifted by a
  known true ratio; the false-verdict rate and coverage of each rule, with more runs than a machine
  could record.

Estimators: `mean` (the paired t-interval, perfkit before this benchmark), `trim10`/`trim20`
(`stats.trimmed_log_ratios`, Yuen's trimmed mean), `hl` (the Hodges-Lehmann estimate with its
Wilcoxon signed-rank interval, normal approximation), each over batch means of `--batch` rounds.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import statistics
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import scipy.stats

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from perfkit.core import stats


def hodges_lehmann(d, confidence: float = 0.95) -> stats.Comparison:
    """The median of the Walsh averages (d_i + d_j) / 2, i <= j, with the signed-rank interval
    between the k-th smallest and k-th largest of them (k from the normal approximation)."""
    x = np.asarray(d, float)
    n = len(x)
    if n < stats.MIN_ROUNDS:
        return stats.Comparison(math.exp(float(np.median(x))) if n else math.nan, math.nan, math.nan, confidence,
                                stats.TOO_FEW)
    i, j = np.triu_indices(n)
    w = np.sort((x[i] + x[j]) / 2)
    z = float(scipy.stats.norm.ppf(0.5 + confidence / 2))
    k = math.floor(n * (n + 1) / 4 - z * math.sqrt(n * (n + 1) * (2 * n + 1) / 24))
    k = max(k, 0)
    lo, hi, centre = float(w[k]), float(w[len(w) - 1 - k]), float(np.median(w))
    verdict = stats.FASTER if lo > 0 else stats.SLOWER if hi < 0 else stats.SAME
    return stats.Comparison(math.exp(centre), math.exp(lo), math.exp(hi), confidence, verdict)


ESTIMATORS: dict[str, Callable[[list[float]], stats.Comparison]] = {
    "mean": stats.compare_log_ratios,
    "trim10": partial(stats.trimmed_log_ratios, trim=0.1),
    "trim20": partial(stats.trimmed_log_ratios, trim=0.2),
    "hl": hodges_lehmann,
}


def load_rounds(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A recorded compare's steady rounds: (log ratio of the second variant to the first, seconds
    since the rounds began at each round's end, the other processes' cores during the round, the
    first variant's SPS)."""
    data = json.loads(gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes())
    first, label = data["variants"][:2]
    d, t, others, ref = [], [], [], []
    for b in stats.steady_blocks(data["blocks"], data.get("warmup_rounds", 2)):
        if b["sps"].get(first, 0) > 0 and b["sps"].get(label, 0) > 0:
            d.append(math.log(b["sps"][label] / b["sps"][first]))
            t.append(b.get("t", math.nan))
            others.append(max(b.get("others_cores", {}).values(), default=0.0))
            ref.append(b["sps"][first])
    t = np.asarray(t, float)
    if np.isnan(t).any():  # a record from before rounds carried their time: the blocks' own seconds
        t = np.cumsum([sum(b["seconds"].values()) for b in stats.steady_blocks(data["blocks"], data.get("warmup_rounds", 2))
                       if b["sps"].get(first, 0) > 0 and b["sps"].get(label, 0) > 0])
    return np.asarray(d), t, np.asarray(others), np.asarray(ref)


def true_log_ratio(ref_sps: np.ndarray, cost_us: float) -> float:
    """The truth of a run with a hidden cost of `cost_us` per env step (bench/verdict_power.py: 4
    envs x 16 agents per vector step): the cost is wall time that contention does not stretch, so
    each round's true ratio is 1 / (1 + 4 c SPS_A / 64), its reference SPS as that round measured
    it; averaged over the rounds in log."""
    return float(np.mean(-np.log1p(4 * cost_us * 1e-6 * ref_sps / 64)))


def stop_rule(d: np.ndarray, t: np.ndarray, estimator: Callable, precision: float, batch: int,
              max_seconds: float, min_batches: int = stats.MIN_ROUNDS, every: Callable[[int], int] = lambda n: 1):
    """Replay the session's stop rule on rounds `d` ending at times `t`: after each round, once
    `min_batches` batch means exist, stop when the estimator's half-width is within `precision`;
    else at the last round before `max_seconds`. `every(n)`: check only every that many rounds
    (1: every round, as the session does). Returns (Comparison, rounds used, seconds, reason)."""
    last = int(np.searchsorted(t, max_seconds, side="right"))  # rounds that ended within the limit
    last = max(min(last, len(d)), 1)
    n = min_batches * batch
    while n < last:
        c = estimator(stats.batch_means(list(d[:n]), batch))
        if stats.half_width(c) <= precision:
            return c, n, float(t[n - 1]), "precision"
        n += every(n)
    return estimator(stats.batch_means(list(d[:last]), batch)), last, float(t[last - 1]), "time"


def _verdict_counts(cs: list[stats.Comparison]) -> str:
    v = [c.verdict for c in cs]
    return f"{v.count(stats.SLOWER)} / {v.count(stats.SAME)} / {v.count(stats.FASTER)}"


def replay(args) -> int:
    truth_runs = json.loads(Path(args.truth).read_text()) if args.truth else {"truth": {}}
    costs = {case: cost for case, (cost, _) in truth_runs["truth"].items()}
    files = sorted(Path(args.records).glob("*.json*"))
    if not files:
        raise SystemExit(f"no records under {args.records}")
    rows = []
    for f in files:
        case, cond = f.name.split("-")[:2]
        d, t, others, ref = load_rounds(f)
        cost = costs.get(case, 0.0)
        for name in args.estimators.split(","):
            for batch in (int(b) for b in args.batch.split(",")):
                c, n, secs, why = stop_rule(d, t, ESTIMATORS[name], args.precision, batch, 60 * args.max_minutes)
                rows.append({"case": case, "condition": cond, "file": f.name, "estimator": name, "batch": batch,
                             "ratio": c.ratio, "ci_low": c.ci_low, "ci_high": c.ci_high, "verdict": c.verdict,
                             "rounds": n, "seconds": secs, "stop": why, "truth": math.exp(true_log_ratio(ref[:n], cost)),
                             "disturbed": float(np.mean(others[:n] > args.disturbed)) if len(others) else 0.0})
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    print(f"Replayed: --precision {args.precision} --max-minutes {args.max_minutes}, {len(files)} recorded runs.\n")
    print("| case | condition | estimator | batch | runs | slower / no difference / faster | covers truth "
          "| median ratio (truth) | median half-width | median minutes | stopped on precision |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    keys = sorted({(r["case"], r["condition"], r["estimator"], r["batch"]) for r in rows},
                  key=lambda k: (k[0], k[1], args.estimators.split(",").index(k[2]), k[3]))
    for case, cond, name, batch in keys:
        rs = [r for r in rows if (r["case"], r["condition"], r["estimator"], r["batch"]) == (case, cond, name, batch)]
        truth = statistics.median(r["truth"] for r in rs)
        cs = [stats.Comparison(r["ratio"], r["ci_low"], r["ci_high"], 0.95, r["verdict"]) for r in rs]
        cover = sum(1 for r in rs if r["ci_low"] <= r["truth"] <= r["ci_high"])
        print(f"| {case} | {cond} | {name} | {batch} | {len(rs)} | {_verdict_counts(cs)} | {cover} of {len(rs)} | "
              f"{statistics.median(r['ratio'] for r in rs):.4f} ({truth:.4f}) | "
              f"±{100 * statistics.median(stats.half_width(c) for c in cs):.2f}% | "
              f"{statistics.median(r['seconds'] for r in rs) / 60:.2f} | "
              f"{sum(r['stop'] == 'precision' for r in rs)} of {len(rs)} |")
    return 0


def pool_rounds(records: str, case: str = "twins") -> list[tuple[np.ndarray, float]]:
    """(log ratios, mean seconds per round) of each recorded run of `case`: the noise a simulated
    run is drawn from."""
    out = []
    for f in sorted(Path(records).glob(f"{case}-*.json*")):
        d, t, _, _ = load_rounds(f)
        if len(d) > 20:
            out.append((d, float(t[-1] - t[0]) / (len(d) - 1)))
    if not out:
        raise SystemExit(f"no recorded {case} runs under {records}")
    return out


def draw_run(rng: np.random.Generator, pool: list[tuple[np.ndarray, float]], rounds: int, stretch: int) -> np.ndarray:
    """`rounds` per-round log ratios: contiguous stretches of `stretch` rounds, each from a random
    recorded run at a random place. Twin rounds are used as they were measured: their truth is a
    ratio of exactly 1, so nothing is centred (centring on a median would favour the robust
    estimators if the noise were skewed)."""
    parts, have = [], 0
    while have < rounds:
        d, _ = pool[rng.integers(len(pool))]
        start = int(rng.integers(0, max(1, len(d) - stretch)))
        part = d[start:start + stretch]
        parts.append(part)
        have += len(part)
    return np.concatenate(parts)[:rounds]


# The contended runs (a spinner plus work coming and going, a second trainer part of the
# time): per-round sd 0.24-0.44, 1st/99th percentiles near -0.8/+0.8. Drawn as steady noise of sd
# 0.04 plus, in 15% of rounds, a stall of one side by a factor 1.2-3.0.
HEAVY = {"sd": 0.04, "outlier_rate": 0.15, "outlier_factor": (1.2, 3.0)}


def simulate(args) -> int:
    from stop_rule_sim import draw_log_ratios

    if args.pool:
        pool = pool_rounds(args.pool)
        centre = float(np.median(np.concatenate([d for d, _ in pool])))  # reported, not removed
        secs = statistics.median(s for _, s in pool)
        rounds = int(60 * args.max_minutes / secs)
        print(f"noise: {len(pool)} recorded twin runs, {sum(len(d) for d, _ in pool)} rounds, "
              f"{secs * 1000:.0f} ms per round, median log ratio {centre:+.4f}; "
              f"{rounds} rounds in {args.max_minutes:g} min\n")
    else:
        secs = args.round_seconds
        rounds = int(60 * args.max_minutes / secs)
        x = draw_log_ratios(np.random.default_rng(99), 1, 100_000, 1.0, **HEAVY)[0]
        print(f"noise: heavy-tailed model {HEAVY}: sd {x.std():.2f}, 1st/99th percentiles "
              f"{np.percentile(x, 1):+.2f}/{np.percentile(x, 99):+.2f}; {secs * 1000:.0f} ms per round, "
              f"{rounds} rounds in {args.max_minutes:g} min\n")
    print("| true ratio | estimator | batch | runs | slower / no difference / faster | false verdicts | covers truth "
          "| median ratio | median half-width | median minutes | reached precision |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for true in (float(x) for x in args.ratios.split(",")):
        rng = np.random.default_rng(args.seed)
        if args.pool:
            runs = [draw_run(rng, pool, rounds, args.stretch) + math.log(true) for _ in range(args.runs)]
        else:
            runs = list(draw_log_ratios(rng, args.runs, rounds, true, **HEAVY))
        t = np.arange(1, rounds + 1) * secs
        for name in args.estimators.split(","):
            for batch in (int(b) for b in args.batch.split(",")):
                res = [stop_rule(d, t, ESTIMATORS[name], args.precision, batch, 60 * args.max_minutes,
                                 every=lambda n: max(1, n // 40)) for d in runs]
                cs = [c for c, *_ in res]
                false = sum(c.verdict != stats.SAME for c in cs) if true == 1.0 else \
                    sum(c.verdict == (stats.FASTER if true < 1 else stats.SLOWER) for c in cs)
                cover = sum(c.ci_low <= true <= c.ci_high for c in cs)
                rows.append({"true": true, "estimator": name, "batch": batch, "runs": len(cs), "false": false,
                             "cover": cover, "verdicts": _verdict_counts(cs),
                             "median_ratio": statistics.median(c.ratio for c in cs),
                             "median_half_width": statistics.median(stats.half_width(c) for c in cs),
                             "median_minutes": statistics.median(s for _, _, s, _ in res) / 60,
                             "precise": sum(w == "precision" for *_, w in res)})
                r = rows[-1]
                print(f"| {true:g} | {name} | {batch} | {len(cs)} | {r['verdicts']} | {false} ({100 * false / len(cs):.1f}%) | "
                      f"{100 * cover / len(cs):.1f}% | {r['median_ratio']:.4f} | ±{100 * r['median_half_width']:.2f}% | "
                      f"{r['median_minutes']:.2f} | "
                      f"{r['precise']} of {len(cs)} |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    for name in ("replay", "simulate"):
        p = sub.add_parser(name)
        p.add_argument("--precision", type=float, default=0.005)
        p.add_argument("--max-minutes", type=float, default=3.0)
        p.add_argument("--estimators", default=",".join(ESTIMATORS))
        p.add_argument("--batch", default="2", help="rounds per batch mean, e.g. 2,4,8")
        p.add_argument("--out", default="")
    r = sub.choices["replay"]
    r.add_argument("records", help="a folder of sps.json(.gz) records named CASE-CONDITION-K")
    r.add_argument("--truth", default="", help="runs-TAG.json of bench/verdict_power.py (the cost per env step of "
                   "each case; a run's truth follows from it and the run's own reference SPS)")
    r.add_argument("--disturbed", type=float, default=0.3, help="others' cores above which a round counts as disturbed")
    s = sub.choices["simulate"]
    s.add_argument("--pool", default="", help="a folder of recorded runs whose twins-* rounds are the noise "
                   "(default: the heavy-tailed model)")
    s.add_argument("--round-seconds", type=float, default=0.3, help="the heavy-tailed model's seconds per round")
    s.add_argument("--runs", type=int, default=400)
    s.add_argument("--ratios", default="1.0,0.99,0.98")
    s.add_argument("--stretch", type=int, default=50, help="contiguous rounds per draw")
    s.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    return replay(args) if args.what == "replay" else simulate(args)


if __name__ == "__main__":
    sys.exit(main())
