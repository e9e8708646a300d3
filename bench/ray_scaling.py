"""How a compare sweep scales on the Ray backend, and what the driver costs per trial.

    python bench/ray_scaling.py --nodes 1,2 --rounds 4 --seconds 3

The same sweep (a user's env, `--env forage:make` against `forage:make_slow`, from bench/userenvs,
whose env step costs `--cost-us` more: about 5% of SPS) runs three ways, one after the other on
this machine:
  - locally (`run_compare` with fresh processes, the default backend);
  - on a simulated Ray cluster of 1 node, then of 2 nodes (`ray.cluster_utils.Cluster`, a head
    with no CPUs and N nodes of `--num-cpus 1` each, so each node runs one trial at a time).
For each: trials, wall time of the sweep (from the call, runners' start included, to the last
result; the cluster's start is shown apart), trials per minute, speed-up against local, the driver's time per
trial around the trial process (Ray dispatch and result transfer: `dispatch_s`), the trial
process's own wall time, and the measured ratio with its interval. Writes every run's sps.json
under --out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
USERENVS = ROOT / "bench" / "userenvs"


def plan(rounds: int, seconds: float):
    from perfkit.core.scenario import Scenario, plan_variants
    from perfkit.engine.local import SubprocessRunner
    from perfkit.engine.rounds import StopRule

    base = Scenario.build({"wrapper": "none"}, seed=1)
    variants = plan_variants(base, [("env", ["forage:make", "forage:make_slow"])])
    return variants, StopRule(rounds=rounds, reruns=0), SubprocessRunner(seconds=seconds)


def row(name: str, nodes: int | str, result, wall: float, startup: float | None, local_rate: float | None):
    trials = [t for ts in result.trials.values() for t in ts if t.status == "ok"]
    rate = 60 * len(trials) / wall
    dispatch = [t.dispatch_s for t in trials if t.dispatch_s is not None]
    c = result.comparisons().get(result.variants[1])
    return [name, nodes, len(trials), f"{startup:.1f}" if startup is not None else "–", f"{wall:.1f}", f"{rate:.1f}",
            f"{rate / local_rate:.2f}" if local_rate else "1.00",
            f"{1000 * statistics.median(dispatch):.1f}" if dispatch else "–",
            f"{statistics.median(t.process_s for t in trials):.2f}",
            f"{c.ratio:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}]" if c else "–"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", default="1,2", help="simulated cluster sizes to run, comma-separated")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench-ray-scaling")
    ap.add_argument("--cost-us", type=float, default=6.0, help="forage:make_slow's extra cost per env step")
    args = ap.parse_args()
    # Read by forage:make_slow in every trial process: the local ones inherit it, and the simulated
    # nodes (started below, from this process) pass it on to theirs.
    os.environ["PERFKIT_BENCH_COST_US"] = str(args.cost_us)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(USERENVS), os.environ.get("PYTHONPATH")) if p)
    sys.path.insert(0, str(USERENVS))
    from tabulate import tabulate

    from perfkit.engine.local import run_compare

    variants, rule, runner = plan(args.rounds, args.seconds)
    rows = []
    out = args.out / "local"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    local = run_compare(variants, rule, runner, out)
    wall = time.monotonic() - t0
    local_rate = 60 * sum(len(local.ok_trials(v)) for v in local.variants) / wall
    rows.append(row("local", "–", local, wall, None, None))
    print(f"local: {wall:.1f} s", file=sys.stderr)
    for n in [int(x) for x in args.nodes.split(",")]:
        rows.append(run_on_cluster(n, variants, rule, runner, args.out / f"ray-{n}-nodes", local_rate))
    headers = ["backend", "nodes", "trials", "cluster start s", "sweep wall s", "trials/min", "vs local",
               "driver ms/trial (median)", "trial process s (median)", "make_slow / make [95% CI]"]
    print(f"\n{args.rounds} rounds x 2 variants, --seconds {args.seconds:g} per trial, "
          f"env forage:make vs forage:make_slow (+{args.cost_us:g} us per env step; bench/userenvs)\n")
    print(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))


def run_on_cluster(n: int, variants, rule, runner, out: Path, local_rate: float):
    import ray
    from ray.cluster_utils import Cluster

    from perfkit.engine.cluster import run_compare_ray

    t0 = time.monotonic()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(n):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
    startup = time.monotonic() - t0
    out.mkdir(parents=True, exist_ok=True)
    first: list[float] = []
    try:
        t0 = time.monotonic()
        result = run_compare_ray(variants, rule, runner, out, cluster.address,
                                 on_dispatch=lambda *a: first.append(time.monotonic()) if not first else None)
        wall = time.monotonic() - t0
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(f"ray, {n} node(s): {wall:.1f} s (runners started in {first[0] - t0:.1f} s)", file=sys.stderr)
    return row("ray", n, result, wall, startup, local_rate)


if __name__ == "__main__":
    main()
