"""Does `perfkit gate` catch real regressions and ignore noise? Measure it.

    python bench/gate_power.py --runs 20 --envs forage,arena --conditions quiet,busy

For each env, every gate run is a fresh process that times four rollout workloads side by side:
the unchanged code twice (identical behaviour under two names) and the code with a hidden per-step
cost sized to cut SPS by 5% and by 10% (calibrated first, on this machine). The envs:
  forage   a user's own env loaded as `--env forage:make` (bench/userenvs/forage.py): `make_twin`
           is the same code, `make_slow`/`make_slower` burn the cost in `_reconcile_ledger`
  arena    perfkit's arena with `inject-cost-us` (the cost in `_injected_cost`)
Every run uses the gate's default rule (rounds added until every check is known to +-1%, at most
3 minutes) and evaluates, against the unchanged workload:
  relative checks   sps(X) >= 0.98 * sps(unchanged)        (same run, interleaved)
  baseline checks   sps(X) >= 0.98 * baseline              (baseline: 5 earlier fresh processes of the
                                                            unchanged code, normalised by the
                                                            reference workload)
"busy" runs a process spinning on one core next to each gate run. The script prints how often each
check fails: the false-alarm rate (X unchanged) and the power (X 5% / 10% slower), the median
ratio, the median time of one gate run, and for baseline checks the ratio below which the check
can fail at all (set by the spread between the baseline's processes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
USERENVS = ROOT / "bench" / "userenvs"
sys.path.insert(0, str(ROOT))

from perfkit.commands import gate as g  # noqa: E402

THRESHOLD = 0.98
CODES = ("unchanged", "5% slower", "10% slower")
BASELINE_RUNS, BASELINE_ROUNDS = 5, 40


def labels(env: str, c5: float, c10: float) -> dict[str, str]:
    """The four workloads of one env: reference code first."""
    if env == "forage":
        return {"base": "env=forage:make", "unchanged": "env=forage:make_twin", "5% slower": "env=forage:make_slow",
                "10% slower": "env=forage:make_slower"}
    return {"base": "inject-cost-us=0", "unchanged": "inject-cost-us=0.0", "5% slower": f"inject-cost-us={c5}",
            "10% slower": f"inject-cost-us={c10}"}


def child_env(c5: float, c10: float) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(USERENVS), str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "PERFKIT_BENCH_COST_US": f"{c5:.3f}", "PERFKIT_BENCH_COST_US_2": f"{c10:.3f}"}


def _workloads(args) -> dict[str, str]:
    """Labels as the gate resolves them (a user env runs with wrapper=none). The arena's twins
    (`inject-cost-us=0` and `=0.0`) are one scenario under two names: kept apart as written."""
    raw = labels(args.env, args.c5, args.c10)
    return raw if args.env == "arena" else {k: g.workload_label(v) for k, v in raw.items()}


def make_baseline(args) -> None:
    """Measured as `perfkit gate --update-baseline` does: fresh processes, the same workloads."""
    w = _workloads(args)
    g.write_baseline(Path(args.baseline), [g.measure_in_subprocess(list(w.values()), BASELINE_ROUNDS,
                                                                   args.block_steps)
                                           for _ in range(BASELINE_RUNS)])


def one(args) -> None:
    """One gate run with the gate's default rule; prints one JSON line."""
    w = _workloads(args)
    stored = json.loads(Path(args.baseline).read_text())
    # Every X is checked against the baseline of the unchanged reference code.
    baseline = {"runs": [{"scores": {label: run["scores"][w["base"]] for label in w.values()}}
                         for run in stored["runs"]], "block_steps": stored["block_steps"]}
    checks = []
    for code in CODES:
        checks.append(g.Check(f"rel {code}", w[code], THRESHOLD, w["base"]))
        checks.append(g.Check(f"base {code}", w[code], THRESHOLD, g.BASELINE))
    rule = g.GateRule(rounds=1000, precision=args.precision, max_seconds=60 * args.max_minutes)
    t0 = time.perf_counter()
    record = g.run(checks, rule, args.block_steps, baseline)
    out = {"seconds": time.perf_counter() - t0, "rounds": record.measurement.rounds,
           "stopped": record.measurement.stopped}
    for r in record.checks:
        kind, code = r.check.split(" ", 1)
        out.setdefault(code, {})[kind] = {"status": r.status, "ratio": r.ratio, "ci": [r.ci_low, r.ci_high],
                                          "detectable_below": r.detectable_below}
    print(json.dumps(out))


