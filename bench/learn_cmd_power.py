"""Does `perfkit learn --cmd` call a learning fault in a trainer no one here wrote, and leave twins alone?

    python bench/learn_cmd_power.py --ppo PATH/TO/cleanrl/ppo.py --python VENV/bin/python \\
        --cases twins,lr4 --runs 3 --steps 60000 --seeds 5

The trainer is CleanRL's single-file `ppo.py` (github.com/vwxyzjn/cleanrl), unmodified, on
Gymnasium's CartPole-v1, in a venv of its own (`python -m venv --system-site-packages V &&
V/bin/pip install gymnasium==0.29.1 tyro tensorboard`). Each run is a fresh `perfkit learn --cmd`
with `--seed {seed} --total-timesteps STEPS` in the command (run k trains seeds 100k + 1, ...:
CleanRL is deterministic, so repeating seeds would repeat a run), in a scratch folder (CleanRL
writes its TensorBoard files under ./runs). Cases:
- twins: the same command twice with `--pairing none` (each variant its own seeds: with CleanRL's
  deterministic torch, paired twins would be identical runs); every verdict is false.
- lr4: the learning rate quartered (`--learning-rate 6.25e-5` against the default 2.5e-4), paired
  by seed: a learning fault; "learns worse" is right.
Prints one row per case: verdicts, the difference's median and interval width, minutes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from perfkit.records.learning import LearnResult  # noqa: E402


def run_one(case: str, args, out: Path, scratch: Path, first_seed: int) -> dict:
    base = f"{shlex.quote(args.python)} {shlex.quote(args.ppo)} --seed {{seed}} --total-timesteps {args.steps}"
    argv = [sys.executable, "-m", "perfkit", "learn", "--progress", "cleanrl", "--metric", "episodic_return",
            "--steps", str(args.steps), "--seeds", str(args.seeds), "--seed", str(first_seed), "--out", str(out),
            "--force"]
    if case == "twins":
        argv += ["--cmd", f"a={base}", "--cmd", f"b={base}", "--pairing", "none"]
    else:
        argv += ["--cmd", f"base={base}", "--cmd", f"lr4={base} --learning-rate 6.25e-5"]
    if args.parallel:
        argv += ["--parallel", str(args.parallel)]
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=scratch, check=False)
    minutes = (time.monotonic() - t0) / 60
    if not (out / "learn.json").exists():
        return {"error": proc.stderr[-2000:], "minutes": minutes}
    result = LearnResult.load(out / "learn.json")
    other = result.variants[1]
    c = result.compare(other, "episodic_return")
    return {"verdict": c.verdict, "diff": c.difference.value, "low": c.difference.low, "high": c.difference.high,
            "reference": c.reference.value, "value": c.value.value, "seeds": c.seeds, "minutes": minutes,
            "exit": proc.returncode, "error": None if proc.returncode == 0 else proc.stderr[-1500:]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ppo", required=True, help="CleanRL's ppo.py")
    ap.add_argument("--python", required=True, help="the Python of CleanRL's venv")
    ap.add_argument("--cases", default="twins,lr4")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=60_000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--parallel", type=int, default=None)
    ap.add_argument("--out", default=str(ROOT / "results" / "learn-cmd-power"))
    args = ap.parse_args()
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="learn-cmd-power-"))
    rows = []
    for k in range(args.runs):
        for case in args.cases.split(","):  # cases alternate, so a slow hour hits both
            # each run its own seeds: CleanRL is deterministic, so the same seeds would repeat a run exactly
            r = run_one(case, args, tmp / f"{case}-{k}", tmp, first_seed=1 + 100 * k)
            r.update(case=case, run=k)
            rows.append(r)
            print(f"{case} #{k + 1}: " + (f"ERROR {r['error']}" if "verdict" not in r else
                  f"{r['verdict']}, B - A {r['diff']:+.1f} [{r['low']:+.1f}, {r['high']:+.1f}] (A {r['reference']:.1f}), "
                  f"{r['seeds']} seeds, {r['minutes']:.1f} min"), file=sys.stderr, flush=True)
            (out_root / "runs.json").write_text(json.dumps(rows, indent=1))
    print("| case | runs | learns worse / no significant difference / learns better | B − A (median) "
          "| interval half-width (median) | A's final return (median) | minutes per run (median) |")
    print("|---|---|---|---|---|---|---|")
    for case in args.cases.split(","):
        rs = [r for r in rows if r["case"] == case and "verdict" in r]
        v = [r["verdict"] for r in rs]
        if not rs:
            print(f"| {case} | 0 | | | | | |")
            continue
        print(f"| {case} | {len(rs)} | {v.count('learns worse')} / {v.count('no significant difference')} / "
              f"{v.count('learns better')} | {statistics.median(r['diff'] for r in rs):+.1f} | "
              f"{statistics.median((r['high'] - r['low']) / 2 for r in rs):.1f} | "
              f"{statistics.median(r['reference'] for r in rs):.1f} | "
              f"{statistics.median(r['minutes'] for r in rs):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
