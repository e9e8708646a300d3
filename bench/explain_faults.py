"""Does `perfkit explain` name the right cause? A fault suite, each fault against its unchanged twin.

    python bench/explain_faults.py --runs 3

Faults (each run is a fresh `python -m perfkit explain --vary ...`, default rule: rounds until the
SPS ratio is known to +-2%, at most 3 minutes, every block sampled by py-spy at 200 Hz, at least 30 s):
  stall        a user's env (bench/userenvs/forage.py, `--env forage:make`) against `make_slow`, whose
               `_reconcile_ledger` burns 30 us per env step: expected phase env, function
               `_reconcile_ledger`
  checkpoint   perfkit's arena with a checkpoint every epoch against none: expected phase
               checkpoint, a function of torch.save's (save / serialization / pickling / writing)
  wrapper      the `__getattribute__` curriculum wrapper against no wrapper: expected phase env and
               a frame of the wrapper's code (envs/curriculum.py)
  dispatch     the `__getattribute__` wrapper against the `__getattr__` one (the same curriculum
               logic): expected the wrapper's `__getattribute__`
  host-sync    a `.item()` every rollout step (`fault=host-sync`): expected phase forward, `_fault_host_sync`
  obs-copy     one more copy of each observation batch: expected phase copy, `_fault_obs_copy`
  half-minibatch  half the minibatch size: expected phase learn, and some function named
  scratch      `forage:make` against `make_scratch`, whose short method `_scratch_tally` allocates with
               `np.full` for every agent every step: expected phase env, numpy's `full` named with the
               caller `_scratch_tally` (a sampler that reads a running process can show it under
               `_observe`, called right after): the torn-stack column counts such samples
  twins        `forage:make` against `forage:make_twin` (the same code): expected no function named
It prints: fault, runs, top-ranked cause, correct?, share of the gap the phases beyond noise add up
to, share the named functions' self time accounts for, minutes per explain; the sampler's CPU; and
the sampler's cost in SPS (sessions sampled at --rate against unsampled ones, side by side).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
USERENVS = ROOT / "bench" / "userenvs"

FAULTS = {
    # name: (vary, expected top phase or None, substrings one of which the top function (or, for a
    # library frame, the caller it is reported with) must hold, or None for "no function may be named")
    "stall": (["--vary", "env=forage:make,forage:make_slow"], "env", ("_reconcile_ledger",)),
    "checkpoint": (["--vary", "checkpoint=off,epochs:1"], "checkpoint", ("save", "serializ", "pickle", "write")),
    # against no wrapper at all, the wrapper's whole step (its curriculum logic) is the change
    "wrapper": (["--vary", "wrapper=none,getattribute"], "env", ("envs/curriculum.py",)),
    # against the __getattr__ form, only the dispatch differs
    "dispatch": (["--vary", "wrapper=getattr,getattribute"], None, ("__getattribute__",)),
    "host-sync": (["--vary", "fault=none,host-sync"], "forward", ("_fault_host_sync",)),
    "obs-copy": (["--vary", "fault=none,obs-copy"], "copy", ("_fault_obs_copy",)),
    # the learner's extra optimizer steps are spread over torch's frames: any named function counts
    "half-minibatch": (["--vary", "fault=none,half-minibatch"], "learn", ("",)),
    "scratch": (["--vary", "env=forage:make,forage:make_scratch"], "env", ("full (numpy",)),
    "twins": (["--vary", "env=forage:make,forage:make_twin"], None, None),
}
# A fault whose named function must come with this caller (`via`), and the samples that tell a torn
# stack: leaf `full` in B's blocks whose nearest frame outside libraries is not `_scratch_tally`.
CALLER = {"scratch": "_scratch_tally"}


def run_one(fault: str, out: Path, args) -> dict:
    vary, phase, func = FAULTS[fault]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(USERENVS), os.environ.get("PYTHONPATH", "")]),
           "PERFKIT_BENCH_COST_US": str(args.stall_us), "PERFKIT_BENCH_SCRATCH": str(args.scratch)}
    cmd = [sys.executable, "-m", "perfkit", "explain", *vary, "--out", str(out), "--force",
           "--max-minutes", str(args.max_minutes), "--rate", str(args.rate), "--min-seconds", str(args.min_seconds),
           *(["--nonblocking"] if args.nonblocking else [])]
    if args.device:
        cmd += ["--device", args.device]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    minutes = (time.monotonic() - t0) / 60
    if proc.returncode != 0:
        return {"fault": fault, "error": proc.stderr[-800:], "minutes": minutes}
    rec = json.loads((out / "explain.json").read_text())
    ex = rec["explanations"][0]
    causes = [c["frame"] for c in ex["causes"]]
    moved = sorted((p for p in ex["phases"] if p["ci_low"] > 0 or p["ci_high"] < 0), key=lambda p: -abs(p["delta_us"]))
    top_phase = moved[0]["name"] if moved else None
    if func is None:
        correct = not causes
    else:
        top = causes[0] + " " + (ex["causes"][0].get("via") or "") if causes else ""
        correct = bool(causes) and any(f in top for f in func) and (phase is None or top_phase == phase)
        if fault in CALLER:
            correct = correct and CALLER[fault] in (ex["causes"][0].get("via") or "")
    gap = ex["gap"]["delta_us"]
    closure = sum(p["delta_us"] for p in moved) / gap if gap else float("nan")
    explained = (sum(c["inclusive" if c.get("by") == "inclusive" else "self"]["delta_us"] for c in ex["causes"]) / gap
                 if gap and causes else 0.0)
    return {"fault": fault, "top_cause": causes[0] if causes else "(none)", "top_phase": top_phase,
            "correct": correct, "closure": closure, "explained": explained, "minutes": minutes,
            "ratio": ex["ratio"], "ratio_ci": ex["ratio_ci"], "rounds": ex["rounds"],
            "sampler_cores": rec.get("sampler", {}).get("sampler_cores"),
            "gpu": {k: rec.get("gpu", {}).get(ex[k]) for k in ("a", "b")} if rec.get("gpu") else None,
            "gpu_notes": rec.get("gpu_notes", []), "via": ex["causes"][0].get("via") if causes else None,
            "torn": torn_share(out, ex["b"], CALLER[fault]) if fault in CALLER else None}


def torn_share(run: Path, b_label: str, caller: str) -> float | None:
    """Share of B's samples with numpy's `full` as the leaf whose nearest frame outside libraries
    is not `caller`, the only code that calls it: stacks a sampler read torn."""
    from perfkit.commands.explain import is_library, pairs_from_compare
    from perfkit.records.compare import CompareResult

    result = CompareResult.load(run / "sps.json")
    right = wrong = 0.0
    for _, blk in pairs_from_compare(result, result.variants[0], b_label, run):
        for stack, n in (blk.stacks or {}).items():
            if stack[-1].startswith("full (numpy"):
                near = next((f for f in reversed(stack[:-1]) if not is_library(f)), "")
                right, wrong = (right + n, wrong) if caller in near else (right, wrong + n)
    return wrong / (right + wrong) if right + wrong else None


def gpu_table(results) -> list[str]:
    """On CUDA: the GPU rows' B - A per run (one torch.profiler trace per variant, read by HTA)."""
    lines = ["| fault | run | Δ GPU idle waiting for the host, µs/agent-step | Δ GPU kernels, µs/agent-step "
             "| Δ CUDA syncs per rollout step | Δ kernels per rollout step |", "|---|---|---|---|---|---|"]
    for k, r in enumerate(results):
        g = r.get("gpu")
        if not g or not g["a"] or not g["b"]:
            continue
        a, b = g["a"], g["b"]
        lines.append(f"| {r['fault']} | {k + 1} | {b['idle_us']['host_wait'] - a['idle_us']['host_wait']:+.3f} | "
                     f"{b['kernel_us'] - a['kernel_us']:+.3f} | "
                     f"{b['syncs_per_rollout_step'] - a['syncs_per_rollout_step']:+.2f} | "
                     f"{b['kernels_per_rollout_step'] - a['kernels_per_rollout_step']:+.1f} |")
    return lines if len(lines) > 2 else []


