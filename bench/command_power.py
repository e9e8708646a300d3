"""Does `perfkit compare --cmd` give true verdicts on trainers no one on this project wrote?

    python bench/command_power.py --cleanrl-ppo PATH/TO/cleanrl/ppo.py --cleanrl-python VENV/bin/python \\
        --trainers cleanrl,own --cases twins,5,2 --conditions quiet,busy --runs 10

Trainers, run unmodified, on a user's env (bench/userenvs/audited_cartpole.py: Gymnasium's
CartPole behind a wrapper whose `_audit_observation` burns `HIDDEN_COST_US` per env step):
- cleanrl: CleanRL's single-file `ppo.py` (github.com/vwxyzjn/cleanrl), in a venv of its own
  (it pins gymnasium 0.29.1; pufferlib-core needs gymnasium 1.x):
  `python -m venv --system-site-packages V && V/bin/pip install gymnasium==0.29.1 tyro tensorboard`;
  its env is picked through Gymnasium's `module:EnvId` form, `--env-id audited_cartpole:AuditedCartPole-v1`.
  Progress: the built-in `cleanrl` recogniser (`global_step=N`).
- puffer: PufferLib's own trainer (`pufferlib.pufferl.PuffeRL`, unmodified) driven by a user's
  short script, bench/userenvs/puffer_trainer.py, whose logger prints PuffeRL's log dicts as JSON:
  the built-in `puffer` recogniser (`"agent_steps": N`).
- own: bench/userenvs/own_trainer.py, printing `[iter 12] 24,576 frames | return 23.1`, which no
  recogniser knows: `--progress '([\\d,]+) frames'`.

Cases: twins (the same command twice: every verdict is false) and hidden costs worth 5% and 2%
of SPS, set from a calibration run of each trainer (its SPS with no cost). The truth of each run
is computed from that run's own reference SPS: a cost of c seconds per counted step makes the
ratio 1 / (1 + c * SPS). Each run is a fresh `perfkit compare --cmd ... --precision P
--max-minutes M` with the defaults otherwise (commands in turns, 10 s warm-up each); "busy" starts
a process spinning on one core for the run. Runs go to results/command-power/runs.json; the table
is printed as markdown.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from perfkit.records.compare import CompareResult  # noqa: E402

USERENVS = ROOT / "bench" / "userenvs"
OWN_PROGRESS = r"([\d,]+) frames"


def effective_cost_us(cost_us: float, calls: int = 20_000) -> float:
    """What one call of the wrapper's `_audit_observation(cost)` really takes, in µs: the busy loop
    overshoots its target by about one turn, and the call itself costs a fraction of a µs, which is
    most of a cost worth 2% of a fast trainer's step (under 1 µs)."""
    sys.path.insert(0, str(USERENVS))
    from audited_cartpole import _audit_observation

    seconds = cost_us * 1e-6
    best = float("inf")
    for _ in range(3):  # the least disturbed of three
        t0 = time.perf_counter()
        for _ in range(calls):
            _audit_observation(seconds)
        best = min(best, (time.perf_counter() - t0) / calls)
    return best * 1e6


def truth(cost_us: float | None, ref_sps: float | None, cost_eff: dict[float, float]) -> float:
    """The true ratio of a run: a cost of c seconds per counted step makes it 1 / (1 + c * SPS),
    with c the call's measured time and SPS the run's own reference."""
    if cost_us is None or ref_sps is None:
        return 1.0
    c = cost_eff.get(round(cost_us, 4), cost_us)
    return 1 / (1 + c * 1e-6 * ref_sps)


