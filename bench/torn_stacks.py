"""How often does py-spy read a torn stack, paused (blocking) or not?

    python bench/torn_stacks.py --seconds 20

A torn stack is one the program never had: py-spy reads a running process frame by frame, and a
short function that returns mid-read leaves its slot to the next call, so its callee appears under
the wrong caller. There is no ground truth per sample, so the rate is estimated against a paused
reference: for each workload, three trials run under py-spy at --rate: blocking for three times as
long (the reference), non-blocking, and blocking again (the control). A steady-state sample is counted as torn when its
stack holds a caller -> callee edge that the reference never showed. The control's rate is the
measure's floor: edges too rare to appear in one reference run. Workloads:
  arena    perfkit's arena with the `__getattribute__` curriculum wrapper (many short frames)
  scratch  a user's env (bench/userenvs/forage.py, `make_scratch`) whose short `_scratch_tally`
           calls np.full for every agent every step
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
USERENVS = ROOT / "bench" / "userenvs"

WORKLOADS = {"arena": ["--wrapper", "getattribute"], "scratch": ["--env", "forage:make_scratch"]}


def sample(workload: str, blocking: bool, seconds: float, out: Path, args) -> dict[tuple[str, ...], float]:
    """One `perfkit run` trial under py-spy; its steady-state stacks (warm-up epochs left out)."""
    from perfkit.commands.explain import split_by_block
    from perfkit.core.folded import read_folded
    from perfkit.engine.profilers.pyspy import Sampling

    folded = out / "trial.folded"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(USERENVS), os.environ.get("PYTHONPATH", "")]),
           "PERFKIT_BENCH_SCRATCH": str(args.scratch)}
    cmd = [*Sampling(args.rate, blocking).prefix(folded, subprocesses=False), sys.executable, "-m", "perfkit",
           "run", *WORKLOADS[workload], "--seconds", str(seconds), "--out", str(out / "run"), "--force"]
    subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    steady: dict[tuple[str, ...], float] = {}
    for stacks in split_by_block(read_folded(folded, torn_ok=True).stacks).values():
        for stack, n in stacks.items():
            steady[stack] = steady.get(stack, 0.0) + n
    return steady


def edges(stack: tuple[str, ...]) -> set[tuple[str, str]]:
    return set(zip(stack, stack[1:]))


def torn_rate(stacks: dict[tuple[str, ...], float], known: set[tuple[str, str]]) -> float:
    total = sum(stacks.values())
    return sum(n for s, n in stacks.items() if edges(s) - known) / total if total else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="training seconds per trial")
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--scratch", type=int, default=64, help="elements of the scratch workload's np.full")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="torn-stacks-"))
    print(f"py-spy at {args.rate} Hz, {args.seconds:g} s trials\n")
    print("| workload | samples (reference) | torn, non-blocking | torn, blocking (control: the floor) |")
    print("|---|---|---|---|")
    for workload in args.workloads.split(","):
        runs = {}
        for name, blocking, seconds in (("reference", True, 3 * args.seconds), ("nonblocking", False, args.seconds),
                                        ("control", True, args.seconds)):
            runs[name] = sample(workload, blocking, seconds, tmp / f"{workload}-{name}", args)
            print(f"{workload} {name}: {sum(runs[name].values()):.0f} steady samples", file=sys.stderr)
        known = set().union(*(edges(s) for s in runs["reference"]))
        print(f"| {workload} | {sum(runs['reference'].values()):.0f} | "
              f"{torn_rate(runs['nonblocking'], known):.1%} | {torn_rate(runs['control'], known):.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
