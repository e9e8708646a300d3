"""How often does `perfkit learn`'s seed rule give a false verdict? A seeded simulation.

Twins (no true difference) whose seeds' final values come from a distribution like RL's: normal,
heavy-tailed (Student t with 3 degrees of freedom), or bimodal (a seed fails outright with
probability 0.2, ending near zero). The rule is perfkit learn's: --seeds K first, then (with
--precision P) Stein's two-stage rule: the first K seeds' spread decides once how many seeds make
the paired difference's 95% interval about ±P of the reference's IQM (at most --max-seeds), and the
verdict's interval is the wider of the ordinary t-interval and Stein's. For comparison, the table
also has the rule perfkit does not use: one more seed at a time until the interval looks narrow
(it stops when the spread came out small by chance, and calls twins different more often).

    python bench/learning_rule_sim.py                       # the table in docs/benchmarks.md
    python bench/learning_rule_sim.py --runs 4000 --precision 0.05
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perfkit.core import learning_stats as ls  # noqa: E402

DISTS = ("normal", "t3", "bimodal")


def draw(rng: np.random.Generator, dist: str, n: int, mean: float = 1.0, sd: float = 0.25) -> np.ndarray:
    if dist == "normal":
        return mean + sd * rng.normal(size=n)
    if dist == "t3":
        return mean + sd * rng.standard_t(3, size=n) / np.sqrt(3)  # unit variance
    if dist == "bimodal":
        failed = rng.random(n) < 0.2
        return np.where(failed, 0.05 * rng.random(n), mean + sd * rng.normal(size=n))
    raise ValueError(f"dist {dist!r}; valid: {', '.join(DISTS)}")


def one_run(rng: np.random.Generator, seeds: int, max_seeds: int, precision: float | None, dist: str,
            effect: float = 0.0) -> tuple[str, int, ls.Estimate]:
    """(verdict, seeds used, difference) for twins (effect 0) or B = A + effect in mean, under
    perfkit learn's rule: --seeds first, then (with --precision) the seeds Stein's rule plans."""
    a, b = list(draw(rng, dist, seeds)), list(draw(rng, dist, seeds) + effect)
    if precision:
        n = ls.stein_seeds(a, b, float(ls.iqm(np.asarray(a))), precision, max_seeds)
        a += list(draw(rng, dist, n - seeds))
        b += list(draw(rng, dist, n - seeds) + effect)
    diff = ls.paired_difference(a, b, first_stage=seeds if precision else None)
    return ls.verdict(diff), len(a), diff


def one_run_sequential(rng: np.random.Generator, seeds: int, max_seeds: int, precision: float, dist: str,
                       effect: float = 0.0) -> tuple[str, int, ls.Estimate]:
    """The rule perfkit learn does NOT use, for comparison: one more seed at a time until the
    ordinary interval is within ±precision of the reference's IQM."""
    a, b = list(draw(rng, dist, seeds)), list(draw(rng, dist, seeds) + effect)
    while True:
        diff = ls.paired_difference(a, b)
        if ls.precision_met(diff, float(ls.iqm(np.asarray(a))), precision) or len(a) >= max_seeds:
            return ls.verdict(diff), len(a), diff
        a.append(float(draw(rng, dist, 1)[0]))
        b.append(float(draw(rng, dist, 1)[0] + effect))


def false_verdict_rate(runs: int, seeds: int, max_seeds: int, precision: float | None, dist: str,
                       seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    return sum(one_run(rng, seeds, max_seeds, precision, dist)[0] != ls.NO_DIFFERENCE for _ in range(runs)) / runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--max-seeds", type=int, default=20)
    ap.add_argument("--precision", type=float, nargs="+", default=[0.1, 0.3, 0.6])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print("| seeds' distribution (sd 25% of the mean) | rule | false verdicts (twins) | median seeds |")
    print("|---|---|---|---|")
    for dist in DISTS:
        for precision, run, name in [(None, one_run, ""), *((p, one_run, "") for p in args.precision),
                                     *((p, one_run_sequential, " one seed at a time (not used)")
                                       for p in args.precision[:1])]:
            rng = np.random.default_rng(args.seed)
            out = [run(rng, args.seeds, args.max_seeds, precision, dist) for _ in range(args.runs)]
            rate = sum(v != ls.NO_DIFFERENCE for v, _, _ in out) / args.runs
            rule = f"--precision {precision} (seeds {args.seeds}..{args.max_seeds}){name}" if precision else \
                f"--seeds {args.seeds}"
            print(f"| {dist} | {rule} | {rate:.1%} of {args.runs} | {int(np.median([n for _, n, _ in out]))} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