def trainer_command(name: str, args) -> tuple[str, list[str]]:
    """The command line and perfkit's progress options for a trainer."""
    if name == "cleanrl":
        if not args.cleanrl_ppo:
            sys.exit("--trainers cleanrl needs --cleanrl-ppo PATH (CleanRL's ppo.py) and --cleanrl-python")
        cmd = (f"{shlex.quote(args.cleanrl_python)} {shlex.quote(args.cleanrl_ppo)} "
               "--env-id audited_cartpole:AuditedCartPole-v1 --total-timesteps 1000000000")
        return cmd, ["--progress", "cleanrl", "--metric", "episodic_return"]
    if name == "own":
        return f"{shlex.quote(sys.executable)} {USERENVS / 'own_trainer.py'}", ["--progress", OWN_PROGRESS]
    if name == "puffer":
        return (f"{shlex.quote(sys.executable)} {USERENVS / 'puffer_trainer.py'} --quiet-dashboard",
                ["--progress", "puffer"])
    sys.exit(f"unknown trainer {name!r}; choose from cleanrl, own, puffer")


def compare(trainer: str, cost_us: float | None, args, out: Path, busy: bool = False, minutes: float = 3.0,
            precision: float | None = None, processes: int = 1) -> dict:
    """One `perfkit compare --cmd`: the trainer against itself with HIDDEN_COST_US (None: twins)."""
    cmd, prog = trainer_command(trainer, args)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(USERENVS), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-m", "perfkit", "compare", *prog, "--out", str(out), "--force",
            "--max-minutes", str(minutes), "--processes", str(processes)]
    if cost_us is None:
        argv += ["--cmd", f"a={cmd}", "--cmd", f"b={cmd}"]
    else:
        argv += ["--cmd", f"{trainer}={cmd}", "--vary", f"env:HIDDEN_COST_US=0,{cost_us:.2f}"]
    if precision is not None:
        argv += ["--precision", str(precision)]
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    t0 = time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=out.parent)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    mins = (time.monotonic() - t0) / 60
    if not (out / "sps.json").exists():
        return {"error": proc.stderr[-2000:], "minutes": mins, "exit": proc.returncode}
    result = CompareResult.load(out / "sps.json")
    ref, other = result.summaries()[:2]
    c = other.vs_reference
    return {"ratio": c.ratio if c else None, "ci_low": c.ci_low if c else None, "ci_high": c.ci_high if c else None,
            "verdict": c.verdict if c else None, "minutes": mins, "stop": result.stopping.get("reason"),
            "exit": proc.returncode, "ref_sps": ref.sps.geomean if ref.sps else None,
            "rounds": len(result.blocks), "block_seconds": result.stopping.get("block_seconds"),
            "perfkit_cores": result.stopping.get("perfkit_cores"), "processes": processes,
            "set_ratios": set_ratios(result, other.label),
            "error": None if proc.returncode == 0 else proc.stderr[-2000:]}


def set_ratios(result: CompareResult, label: str) -> list[float]:
    """Per set of processes, the geometric mean of its steady rounds' ratios (B / A)."""
    from perfkit.core.stats import block_log_ratios

    groups = block_log_ratios(result.blocks, result.variants[0], label, result.warmup_rounds, 1)
    return [math.exp(sum(v) / len(v)) for _, v in sorted(groups.items()) if v]