def overhead(args) -> str:
    """SPS of sessions sampled at --rate over unsampled ones: the same two twins, the same fixed
    time, alternating which runs first; a paired interval over the pairs."""
    import math

    from perfkit.core import stats
    from perfkit.records.compare import CompareResult

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(USERENVS), os.environ.get("PYTHONPATH", "")])}
    common = ["--vary", "env=forage:make,forage:make_twin", "--precision", "0.001", "--max-minutes",
              str(args.overhead_minutes), "--force"]
    tmp = Path(tempfile.mkdtemp(prefix="explain-overhead-"))
    logs = []
    for k in range(args.overhead_pairs):
        sps = {}
        for sampled in ((False, True) if k % 2 == 0 else (True, False)):
            out = tmp / f"{k}-{sampled}"
            cmd = [sys.executable, "-m", "perfkit", "explain" if sampled else "compare", *common, "--out", str(out)]
            if sampled:
                cmd += ["--rate", str(args.rate), *(["--nonblocking"] if args.nonblocking else [])]
            subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=True)
            r = CompareResult.load(out / "sps.json")
            sps[sampled] = math.exp(sum(math.log(x) for v in r.variants for x in r.sps(v))
                                    / sum(len(r.sps(v)) for v in r.variants))
        logs.append(math.log(sps[True] / sps[False]))
        print(f"overhead pair {k + 1}: sampled/unsampled {sps[True] / sps[False]:.4f}", file=sys.stderr)
    c = stats.compare_log_ratios(logs)
    mode = "non-blocking" if args.nonblocking else "blocking"
    return (f"sampling every block at {args.rate} Hz, {mode}: SPS {c.ratio:.4f}x unsampled, 95% CI [{c.ci_low:.4f}, "
            f"{c.ci_high:.4f}] ({len(logs)} pairs of {args.overhead_minutes:g}-minute sessions)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--faults", default=",".join(FAULTS))
    ap.add_argument("--max-minutes", type=float, default=3.0)
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--min-seconds", type=float, default=30.0)
    ap.add_argument("--device", default=None, help="cuda: also the GPU rows (a torch.profiler trace per variant)")
    ap.add_argument("--keep", default=None, help="keep each explain's directory under this folder")
    ap.add_argument("--stall-us", type=float, default=30.0)
    ap.add_argument("--scratch", type=int, default=64, help="elements of the scratch fault's np.full")
    ap.add_argument("--nonblocking", action="store_true", help="sample as explain --nonblocking does")
    ap.add_argument("--out", default=str(ROOT / "results" / "explain-faults"))
    ap.add_argument("--overhead-pairs", type=int, default=4, help="pairs of sessions timing the sampler (0: skip)")
    ap.add_argument("--overhead-minutes", type=float, default=0.75)
    args = ap.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="explain-faults-"))
    results = []
    for fault in args.faults.split(","):
        for k in range(args.runs):
            r = run_one(fault, tmp / f"{fault}-{k}", args)
            results.append(r)
            print(f"{fault} #{k + 1}: " + (f"ERROR {r['error']}" if "error" in r else
                  f"top cause {r['top_cause']} (phase {r['top_phase']}), correct {r['correct']}, "
                  f"ratio {r['ratio']:.3f}, {r['rounds']} rounds, {r['minutes']:.2f} min"), file=sys.stderr)
            (out_dir / "runs.json").write_text(json.dumps(results, indent=1))
    mode = "non-blocking" if args.nonblocking else "blocking"
    print(f"py-spy at {args.rate} Hz, {mode}\n")
    print("| fault | runs | top-ranked cause (most runs) | correct | phases beyond noise / gap (median) "
          "| named functions / gap (median) | torn stacks (median) | minutes per explain (median) |")
    print("|---|---|---|---|---|---|---|---|")
    for fault in args.faults.split(","):
        rs = [r for r in results if r["fault"] == fault and "error" not in r]
        errors = sum(1 for r in results if r["fault"] == fault and "error" in r)
        if not rs:
            print(f"| {fault} | {errors} | (every run failed) | | | | | |")
            continue
        top = statistics.mode(f"`{r['top_cause']}`" + (f" via `{r['via']}`" if r.get("via") else "") for r in rs)
        torn = [r["torn"] for r in rs if r.get("torn") is not None]
        print(f"| {fault} | {len(rs)}{f' (+{errors} failed)' if errors else ''} | {top} | "
              f"{sum(r['correct'] for r in rs)}/{len(rs)} | {statistics.median(r['closure'] for r in rs):.2f} | "
              f"{statistics.median(r['explained'] for r in rs):.2f} | "
              f"{f'{statistics.median(torn):.1%}' if torn else '–'} | "
              f"{statistics.median(r['minutes'] for r in rs):.2f} |")
    gpu = gpu_table([r for r in results if "error" not in r])
    if gpu:
        print("\nGPU rows, B - A:\n" + "\n".join(gpu))
    notes = sorted({n for r in results for n in r.get("gpu_notes", [])})
    if notes:
        print("\n" + "\n".join(f"note: {n}" for n in notes))
    cores = [r["sampler_cores"] for r in results if r.get("sampler_cores") is not None]
    if cores:
        print(f"\npy-spy at {args.rate} Hz used {statistics.median(cores):.3f} core (median over runs)")
    if args.overhead_pairs:
        print(overhead(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
