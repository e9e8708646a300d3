"""Does `perfkit learn` call a learning regression, keep quiet on twins, and cover the truth?

Three steps, each writing under --out (default results/learning-power):

    python bench/learning_power.py pool --seeds 30 --steps 1000000      # ~30 min on 2 cores
    python bench/learning_power.py twins --runs 20 --steps 150000       # ~15 min on 2 cores
    python bench/learning_power.py table                                # the tables in docs/benchmarks.md

pool: one seed pool of the arena, trained by perfkit learn's own engine with its defaults (fresh
processes, seeds side by side, seed s of every variant paired): the reference `basic_easy_shaped`,
the investigation's regression `preset=make_arena` (hearts ~1.3 -> ~0.04 at 11M steps), and a subtler
one, `fault=quarter-lr` (a learning rate 4x too small: the same env, the same speed, learning only
slower). The pool is cut into disjoint runs of --run-seeds seeds (5: `perfkit learn`'s default),
each analysed exactly as `perfkit learn` analyses its seeds (a LearnResult of those seeds); the
truth of each run is the mean paired difference over the pool's *other* seeds. Twins from the pool:
disjoint seed sets of the reference against each other (not paired: Welch). A run's minutes are
its trials' own process times over the cores (`--parallel`), as perfkit learn schedules them.

twins: fresh end-to-end `perfkit learn --pairing none` runs on a user's env (bench/userenvs/
forage.py: `forage:make` against `forage:make_twin`, the same code under another name), default
5 seeds each: every verdict is false.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from perfkit.core import learning_stats as ls  # noqa: E402
from perfkit.core.scenario import Scenario, Variant  # noqa: E402
from perfkit.records.learning import LearnResult, learn_seed  # noqa: E402

REFERENCE = {"preset": "basic_easy_shaped"}
CASES = {"regression (preset=make_arena)": {"preset": "make_arena"},
         "subtle (fault=quarter-lr)": {"fault": "quarter-lr"}}
METRIC = "heart.get"


def pool(args) -> int:
    from perfkit.commands import learning

    variants = [Variant("reference " + ",".join(f"{k}={v}" for k, v in REFERENCE.items()),
                        Scenario.build(REFERENCE, seed=1))]
    variants += [Variant(name, Scenario.build({**REFERENCE, **values}, seed=1)) for name, values in CASES.items()]
    out = Path(args.out) / "pool"
    out.mkdir(parents=True, exist_ok=True)
    job = learning.LearnJob(variants, steps=args.steps, seeds=args.seeds, max_seeds=args.seeds, metrics=[METRIC],
                            parallel=args.parallel or learning.auto_parallel())
    t0 = time.monotonic()

    def on_trial(i, n, label, seed, tr):
        value = ls.final_value(ls.points(tr.windows, METRIC), tr.agent_steps)
        print(f"[{i}/{n}] {label} seed {seed}: {tr.status}, {METRIC} {value:.3f}, "
              f"{(tr.process_s or 0):.0f} s ({(time.monotonic() - t0) / 60:.1f} min)", flush=True)

    learning.run(job, out, on_trial)
    print(f"pool: {out / 'learn.json'}")
    return 0


def _sub(result: LearnResult, labels: list[str], seeds: list[int], paired: bool = True) -> LearnResult:
    """The LearnResult perfkit learn would have written had it run only these seeds of these variants."""
    keep = {lab: [t for t in result.trials[lab] if learn_seed(int(t.scenario["seed"])) in seeds] for lab in labels}
    return LearnResult(variants=labels, scenarios={lab: result.scenarios[lab] for lab in labels}, steps=result.steps,
                       seeds=list(seeds), paired=paired, metrics=[METRIC], lower_is_better=[], trials=keep,
                       confidence=result.confidence)


def _minutes(result: LearnResult, labels: list[str], seeds: list[int], parallel: int) -> float:
    secs = sum(t.process_s or t.seconds for lab in labels for t in result.trials[lab]
               if learn_seed(int(t.scenario["seed"])) in seeds)
    return secs / parallel / 60


def table(args) -> int:
    result = LearnResult.load(Path(args.out) / "pool" / "learn.json")
    ref = result.variants[0]
    k, precision = args.run_seeds, args.precision
    seeds = [s for s in result.seeds if all(result.by_seed(v)[result.seeds.index(s)] is not None
                                            for v in result.variants)]
    runs = [seeds[i:i + k] for i in range(0, len(seeds) - k + 1, k)]
    print(f"pool: {len(seeds)} seeds with every variant finished, {result.steps:,} agent-steps each, "
          f"{result.parallel} side by side; runs of {k} seeds\n")
    print("| case | runs | verdict 'learns worse' | interval covers the truth | B − A (median of runs) | truth (pool) "
          f"| seeds for ±{precision:.0%} (Stein, median [max]) | minutes per run (median [max]) |")
    print("|---|---|---|---|---|---|---|---|")
    for label in result.variants[1:]:
        a_all, b_all = result.finals(ref, METRIC), result.finals(label, METRIC)
        by = dict(zip(result.seeds, zip(a_all, b_all, strict=True), strict=True))
        verdicts, covers, diffs, planned, minutes, truths = [], [], [], [], [], []
        for run in runs:
            sub = _sub(result, [ref, label], run)
            c = sub.compare(label, METRIC)
            others = [by[s][1] - by[s][0] for s in seeds if s not in run]
            truth = float(np.mean(others))
            verdicts.append(c.verdict)
            covers.append(c.difference.low <= truth <= c.difference.high)
            diffs.append(c.difference.value)
            truths.append(truth)
            a, b = sub.finals(ref, METRIC), sub.finals(label, METRIC)
            planned.append(ls.stein_seeds(a, b, ls.iqm_interval(a).value, precision, 10_000))
            minutes.append(_minutes(result, [ref, label], run, result.parallel))
        worse = sum(v == ls.LEARNS_WORSE for v in verdicts)
        print(f"| {label} | {len(runs)} | {worse} of {len(runs)} | {sum(covers)} of {len(runs)} | "
              f"{np.median(diffs):.3f} | {np.mean(truths):.3f} | {int(np.median(planned))} [{max(planned)}] | "
              f"{np.median(minutes):.1f} [{max(minutes):.1f}] |")
    # twins from the pool: disjoint seed sets of the reference, unpaired
    twin_runs = [(runs[i], runs[i + 1]) for i in range(0, len(runs) - 1, 2)]
    false = 0
    for s1, s2 in twin_runs:
        a = [result.finals(ref, METRIC)[result.seeds.index(s)] for s in s1]
        b = [result.finals(ref, METRIC)[result.seeds.index(s)] for s in s2]
        false += ls.verdict(ls.welch_difference(a, b)) != ls.NO_DIFFERENCE
    print(f"| twins ({ref}, disjoint seed sets) | {len(twin_runs)} | {false} false of {len(twin_runs)} | "
          "| | | | |")
    twins = Path(args.out) / "twins.json"
    if twins.exists():
        rows = json.loads(twins.read_text())
        false = sum(r["verdict"] != ls.NO_DIFFERENCE for r in rows)
        print(f"\nend-to-end twins (perfkit learn --pairing none, forage:make vs forage:make_twin): {false} false "
              f"verdicts in {len(rows)} runs; minutes per run median {np.median([r['minutes'] for r in rows]):.1f}")
    return 0


def twins(args) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "bench" / "userenvs"), str(ROOT)])}
    path = Path(args.out) / "twins.json"
    rows = json.loads(path.read_text()) if path.exists() else []
    for r in range(len(rows), args.runs):
        out = Path(args.out) / "twins" / f"run-{r}"
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "perfkit", "learn", "--vary", "env=forage:make,forage:make_twin",
                               "--pairing", "none", "--steps", str(args.steps), "--seed", str(1 + 1000 * r),
                               "--out", str(out), "--force", "--format", "plain"],
                              env=env, capture_output=True, text=True)
        minutes = (time.monotonic() - t0) / 60
        if proc.returncode != 0:
            print(f"run {r}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
            return 1
        res = LearnResult.load(out / "learn.json")
        c = res.compare(res.variants[1], res.metrics[0])
        rows.append({"run": r, "metric": res.metrics[0], "verdict": c.verdict, "difference": c.difference.to_dict(),
                     "minutes": minutes})
        path.write_text(json.dumps(rows, indent=1))
        print(f"run {r}: {c.verdict}, {res.metrics[0]} B − A {c.difference.value:.3f} "
              f"[{c.difference.low:.3f}, {c.difference.high:.3f}], {minutes:.1f} min", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["pool", "twins", "table"])
    ap.add_argument("--out", default="results/learning-power")
    ap.add_argument("--seeds", type=int, default=30, help="pool: seeds per variant")
    ap.add_argument("--steps", type=int, default=None, help="agent-steps per seed (pool 1,000,000; twins 150,000)")
    ap.add_argument("--parallel", type=int, default=None)
    ap.add_argument("--runs", type=int, default=20, help="twins: end-to-end runs")
    ap.add_argument("--run-seeds", type=int, default=5, help="table: seeds per run cut from the pool")
    ap.add_argument("--precision", type=float, default=0.2, help="table: Stein's seeds for ±P of the reference")
    args = ap.parse_args(argv)
    if args.steps is None:
        args.steps = 150_000 if args.step == "twins" else 1_000_000
    return {"pool": pool, "twins": twins, "table": table}[args.step](args)


if __name__ == "__main__":
    sys.exit(main())