def explain(trainer: str, cost_us: float, args, out: Path, minutes: float) -> dict:
    """One `perfkit explain --cmd` of the trainer against itself with the cost: which function
    does it name first?"""
    cmd, prog = trainer_command(trainer, args)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(USERENVS), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-m", "perfkit", "explain", *prog, "--out", str(out), "--force", "--max-minutes",
            str(minutes), "--cmd", f"{trainer}={cmd}", "--vary", f"env:HIDDEN_COST_US=0,{cost_us:.2f}"]
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=out.parent)
    mins = (time.monotonic() - t0) / 60
    path = out / "explain.json"
    if not path.exists():
        return {"first": None, "minutes": mins, "error": proc.stderr[-2000:]}
    record = json.loads(path.read_text())
    first = None
    for e in record.get("explanations", []):
        causes = e.get("causes") or []  # the functions that changed beyond noise, largest first
        if causes:
            first = causes[0]["frame"]
    return {"first": first, "minutes": mins, "error": None if proc.returncode == 0 else proc.stderr[-2000:]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trainers", default="cleanrl,own", help="cleanrl, own and/or puffer")
    ap.add_argument("--cases", default="twins,5,2", help="twins and/or hidden costs in percent of SPS")
    ap.add_argument("--conditions", default="quiet,busy")
    ap.add_argument("--runs", default="10", help="runs per cell: N, or per case, e.g. twins=3,5=3,2=2")
    ap.add_argument("--precision", type=float, default=0.005)
    ap.add_argument("--minutes", default="twins=3,5=3,2=5", help="--max-minutes per case")
    ap.add_argument("--cleanrl-ppo", default=None, help="CleanRL's ppo.py")
    ap.add_argument("--cleanrl-python", default=sys.executable, help="the Python of CleanRL's venv")
    ap.add_argument("--processes", default="1",
                    help="compare --processes: a count, or several (e.g. 1,3) run alternately, cell by cell")
    ap.add_argument("--calibrate-minutes", type=float, default=1.0)
    ap.add_argument("--out", default=str(ROOT / "results" / "command-power"))
    ap.add_argument("--explain-runs", type=int, default=0, help="explain --cmd runs per trainer on the 5%% cost")
    ap.add_argument("--explain-minutes", type=float, default=2.0)
    ap.add_argument("--retable", default=None, metavar="RUNS_JSON",
                    help="print the table of a finished benchmark's runs.json (truth recomputed with the cost "
                         "calls timed now) and exit")
    args = ap.parse_args()
    if args.retable:
        return retable(Path(args.retable))
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="command-power-"))
    minutes = {k: float(v) for k, v in (kv.split("=") for kv in args.minutes.split(","))}
    runs = ({k: int(v) for k, v in (kv.split("=") for kv in args.runs.split(","))} if "=" in args.runs
            else {case: int(args.runs) for case in args.cases.split(",")})
    cases = args.cases.split(",")
    processes = [int(p) for p in args.processes.split(",")]
    results, calib, explains, cost_eff = [], {}, [], {}
    for trainer in args.trainers.split(","):
        cal = compare(trainer, None, args, tmp / f"cal-{trainer}", minutes=args.calibrate_minutes)
        if cal.get("ref_sps") is None:
            print(f"calibration of {trainer} failed:\n{cal.get('error')}", file=sys.stderr)
            return 1
        sps0 = cal["ref_sps"]
        calib[trainer] = sps0
        print(f"{trainer}: {sps0:,.0f} steps/s with no cost", file=sys.stderr)
        for case in cases:
            cost_us = None if case == "twins" else (1 / (1 - float(case) / 100) - 1) / sps0 * 1e6
            for cond in args.conditions.split(","):
                for k, procs in ((k, p) for k in range(runs.get(case, 0)) for p in processes):
                    r = compare(trainer, cost_us, args, tmp / f"{trainer}-{case}-{cond}-{k}-{procs}",
                                busy=cond == "busy", minutes=minutes.get(case, 3.0), precision=args.precision,
                                processes=procs)
                    if cost_us is not None and round(cost_us, 4) not in cost_eff:
                        cost_eff[round(cost_us, 4)] = effective_cost_us(cost_us)
                    t = truth(cost_us, r.get("ref_sps"), cost_eff)
                    r.update(trainer=trainer, case=case, condition=cond, run=k, cost_us=cost_us, truth=t,
                             cost_eff_us=cost_eff.get(round(cost_us, 4)) if cost_us is not None else None)
                    results.append(r)
                    if r.get("ratio") is None:
                        print(f"{trainer} {case} {cond} #{k + 1}: no ratio ({r.get('error')})", file=sys.stderr)
                    else:
                        sets = ", ".join(f"{x:.3f}" for x in r["set_ratios"])
                        print(f"{trainer} {case} {cond} #{k + 1} ({procs} sets): {r['ratio']:.4f} [{r['ci_low']:.4f}, "
                              f"{r['ci_high']:.4f}] {r['verdict']} (truth {t:.4f}), {r['minutes']:.2f} min, "
                              f"{r['rounds']} rounds, stop: {r['stop']}, per set {sets}", file=sys.stderr)
                    (out_root / "runs.json").write_text(json.dumps({"calibration": calib, "runs": results},
                                                                   indent=1))
        cost5 = (1 / 0.95 - 1) / sps0 * 1e6
        for k in range(args.explain_runs):
            e = explain(trainer, cost5, args, tmp / f"explain-{trainer}-{k}", args.explain_minutes)
            e.update(trainer=trainer, run=k)
            explains.append(e)
            print(f"{trainer} explain #{k + 1}: first function {e['first']}, {e['minutes']:.2f} min", file=sys.stderr)
            (out_root / "explain.json").write_text(json.dumps(explains, indent=1))
    print(table(results))
    cores = sorted(r["perfkit_cores"] for r in results if r.get("perfkit_cores") is not None)
    if cores:
        print(f"\nperfkit's own CPU while the commands ran: median {cores[len(cores) // 2]:.4f} cores, at most "
              f"{cores[-1]:.4f} ({len(cores)} runs)")
    print_explains(explains)
    return 0