def calibrate(args) -> tuple[float, float]:
    """Costs (us per env step) for 5% and 10%, from the unchanged workload's speed on this machine."""
    sys.path.insert(0, str(USERENVS))
    base = g.workload_label(labels(args.env, 0, 0)["base"])
    sps = float(np.median(g.measure([base], 30, args.block_steps).samples[base]))
    agents, envs = (16 * 4, 4) if args.env == "forage" else (24 * 4, 4)
    step_s = agents / sps  # one vector step of `envs` envs
    cost = {d: 1e6 * step_s * d / (1 - d) / envs for d in (0.05, 0.10)}
    print(f"{args.env}: {sps:,.0f} agent-steps/s -> {cost[0.05]:.2f} us (5%), {cost[0.10]:.2f} us (10%) per env "
          "step", file=sys.stderr)
    return cost[0.05], cost[0.10]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20, help="gate runs per env and condition")
    ap.add_argument("--envs", default="forage,arena", help="forage (a user's env) and/or arena")
    ap.add_argument("--conditions", default="quiet,busy")
    ap.add_argument("--precision", type=float, default=0.01)
    ap.add_argument("--max-minutes", type=float, default=3.0)
    ap.add_argument("--block-steps", type=int, default=100)
    ap.add_argument("--out", default=str(ROOT / "results" / "gate-power"))
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--make-baseline", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--env", default="arena", help=argparse.SUPPRESS)
    ap.add_argument("--c5", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--c10", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--baseline", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return one(args)
    if args.make_baseline:
        return make_baseline(args)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for env in args.envs.split(","):
        args.env = env
        c5, c10 = calibrate(args)
        with tempfile.TemporaryDirectory() as tmp:
            base_path = Path(tmp) / "baseline.json"
            common = ["--env", env, "--c5", f"{c5:.3f}", "--c10", f"{c10:.3f}", "--baseline", str(base_path),
                      "--block-steps", str(args.block_steps), "--precision", str(args.precision),
                      "--max-minutes", str(args.max_minutes)]
            subprocess.run([sys.executable, __file__, "--make-baseline", *common], check=True, capture_output=True,
                           env=child_env(c5, c10), cwd=ROOT)
            for cond in args.conditions.split(","):
                for k in range(args.runs):
                    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if cond == "busy" else None
                    try:
                        proc = subprocess.run([sys.executable, __file__, "--one", *common], capture_output=True,
                                              text=True, check=True, env=child_env(c5, c10), cwd=ROOT)
                    finally:
                        if spinner is not None:
                            spinner.kill()
                            spinner.wait()
                    r = {"env": env, "condition": cond, **json.loads(proc.stdout.strip().splitlines()[-1])}
                    results.append(r)
                    print(f"{env} {cond} {k + 1}/{args.runs} ({r['rounds']} rounds, {r['seconds']:.0f} s): "
                          + ", ".join(f"{c}: {r[c]['rel']['status']}/{r[c]['base']['status']}" for c in CODES),
                          file=sys.stderr)
                    (out_dir / "runs.json").write_text(json.dumps(results, indent=1))
    rows = []
    targets = {"unchanged": "fails <= 5%", "5% slower": "caught >= 80%", "10% slower": "caught >= 90%"}
    for env in args.envs.split(","):
        for cond in args.conditions.split(","):
            rs = [r for r in results if r["env"] == env and r["condition"] == cond]
            for code in CODES:
                for kind, name in (("rel", "relative"), ("base", "baseline")):
                    fails = sum(r[code][kind]["status"] == "FAIL" for r in rs)
                    det = [r[code][kind]["detectable_below"] for r in rs if r[code][kind]["detectable_below"]]
                    rows.append([env, cond, code, f"{name} (>= {THRESHOLD})", len(rs),
                                 f"{fails}/{len(rs)} = {100 * fails / len(rs):.0f}%",
                                 f"{np.median([r[code][kind]['ratio'] for r in rs]):.3f}",
                                 f"{np.median(det):.3f}" if det else "-",
                                 f"{np.median([r['seconds'] for r in rs]):.0f}", targets[code]])
    print(tabulate(rows, headers=["env", "condition", "code", "check", "gate runs", "failed", "median ratio",
                                  "can fail below", "median s", "target"], tablefmt="github", disable_numparse=True))


if __name__ == "__main__":
    main()
