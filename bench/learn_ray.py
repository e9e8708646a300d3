"""`perfkit learn --backend ray` against the same learn run locally, on simulated nodes of this machine.

    python bench/learn_ray.py --seeds 6 --steps 60000

Starts a Ray cluster of this machine (a head that runs no seeds and `--nodes` nodes of `--node-cpus`
CPUs each: `ray.cluster_utils.Cluster`), then runs one `perfkit learn --cmd` twice, in turns: with
`--backend ray` on that cluster, and locally with `--parallel` equal to the cluster's slots. The
trainer is `tests/trainers/learner.py` (prints CleanRL-style `global_step=`, `episodic_return=`; a
second command learns at a quarter of the rate). Printed per run: wall time, seeds per minute, the
verdict and the difference, and where the seeds ran; on one machine the cluster cannot be faster,
so what this shows is that the answer is the same and what the cluster costs per seed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEARNER = ROOT / "tests" / "trainers" / "learner.py"


def learn(out: Path, seeds: int, steps: int, extra: list[str]) -> dict:
    cmd = f"{sys.executable} {LEARNER} --seed {{seed}}"
    argv = [sys.executable, "-m", "perfkit", "learn", "--cmd", f"base={cmd}", "--cmd", f"slow={cmd} --lr 0.25",
            "--steps", str(steps), "--seeds", str(seeds), "--progress", "cleanrl", "--metric", "episodic_return",
            "--out", str(out), "--force", *extra]
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit(f"learn failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    sys.path.insert(0, str(ROOT))
    from perfkit.records.learning import LearnResult

    r = LearnResult.load(out / "learn.json")
    c = r.compare("slow", "episodic_return")
    trials = [t for ts in r.trials.values() for t in ts]
    where = sorted({t.node.get("host", "?") + "/" + str(t.node.get("id", ""))[:8] for t in trials if t.node})
    return {"wall_s": wall, "seeds": len(trials), "verdict": c.verdict, "diff": c.difference.value,
            "lo": c.difference.low, "hi": c.difference.high, "parallel": r.parallel, "nodes": where,
            "seed_s": sorted(t.process_s or 0 for t in trials)[len(trials) // 2]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=60_000)
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--node-cpus", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="runs of each, in turns")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "learn-ray")
    args = ap.parse_args()
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster()
    rows = []
    try:
        c.add_node(num_cpus=0, include_dashboard=False)
        for _ in range(args.nodes):
            c.add_node(num_cpus=args.node_cpus)
        c.wait_for_nodes()
        slots = args.nodes * args.node_cpus
        for k in range(args.repeats):
            for backend in ("ray", "local"):
                extra = ["--backend", "ray", "--ray-address", c.address] if backend == "ray" else \
                    ["--parallel", str(slots)]
                r = learn(args.out / f"{backend}-{k}", args.seeds, args.steps, extra)
                rows.append({"backend": backend, **r})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()
    print("\n| backend | run | seeds side by side | seeds | wall s | seeds per minute | median s per seed | "
          "slow − base [95%] | verdict | where |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(rows):
        print(f"| {r['backend']} | {i // 2 + 1} | {r['parallel']} | {r['seeds']} | {r['wall_s']:.1f} | "
              f"{60 * r['seeds'] / r['wall_s']:.1f} | {r['seed_s']:.1f} | {r['diff']:+.1f} [{r['lo']:+.1f}, "
              f"{r['hi']:+.1f}] | {r['verdict']} | {f'{len(r["nodes"])} nodes' if r['nodes'] else 'this machine'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