def retable(path: Path) -> int:
    data = json.loads(path.read_text())
    costs = {round(r["cost_us"], 4) for r in data["runs"] if r.get("cost_us") is not None}
    cost_eff = {c: effective_cost_us(c) for c in sorted(costs)}
    for c, e in cost_eff.items():
        print(f"cost {c:.3f} µs asked, {e:.3f} µs per call measured", file=sys.stderr)
    for r in data["runs"]:
        r["truth"] = truth(r.get("cost_us"), r.get("ref_sps"), cost_eff)
    print(table(data["runs"]))
    explains = json.loads((path.parent / "explain.json").read_text()) if (path.parent / "explain.json").exists() \
        else []
    print_explains(explains)
    return 0


def print_explains(explains: list[dict]) -> None:
    for trainer in dict.fromkeys(e["trainer"] for e in explains):
        es = [e for e in explains if e["trainer"] == trainer]
        hits = sum(1 for e in es if e["first"] and e["first"].startswith("_audit_observation"))
        print(f"\nexplain --cmd, {trainer}, 5% cost: `_audit_observation` named first in {hits} of {len(es)} runs "
              f"(median {statistics.median(e['minutes'] for e in es):.1f} min)")


def table(results: list[dict]) -> str:
    lines = [("| trainer | case | condition | processes | runs | slower / no difference / faster "
              "| interval covers the truth | median ratio | median truth | median ±% | median minutes (max) |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = []
    for r in results:
        k = (r["trainer"], r["case"], r["condition"], r.get("processes", 1))
        if k not in keys:
            keys.append(k)
    for trainer, case, cond, procs in keys:
        rs = [r for r in results if (r["trainer"], r["case"], r["condition"], r.get("processes", 1))
              == (trainer, case, cond, procs)]
        ok = [r for r in rs if r.get("ratio") is not None]
        v = [r["verdict"] for r in ok]
        covered = sum(1 for r in ok if r["ci_low"] <= r["truth"] <= r["ci_high"])
        name = "twins" if case == "twins" else f"{case}% cost"
        lines.append(
            f"| {trainer} | {name} | {cond} | {procs} | {len(rs)} | {v.count('slower')} / {v.count('no significant difference')}"
            f" / {v.count('faster')} | {covered} of {len(ok)} | "
            f"{statistics.median(r['ratio'] for r in ok) if ok else float('nan'):.4f} | "
            f"{statistics.median(r['truth'] for r in ok) if ok else float('nan'):.4f} | "
            f"{statistics.median(50 * (r['ci_high'] - r['ci_low']) / r['ratio'] for r in ok) if ok else float('nan'):.1f} | "
            f"{statistics.median(r['minutes'] for r in rs):.1f} ({max(r['minutes'] for r in rs):.1f}) |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
