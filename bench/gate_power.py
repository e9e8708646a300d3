"""Does `perfkit gate` catch real regressions and ignore noise? Measure it.

    python bench/gate_power.py --runs 20

Each gate run is a fresh process that times four rollout workloads side by side: the unchanged
code twice (`inject-cost-us=0` and `=0.0`, identical behaviour) and the code with a busy-wait in
`_injected_cost` sized to cut SPS by 5% and by 10% (calibrated first, on this machine). Every run
evaluates, against `inject-cost-us=0`:
  relative checks   sps(X) >= 0.98 * sps(inject-cost-us=0)        (same run, interleaved)
  baseline checks   sps(X) >= 0.98 * baseline                     (baseline: 5 earlier processes,
                                                                    normalised by the reference workload)
and the script prints how often each fails: the false-alarm rate (X unchanged) and the power
(X 5% / 10% slower), with the time one gate run took.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perfkit import gate as g  # noqa: E402

REL, BASE = 0.98, 0.98
BASE_LABEL = "inject-cost-us=0"


def _labels(args) -> list[str]:
    return [BASE_LABEL, "inject-cost-us=0.0", f"inject-cost-us={args.c5}", f"inject-cost-us={args.c10}"]


def make_baseline(args) -> None:
    """The baseline is measured with the same workloads in the process as the gate runs (a
    workload timed alone runs faster, with warmer caches, than one rotating with three others),
    in 5 fresh processes, as `perfkit gate --update-baseline` does."""
    g.write_baseline(Path(args.baseline),
                     [g.measure_in_subprocess(_labels(args), args.rounds, args.block_steps) for _ in range(5)])


def one(args) -> None:
    labels = _labels(args)
    t0 = time.perf_counter()
    m = g.measure(labels, args.rounds, args.block_steps)
    baseline = json.loads(Path(args.baseline).read_text())
    out = {}
    for name, label in (("unchanged", labels[1]), ("5% slower", labels[2]), ("10% slower", labels[3])):
        rel = g.evaluate(g.Check(f"rel {name}", label, REL, BASE_LABEL), m.samples, m.reference)
        base = g.evaluate(g.Check(f"base {name}", label, BASE, g.BASELINE), m.samples, m.reference,
                          {"runs": [{"scores": {label: run["scores"][BASE_LABEL]}} for run in baseline["runs"]]})
        out[name] = {"relative": rel.status, "baseline": base.status, "rel_ratio": rel.ratio,
                     "base_ratio": base.ratio}
    out["seconds"] = time.perf_counter() - t0
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--block-steps", type=int, default=100)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--make-baseline", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--c5", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--c10", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--baseline", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return one(args)
    if args.make_baseline:
        return make_baseline(args)

    cal = g.measure([BASE_LABEL, "inject-cost-us=0.0"], rounds=10, block_steps=args.block_steps)
    sps = float(np.median(cal.samples[BASE_LABEL]))
    step_s = 96 / sps  # one vector step (4 arenas x 24 agents)
    cost = {d: 1e6 * step_s * d / (1 - d) / 4 for d in (0.05, 0.10)}  # per env step, 4 env steps per vec step
    print(f"calibration: {sps:,.0f} agent-steps/s -> inject {cost[0.05]:.2f} us (5%), {cost[0.10]:.2f} us (10%)",
          file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        base_path = Path(tmp) / "baseline.json"
        common = ["--c5", f"{cost[0.05]:.3f}", "--c10", f"{cost[0.10]:.3f}", "--baseline", str(base_path),
                  "--rounds", str(args.rounds), "--block-steps", str(args.block_steps)]
        subprocess.run([sys.executable, __file__, "--make-baseline", *common], check=True, capture_output=True)
        runs = []
        for k in range(args.runs):
            proc = subprocess.run([sys.executable, __file__, "--one", *common], capture_output=True, text=True,
                                  check=True)
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"run {k + 1}/{args.runs}: " + ", ".join(f"{n}: {r['relative']}/{r['baseline']}"
                                                        for n, r in runs[-1].items() if n != "seconds"),
                  file=sys.stderr)
    rows = []
    targets = {"unchanged": "fails <= 5% (1 in 20)", "5% slower": "caught >= 50%", "10% slower": "caught >= 90%"}
    for name in ("unchanged", "5% slower", "10% slower"):
        for kind, thr in (("relative", REL), ("baseline", BASE)):
            fails = sum(r[name][kind] == "FAIL" for r in runs)
            ratios = [r[name]["rel_ratio" if kind == "relative" else "base_ratio"] for r in runs]
            rows.append([name, f"{kind} (>= {thr} x)", len(runs), f"{fails}/{len(runs)} = {100 * fails / len(runs):.0f}%",
                         f"{np.median(ratios):.3f}", targets[name]])
    print(tabulate(rows, headers=["code", "check", "gate runs", "failed", "median ratio", "target"], tablefmt="github"))
    secs = [r["seconds"] for r in runs]
    print(f"\none gate run (4 workloads, {args.rounds} rounds x {args.block_steps} steps, fresh process): "
          f"median {np.median(secs):.1f} s of measuring, plus ~3 s of start-up")


if __name__ == "__main__":
    main()
