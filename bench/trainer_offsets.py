"""Are two built-in trainers of identical code offset from each other, and is the offset per build
or per process?

    python bench/trainer_offsets.py --seconds 30 --builds 8      # one process, 8 fresh builds
    python bench/trainer_offsets.py --seconds 40 --builds 12 --fresh --envs make,make_twin   # as compare builds them
    for i in 1 2 3 4 5; do python bench/trainer_offsets.py --seconds 50 --builds 1; done   # 5 processes

Each build makes two fresh trainers on a user-style env (`forage:make`, bench/userenvs) and runs
them in one process in rotating rounds (the session `compare` uses) for `--seconds`; construction
order alternates with the build. Printed per build: the mean log ratio B/A over batch means of one
rotation, with its standard error. If the builds' means spread more than their standard errors, a
trainer's own offset is missing from the one-process interval; at the end, the mean log ratio of
the trainer built second to the one built first (is construction order a bias?). `--fresh` builds
each pair in a fresh process (as `compare` runs its session); `--envs` names the two factories of
bench/userenvs/forage.py that a and b use (compare's twins are `make,make_twin`).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "userenvs"))

from perfkit.core.scenario import Scenario  # noqa: E402
from perfkit.engine.session import SessionSpec, run_session  # noqa: E402


def one_build(labels: list[str], envs: dict[str, str], seconds: float) -> tuple[float, float, int]:
    """Build the two trainers in `labels` order, run rounds for `seconds`: mean log(b/a) over batch
    means of one rotation, its standard error, and the rounds after warm-up."""
    variants = [{"label": lb, "scenario": Scenario.build(
        {"env": f"forage:{envs[lb]}", "wrapper": "none", "env-config": "deferred"}).to_dict()} for lb in labels]
    s = run_session(SessionSpec(variants=variants, seconds=seconds))
    lr = [math.log(b["sps"]["b"] / b["sps"]["a"]) for b in s.blocks[s.warmup_rounds:]]
    batches = [statistics.fmean(lr[i:i + 2]) for i in range(0, len(lr) - 1, 2)]
    return statistics.fmean(batches), statistics.stdev(batches) / math.sqrt(len(batches)), len(lr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="rounds per build")
    ap.add_argument("--builds", type=int, default=8)
    ap.add_argument("--fresh", action="store_true", help="each build in a fresh process")
    ap.add_argument("--envs", default="make,make", help="the forage factories of a and b")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: one build, labels "a,b" or "b,a"
    args = ap.parse_args()
    ea, eb = args.envs.split(",")
    envs = {"a": ea, "b": eb}
    if args.one:
        print(json.dumps(one_build(args.one.split(","), envs, args.seconds)))
        return 0
    print(f"a = forage:{ea}, b = forage:{eb}, {'a fresh process per build' if args.fresh else 'one process'}\n")
    print("| build | built first | rounds | log(b/a) | se |\n|---|---|---|---|---|")
    means, ses, second = [], [], []
    for g in range(args.builds):
        labels = ["a", "b"] if g % 2 == 0 else ["b", "a"]
        if args.fresh:
            out = subprocess.run([sys.executable, __file__, "--one", ",".join(labels), "--envs", args.envs,
                                  "--seconds", str(args.seconds)], capture_output=True, text=True, check=True)
            m, se, n = json.loads(out.stdout.strip().splitlines()[-1])
        else:
            m, se, n = one_build(labels, envs, args.seconds)
        means.append(m)
        ses.append(se)
        second.append(m if labels[0] == "a" else -m)  # log(built second / built first)
        print(f"| {g + 1} | {labels[0]} | {n} | {m:+.4f} | {se:.4f} |", flush=True)
    if len(means) > 1:
        print(f"\nsd of the builds' means {statistics.stdev(means):.4f}; their median se {statistics.median(ses):.4f}")
        se_mean = statistics.stdev(second) / math.sqrt(len(second))
        print(f"log(built second / built first): mean {statistics.fmean(second):+.4f}, se {se_mean:.4f}; "
              f"log(b / a): mean {statistics.fmean(means):+.4f}, se {statistics.stdev(means) / math.sqrt(len(means)):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
