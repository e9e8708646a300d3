"""Does `perfkit compare` give true verdicts on a user's env, quiet and with a busy neighbour?

    python bench/verdict_power.py --runs 10 --cases twins,5,2 --conditions quiet,busy
    python bench/verdict_power.py --runs 10 --cases twins,1 --conditions quiet,churn \
        --precision 0.001 --max-minutes 3 --keep-records   # whole 3-minute runs, for bench/estimator_replay.py

The fault suite is a user-style env loaded through `--env forage:make` (bench/userenvs/forage.py,
not perfkit's arena): `make` against `make_twin` (the same code: every verdict other than "no
significant difference" is false), and against `make_slow`, whose `_reconcile_ledger` burns a
per-step cost calibrated first to cost 2%, 5% or 10% of SPS. Calibration: one long compare with a
known cost gives the time per vector step; the cost for each target follows, and a second long
compare per case measures the ground-truth ratio that the table's estimates are judged against.

Each run is a fresh `python -m perfkit compare ... --precision P --max-minutes M`; "busy" starts a
process spinning on one core for the run; "churn" adds to the spinner a short CPU-bound command
started every 2-6 s (seeded), a shared CI runner on a normal day. Results go to
results/verdict-power/ as JSON (with `--keep-records`, every run's own sps.json too, gzipped, so
other stop rules and estimators can be replayed on the same rounds), and the table is printed as
markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from perfkit.records.compare import CompareResult

USERENVS = ROOT / "bench" / "userenvs"
AGENTS_PER_STEP = 4 * 16  # 4 envs x 16 agents per vector step
CALIBRATION_COST_US = 100.0


CHURN_COMMAND = "s = 0\nfor i in range(1_500_000): s += i * i"  # about 0.2-0.4 s of one core with start-up
CHURN_GAP_S = (2.0, 6.0)


@contextlib.contextmanager
def disturbance(condition: str, seed: int = 0):
    """quiet: nothing; busy: a process spinning on one core; churn: the spinner plus a short
    CPU-bound command started every 2-6 s (seeded gaps)."""
    if condition not in ("quiet", "busy", "churn"):
        raise SystemExit(f"condition {condition!r}: choose from quiet, busy, churn")
    procs: list[subprocess.Popen] = []
    stop = threading.Event()
    if condition in ("busy", "churn"):
        procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))

    def churn() -> None:
        rng = random.Random(seed)
        while not stop.wait(rng.uniform(*CHURN_GAP_S)):
            subprocess.run([sys.executable, "-c", CHURN_COMMAND], check=False)  # its exit status does not matter

    thread = threading.Thread(target=churn, daemon=True) if condition == "churn" else None
    if thread is not None:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for p in procs:
            p.kill()
            p.wait()
        if thread is not None:
            thread.join()


def compare(other: str, cost_us: float, args, out: Path, condition: str = "quiet", seconds_total: float | None = None,
            precision: float | None = None, seed: int = 0, keep: Path | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(USERENVS), os.environ.get("PYTHONPATH", "")]),
           "PERFKIT_BENCH_COST_US": str(cost_us)}
    cmd = [sys.executable, "-m", "perfkit", "compare", "--vary", f"env=forage:make,forage:{other}",
           "--mode", args.mode, "--seconds", str(args.seconds), "--out", str(out), "--force"]
    if precision is not None:
        cmd += ["--precision", str(precision), "--max-minutes", str(args.max_minutes)]
    elif seconds_total is not None:
        cmd += ["--trials", str(max(1, round(seconds_total / 2 / args.seconds)))]
    t0 = time.monotonic()
    with disturbance(condition, seed):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    minutes = (time.monotonic() - t0) / 60
    if keep is not None:
        keep.parent.mkdir(parents=True, exist_ok=True)
        keep.write_bytes(gzip.compress((out / "sps.json").read_bytes()))
    result = CompareResult.load(out / "sps.json")
    ref, other = result.summaries()[:2]
    c = other.vs_reference
    flagged = sum(1 for w in _sentinel_lines(proc.stdout) if w)
    return {"ratio": c.ratio if c else None, "ci_low": c.ci_low if c else None, "ci_high": c.ci_high if c else None,
            "verdict": c.verdict if c else None, "minutes": minutes, "stop": result.stopping.get("reason"),
            "flag_lines": flagged, "exit": proc.returncode, "mode": result.mode,
            "first_sps": ref.sps.geomean if ref.sps else None}


def _sentinel_lines(stdout: str) -> list[str]:
    return [ln for ln in stdout.splitlines() if "other processes used" in ln or "disturbed" in ln]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--cases", default="twins,5,2", help="twins and/or slowdowns in percent, e.g. twins,2,5,10")
    ap.add_argument("--conditions", default="quiet,busy")
    ap.add_argument("--precision", type=float, default=0.02)
    ap.add_argument("--max-minutes", type=float, default=3.0)
    ap.add_argument("--mode", default="auto", choices=["auto", "process", "inprocess"])
    ap.add_argument("--seconds", type=float, default=5.0, help="per trial (process mode); sets the budget unit")
    ap.add_argument("--calibrate-seconds", type=float, default=40.0)
    ap.add_argument("--tag", default="", help="name of this set of runs: results/verdict-power/runs-TAG.json")
    ap.add_argument("--keep-records", action="store_true",
                    help="keep every run's sps.json under results/verdict-power/records/ (gzipped)")
    args = ap.parse_args()
    out_root = ROOT / "results" / "verdict-power"
    out_root.mkdir(parents=True, exist_ok=True)
    cases = args.cases.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="verdict-power-"))

    print(f"calibrating: {CALIBRATION_COST_US:g} us per env step, {args.calibrate_seconds:g} s ...", file=sys.stderr)
    cal = compare("make_slow", CALIBRATION_COST_US, args, tmp / "cal", seconds_total=args.calibrate_seconds)
    r0 = cal["ratio"]
    # ratio = T / (T + 4c) per vector step of 4 envs, T the step time without the cost
    step_s = 4 * CALIBRATION_COST_US * 1e-6 * r0 / (1 - r0)
    print(f"calibration ratio {r0:.4f} -> {1e6 * step_s:.0f} us per vector step", file=sys.stderr)
    truth: dict[str, tuple[float, float]] = {"twins": (0.0, 1.0)}
    for case in cases:
        if case == "twins":
            continue
        target = 1 - float(case) / 100
        cost = step_s * (1 / target - 1) / 4 * 1e6
        gt = compare("make_slow", cost, args, tmp / f"gt-{case}", seconds_total=args.calibrate_seconds)
        truth[case] = (cost, gt["ratio"])
        print(f"case {case}%: {cost:.1f} us per env step, ground truth ratio {gt['ratio']:.4f} "
              f"[{gt['ci_low']:.4f}, {gt['ci_high']:.4f}]", file=sys.stderr)

    results = []
    runs_file = out_root / (f"runs-{args.tag}.json" if args.tag else "runs.json")
    for k in range(args.runs):  # run k of every cell before run k + 1: a drift of the machine spreads over all cells
        for case in cases:
            cost, gt = truth[case]
            other = "make_twin" if case == "twins" else "make_slow"
            for cond in args.conditions.split(","):
                keep = (out_root / "records" / (args.tag or "untagged") / f"{case}-{cond}-{k}.json.gz"
                        if args.keep_records else None)
                r = compare(other, cost, args, tmp / f"{case}-{cond}-{k}", condition=cond,
                            precision=args.precision, seed=k, keep=keep)
                r.update(case=case, condition=cond, run=k, truth=gt, cost_us=cost)
                results.append(r)
                print(f"{case} {cond} #{k + 1}: {r['ratio']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}] "
                      f"{r['verdict']}, {r['minutes']:.2f} min, stop: {r['stop']}", file=sys.stderr)
                runs_file.write_text(json.dumps({"truth": truth, "runs": results}, indent=1))

    print("| case | condition | runs | slower / no difference / faster | median ratio | ground truth "
          "| median minutes | runs with flagged epochs |")
    print("|---|---|---|---|---|---|---|---|")
    for case in cases:
        for cond in args.conditions.split(","):
            rs = [r for r in results if r["case"] == case and r["condition"] == cond]
            if not rs:
                continue
            v = [r["verdict"] for r in rs]
            counts = f"{v.count('slower')} / {v.count('no significant difference')} / {v.count('faster')}"
            print(f"| {case if case == 'twins' else case + '% slower'} | {cond} | {len(rs)} | {counts} | "
                  f"{statistics.median(r['ratio'] for r in rs):.4f} | {truth[case][1]:.4f} | "
                  f"{statistics.median(r['minutes'] for r in rs):.2f} | {sum(1 for r in rs if r['flag_lines'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
