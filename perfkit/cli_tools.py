"""perfkit's profiling, gate and diagnose commands (registered on the group in cli.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np
from tabulate import tabulate_formats

from perfkit import cli_options as opts
from perfkit.flame.folded import TRAIN_LOOP


@click.command()
@click.option("--with", "tools", multiple=True, required=True, type=click.Choice(["pyspy", "torch", "scalene"]),
              help="Profiler to run the trial under (repeatable: each gets its own trial).")
@click.option("--rate", type=click.IntRange(min=1, max=10_000), default=100, show_default=True,
              help="py-spy samples per second.")
@click.option("--native", is_flag=True, help="py-spy: include native (C/C++) frames (slower).")
@click.option("--no-subprocesses", is_flag=True, help="py-spy: do not follow rollout worker processes.")
@click.option("--torch-schedule", default="skip_first=2,wait=1,warmup=1,active=2,repeat=1", show_default=True,
              metavar="K=V,...", help="torch.profiler schedule, in training epochs.")
@click.option("--scalene-memory", is_flag=True, help="Scalene: also profile memory (~120x slower: not for SPS).")
@opts.scenario_options
@opts.budget_options
@opts.trainer_options
@opts.output_options
def profile(tools, rate, native, no_subprocesses, torch_schedule, scalene_memory, fmt, out, force, seed, seconds,
            steps, num_envs, ppo, fixes, **kwargs) -> None:
    """Run one trial under each profiler, next to an unprofiled trial of the same scenario.

    Writes under the results directory: py-spy folded stacks, SVG flamegraph and speedscope JSON;
    torch.profiler Chrome trace (.json.gz), op table and stack flamegraph; Scalene JSON and its top
    lines. Prints each profiler's SPS as a ratio to the unprofiled trial.

    Example: perfkit profile --with pyspy --with torch --seconds 15
    """
    from perfkit.compare import SubprocessRunner, TrialFailed, Variant
    from perfkit.profilers import ProfilerUnavailable, pyspy, torchprof
    from perfkit.profilers import scalene as scalene_mod
    from perfkit.render.table import render_profiles, render_top_lines
    from perfkit.results import write_json

    scenario, _ = opts.scenario_from_options(kwargs, fixes, seed)
    try:
        sched = {k: int(v) for k, v in (item.split("=", 1) for item in torch_schedule.split(","))}
        torch_cfg = torchprof.TorchProfileConfig(**sched)
    except torchprof.ScheduleError as e:  # before the unprofiled trial, not after it
        raise click.BadParameter(str(e), param_hint="--torch-schedule") from None
    except (ValueError, TypeError):
        raise click.BadParameter(f"{torch_schedule!r}: expected skip_first=N,wait=N,warmup=N,active=N,repeat=N",
                                 param_hint="--torch-schedule") from None
    seconds, steps = opts.budget(seconds, steps)
    run_dir = opts.run_dir(out, "profile", force)
    try:
        if "pyspy" in tools:
            pyspy.check()
        if "scalene" in tools:
            scalene_mod.executable()
    except ProfilerUnavailable as e:
        raise click.ClickException(str(e)) from None
    variant = Variant(scenario.label(), scenario)
    runner = SubprocessRunner(seconds=seconds, steps=steps, ppo=ppo, num_envs=num_envs)
    report: dict = {"scenario": scenario.to_dict(), "runs": {}}
    try:
        click.echo(f"unprofiled trial of {variant.label} ...", err=True)
        base = runner(variant, 0, run_dir / "unprofiled" / "trial.json")
        report["unprofiled_sps"] = base.sps
        write_json(run_dir / "profile.json", "profile", report)
        for tool in dict.fromkeys(tools):
            click.echo(f"trial under {tool} ...", err=True)
            if tool == "pyspy":
                r = pyspy.profile(runner, variant, run_dir / "pyspy", rate, native, not no_subprocesses)
            elif tool == "torch":
                r = torchprof.profile(runner, variant, run_dir / "torch", torch_cfg)
            else:
                r = scalene_mod.profile(runner, variant, run_dir / "scalene", scalene_memory)
            report["runs"][tool] = r
            write_json(run_dir / "profile.json", "profile", report)
    except (TrialFailed, ProfilerUnavailable, RuntimeError) as e:
        raise click.ClickException(f"{e}\n(what finished is in {run_dir / 'profile.json'})") from None
    click.echo(render_profiles(report["unprofiled_sps"], report["runs"], fmt))
    if "scalene" in report["runs"]:
        click.echo("\nScalene: top lines by CPU %\n" + render_top_lines(report["runs"]["scalene"]["top_lines"], fmt))
    click.echo(f"\nwrote {run_dir / 'profile.json'}", err=True)


@click.command()
@click.argument("a", type=click.Path(exists=True, path_type=Path))
@click.argument("b", type=click.Path(exists=True, path_type=Path))
@click.option("--top", type=click.IntRange(min=1), default=15, show_default=True, help="Rows in the frame table.")
@click.option("--focus", default=None, metavar="TEXT",
              help=f"Keep only samples through a frame containing TEXT, e.g. '{TRAIN_LOOP}' (leaves out start-up).")
@opts.output_options
def flamediff(a, b, top, out, force, focus, fmt) -> None:
    """Where does B spend the time that A does not? A and B: folded-stack files, or run directories
    of `perfkit profile` (their pyspy/pyspy.folded is used).

    Shares are normalised by each run's total samples. Writes flamediff.svg (B's shape) and
    flamediff-on-A.svg (A's shape), red where B spends a larger share, blue where smaller, and
    prints the frames whose share changed most.
    """
    from perfkit.flame.folded import FoldedError, read_folded
    from perfkit.flame.report import write_flamediff
    from perfkit.render.table import render_flamediff
    from perfkit.results import atomic_write_text

    def load(p: Path):
        if p.is_dir():
            cands = [p / "pyspy" / "pyspy.folded", p / "pyspy.folded"]
            found = next((c for c in cands if c.exists()), None)
            if found is None:
                raise click.BadParameter(f"{p} holds no pyspy.folded (looked for {', '.join(map(str, cands))})")
            p = found
        try:
            return read_folded(p)
        except FoldedError as e:
            raise click.BadParameter(str(e)) from None

    pa, pb = load(a), load(b)
    if focus:
        pa, pb = pa.focus(focus), pb.focus(focus)
    if not pa.total or not pb.total:
        raise click.UsageError(f"{a if not pa.total else b} has no samples" + (f" through {focus!r}" if focus else ""))
    run_dir = opts.run_dir(out, "flamediff", force)
    files, rows = write_flamediff(pa, pb, run_dir, "A", "B", top=top)
    table = render_flamediff(rows, "A", "B", fmt)
    atomic_write_text(run_dir / "flamediff.md", f"A = {a}\nB = {b}\n\n{table}\n")
    click.echo(f"A = {a} ({pa.total:g} samples)\nB = {b} ({pb.total:g} samples)\n\n{table}")
    click.echo(f"\nwrote {files['on_b']}, {files['on_a']} and {run_dir / 'flamediff.md'}", err=True)


def _round_progress(r: int, n: int) -> None:
    if r == n or r % 5 == 0:
        click.echo(f"round {r}/{n}", err=True)


@click.command()
@click.option("--check", "checks", multiple=True, metavar="TEXT",
              help="A check, e.g. 'sps(wrapper=getattr) >= 0.98 * sps(wrapper=none)' or "
                   "'sps(wrapper=getattr) >= 0.90 * baseline' (repeatable).")
@click.option("--checks-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File with one check per line ('#' starts a comment).")
@click.option("--baseline", "baseline_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("results/baseline/gate.json"), show_default=True, help="Baseline for '* baseline' checks.")
@click.option("--update-baseline", is_flag=True,
              help="Measure the checks' workloads in --baseline-runs fresh processes and write the baseline "
                   "(atomically), then exit.")
@click.option("--baseline-runs", type=click.IntRange(min=2), default=5, show_default=True,
              help="Processes measured for a baseline: their spread is what a baseline check allows for.")
@click.option("--rounds", type=click.IntRange(min=2), default=20, show_default=True,
              help="Rounds; each round times one block of every workload and the reference workload.")
@click.option("--block-steps", type=click.IntRange(min=1), default=100, show_default=True,
              help="Rollout steps per timed block.")
@click.option("--quick", is_flag=True, help="10 rounds of 60 steps (for CI after the tests).")
@opts.out_options
@click.option("--format", "fmt", type=click.Choice(tabulate_formats), default="github", show_default=True)
def gate(checks, checks_file, baseline_path, update_baseline, baseline_runs, rounds, block_steps, quick, out,
         force, fmt) -> None:
    """CI gate: fail only on a statistically significant SPS regression beyond a check's threshold.

    Workloads (a scenario's env + wrapper + the policy's forward pass) are timed in short blocks
    rotating A B C, B C A, ... within this one process, so machine speed cancels out of relative
    checks; baseline checks divide SPS by a reference workload timed in the same rounds and allow
    for the process-to-process spread seen when the baseline was measured. A check FAILs when the
    whole 95% interval of its ratio is below the threshold; otherwise it says "ok" or "within
    noise" with the interval. Exit 1 on failure, 2 on bad input.
    """
    from perfkit import gate as g
    from perfkit.render.table import render_gate
    from perfkit.results import write_json

    texts = list(checks)
    if checks_file is not None:
        try:
            lines = checks_file.read_text().splitlines()
        except OSError as e:
            raise click.UsageError(f"--checks-file {str(checks_file)!r}: {e.strerror}") from None
        except UnicodeDecodeError as e:
            raise click.UsageError(f"--checks-file {str(checks_file)!r}: not a text file (byte {e.start} is not "
                                   "UTF-8); expected one check per line") from None
        texts += [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]
    if not texts:
        raise click.UsageError("no checks: give --check TEXT or --checks-file FILE")
    try:
        parsed = [g.parse_check(t) for t in texts]
        baseline = None
        if any(c.against_baseline for c in parsed) and not update_baseline:
            # Checked against the checks now, not after minutes of measuring.
            baseline = g.load_baseline(baseline_path, [c.lhs for c in parsed if c.against_baseline])
    except g.GateError as e:
        raise click.UsageError(str(e)) from None
    for label in g.labels_needed(parsed):
        # The gate would otherwise time CPU work and label it "cuda".
        opts.check_device(dict(g.scenario_for(label).values), f"check workload sps({label})")
    opts.check_scenarios(g.scenario_for(label) for label in g.labels_needed(parsed))
    if quick:
        rounds, block_steps = 10, 60
    if update_baseline:
        if not any(c.against_baseline for c in parsed):
            raise click.UsageError("--update-baseline: none of the checks is against the baseline")
        # Same workloads as a gate run of these checks: a workload's speed depends on what else
        # rotates through the caches with it.
        runs = []
        for k in range(baseline_runs):
            click.echo(f"baseline run {k + 1}/{baseline_runs} (fresh process) ...", err=True)
            runs.append(g.measure_in_subprocess(g.labels_needed(parsed), rounds, block_steps))
        g.write_baseline(baseline_path, runs)
        for label in runs[0].samples:
            meds = [float(np.median(m.samples[label])) for m in runs]
            click.echo(f"{label}: median {np.median(meds):,.0f} agent-steps/s; per process "
                       f"{min(meds):,.0f}–{max(meds):,.0f}")
        click.echo(f"wrote {baseline_path}", err=True)
        return
    run_dir = opts.run_dir(out, "gate", force)
    labels = g.labels_needed(parsed)
    if not labels:
        labels = [parsed[0].lhs]
    m = g.measure(labels, rounds, block_steps, on_round=_round_progress)
    try:
        results = [g.evaluate(c, m.samples, m.reference, baseline) for c in parsed]
    except g.GateError as e:
        raise click.UsageError(str(e)) from None
    if baseline is not None and baseline.get("block_steps") != m.block_steps:
        click.echo(f"warning: the baseline was timed in blocks of {baseline.get('block_steps')} steps, this run in "
                   f"{m.block_steps}; use the same --block-steps/--quick for both", err=True)
    rep = g.report(results, m)
    write_json(run_dir / "gate.json", "gate", rep)
    click.echo(render_gate(results, rep["medians"], fmt))
    click.echo(f"\n{m.rounds} rounds x {m.block_steps} steps in {m.seconds:.1f} s; wrote {run_dir / 'gate.json'}",
               err=True)
    failures = [r.fails() for r in results if r.fails()]
    if failures:
        click.echo("\n".join(f"FAILED: {f}" for f in failures), err=True)
        sys.exit(1)


@click.command()
@click.option("--max-unreachable", type=click.FloatRange(0, 1), default=0.10, show_default=True,
              help="Fail when more than this fraction of first episodes end before a heart is possible.")
@opts.scenario_options
@opts.output_options
def diagnose(max_unreachable, out, force, fmt, seed, fixes, **kwargs) -> None:
    """Check the training signal without training: is the recipe used, can a heart be reached,
    do workers desync, what do scripted policies score, are observations sane and identical
    across wrapper variants? Exit 1 when a check fails.

    Example: perfkit diagnose --preset make_arena --desync early-reset --desync-rng shared
    """
    from perfkit import diagnose as d
    from perfkit.records.diagnose import DiagnoseResult
    from perfkit.render.table import render_diagnose

    scenario, _ = opts.scenario_from_options(kwargs, fixes, seed, check_envs=False)
    if scenario["env"] != "arena":
        raise click.UsageError(f"diagnose knows the reference arena only; got --env {scenario['env']}")
    run_dir = opts.run_dir(out, "diagnose", force)
    outcomes = d.diagnose(scenario, max_unreachable,
                          on_check=lambda o: click.echo(f"{o.name}: {o.verdict}", err=True))
    record = DiagnoseResult(scenario.to_dict(), outcomes)
    record.save(run_dir / "diagnose.json")
    click.echo(render_diagnose(record.checks, fmt))
    click.echo(f"\nwrote {run_dir / 'diagnose.json'}", err=True)
    if record.failed:
        sys.exit(1)
