"""perfkit's profiling, gate and diagnose commands (registered on the group in main.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from perfkit.cli import options as opts
from perfkit.core.folded import TRAIN_LOOP
from perfkit.core.scenario import ScenarioError


def _command_to_profile(cmds, tools, revs, kwargs, fixes, steps, ppo, num_envs, progress, metrics, warmup_seconds,
                        start_timeout, seconds):
    """profile --cmd: one command, under py-spy only; every input checked before any trial."""
    from perfkit.core.command import CommandError, check_startable, parse_cmd
    from perfkit.core.progress import ProgressError, compile_metric, compile_progress
    from perfkit.core.scenario import Variant
    from perfkit.engine.command import CommandRunner

    if len(cmds) != 1:
        raise click.UsageError(f"profile --cmd takes one command (got {len(cmds)}); compare them with perfkit compare "
                               "--cmd")
    others = [t for t in tools if t != "pyspy"]
    if others:
        raise click.UsageError(f"--with {others[0]} profiles the built-in trainer; on your command choose --with pyspy")
    if revs:
        raise click.UsageError("--rev is for compare and explain --cmd; profile runs the command where you are")
    trainer_axes = sorted(opts.overrides(dict(kwargs), fixes))
    for flag, given in (("a built-in trainer's axis (" + ", ".join(trainer_axes) + ")", bool(trainer_axes)),
                        ("--steps", steps is not None), ("--ppo", bool(ppo)), ("--num-envs", num_envs is not None)):
        if given:
            raise click.UsageError(f"{flag} is for the built-in trainer; with --cmd your command runs as it is")
    try:
        name, text = parse_cmd(cmds[0])
        compile_progress(progress)
        for m in metrics:
            compile_metric(m)
        from perfkit.core.command import Command

        variant = Variant(name, Command(name, text))  # type: ignore[arg-type]
        check_startable([variant])
    except (CommandError, ProgressError) as e:
        raise click.UsageError(str(e)) from None
    runner = CommandRunner(seconds=seconds if seconds is not None else opts.DEFAULT_SECONDS,
                           warmup_seconds=warmup_seconds, progress=progress, metrics=tuple(metrics),
                           start_timeout=start_timeout)
    return variant, runner


@click.command()
@click.option("--with", "tools", multiple=True, required=True, type=click.Choice(["pyspy", "torch", "scalene"]),
              help="Profiler to run the trial under (repeatable: each gets its own trials).")
@click.option("--repeats", type=click.IntRange(min=1, max=20), default=3, show_default=True,
              help="Rounds of one unprofiled trial and one trial per profiler, in rotating order; the "
                   "overhead is the geo-mean of the paired ratios, with a 95% interval from 2 rounds on.")
@click.option("--rate", type=click.IntRange(min=1, max=10_000), default=100, show_default=True,
              help="py-spy samples per second.")
@click.option("--native", is_flag=True, help="py-spy: include native (C/C++) frames (slower).")
@click.option("--no-subprocesses", is_flag=True, help="py-spy: do not follow rollout worker processes.")
@click.option("--torch-schedule", default="skip_first=2,wait=1,warmup=1,active=2,repeat=1", show_default=True,
              metavar="K=V,...", help="torch.profiler schedule, in training epochs.")
@click.option("--scalene-memory", is_flag=True, help="Scalene: also profile memory (~120x slower: not for SPS).")
@opts.command_options
@opts.scenario_options
@opts.budget_options
@opts.trainer_options
@opts.output_options
def profile(tools, repeats, rate, native, no_subprocesses, torch_schedule, scalene_memory, fmt, out, force, seed,
            seconds, steps, num_envs, ppo, fixes, cmds, progress, metrics, warmup_seconds, start_timeout,
            block_seconds, repo, revs, **kwargs) -> None:
    """Run the scenario's trial under each profiler, next to unprofiled trials of the same scenario.

    Rounds (--repeats) of one unprofiled trial and one trial per profiler run in rotating order;
    each trial records how busy the rest of the machine was, and a trial disturbed by other
    processes is kept in profile.json but left out of the overhead with its pair. Writes under the
    results directory: py-spy folded stacks, SVG flamegraph and speedscope JSON; torch.profiler
    Chrome trace (.json.gz), op table and stack flamegraph; Scalene JSON and its top lines (round
    1 in <tool>/, later rounds in <tool>/round-K/). Prints each profiler's SPS as a paired ratio to
    the unprofiled trials, with its interval. Exit 1 if a trial failed.

    Your own trainer: perfkit profile --with pyspy --cmd train='python train.py' runs your command
    (fresh each trial, --warmup-seconds then --seconds, read through --progress) with and without
    py-spy, which follows its rollout workers.

    Example: perfkit profile --with pyspy --with torch --seconds 15
    """
    from perfkit.commands.profiling import ProfileOptions, run_profile
    from perfkit.core.scenario import Variant
    from perfkit.engine.local import SubprocessRunner
    from perfkit.engine.profilers import ProfilerUnavailable, pyspy, torchprof
    from perfkit.engine.profilers import scalene as scalene_mod
    from perfkit.render.report import render_profile_record

    if cmds:
        variant, runner = _command_to_profile(cmds, tools, revs, kwargs, fixes, steps, ppo, num_envs, progress, metrics,
                                              warmup_seconds, start_timeout, seconds)
    else:
        scenario, _ = opts.scenario_from_options(kwargs, fixes, seed)
        variant = Variant(scenario.label(), scenario)
        runner = None
    try:
        sched = {k: int(v) for k, v in (item.split("=", 1) for item in torch_schedule.split(","))}
        torchprof.TorchProfileConfig(**sched)
    except torchprof.ScheduleError as e:  # before any trial, not after one
        raise click.BadParameter(str(e), param_hint="--torch-schedule") from None
    except (ValueError, TypeError):
        raise click.BadParameter(f"{torch_schedule!r}: expected skip_first=N,wait=N,warmup=N,active=N,repeat=N",
                                 param_hint="--torch-schedule") from None
    seconds, steps = (runner.seconds, None) if runner is not None else opts.budget(seconds, steps)
    run_dir = opts.run_dir(out, "profile", force)
    try:
        if "pyspy" in tools:
            pyspy.check()
        if "scalene" in tools:
            scalene_mod.executable()
    except ProfilerUnavailable as e:
        raise click.ClickException(str(e)) from None
    runner = runner or SubprocessRunner(seconds=seconds, steps=steps, ppo=ppo, num_envs=num_envs)
    options = ProfileOptions(rate=rate, native=native, subprocesses=not no_subprocesses, torch_schedule=sched,
                             scalene_memory=scalene_memory)
    tools = list(dict.fromkeys(tools))
    click.echo(f"{repeats} round(s) of {1 + len(tools)} trials ({', '.join(['unprofiled', *tools])}), "
               f"{seconds:g} s each, rotating order -> {run_dir}" if seconds else
               f"{repeats} round(s) of {1 + len(tools)} trials -> {run_dir}", err=True)

    def on_trial(i: int, n: int, tool: str, t: dict) -> None:
        name = "unprofiled" if tool == "none" else tool
        if t["status"] == "failed":
            click.echo(f"[{i}/{n}] {name}: FAILED ({t['error'].splitlines()[0]})", err=True)
            return
        busy = f", disturbed: others used {t['others_cores']:.2f} core" if t["disturbed"] else ""
        click.echo(f"[{i}/{n}] {name}: {t['sps']:,.0f} agent-steps/s{busy}", err=True)

    record = run_profile(runner, variant, tools, options, run_dir, repeats, on_trial)
    click.echo(render_profile_record(record, fmt))
    click.echo(f"\nwrote {run_dir / 'profile.json'}", err=True)
    if record.interrupted:
        sys.exit(130)
    if any(t["status"] == "failed" for t in record.trials):
        sys.exit(1)


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
    from perfkit.core.files import atomic_write_text
    from perfkit.core.folded import FoldedError, read_folded
    from perfkit.render.flame_report import write_flamediff
    from perfkit.render.table import render_flamediff

    def load(p: Path):
        own = p.is_dir()  # perfkit's own py-spy output (--nonblocking): a torn line is dropped, not fatal
        if own:
            cands = [p / "pyspy" / "pyspy.folded", p / "pyspy.folded"]
            found = next((c for c in cands if c.exists()), None)
            if found is None:
                raise click.BadParameter(f"{p} holds no pyspy.folded (looked for {', '.join(map(str, cands))})")
            p = found
        try:
            return read_folded(p, torn_ok=own)
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
    if r % 10 == 0:
        click.echo(f"round {r}", err=True)


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
@click.option("--precision", type=opts.FiniteRange(min=0.001, max=0.5), default=None, metavar="P",
              help="Add rounds until every check's ratio, as this run measures it, is known to ±P "
                   "(default 0.01; at least 6 rounds, at most --rounds or --max-minutes). Stops on the "
                   "interval's width alone, so it does not make failures more or less likely.")
@click.option("--max-minutes", type=opts.FiniteRange(min=0.05), default=None, metavar="M",
              help="Stop adding rounds after M minutes of measuring (default 3; 1 with --quick).")
@click.option("--rounds", type=click.IntRange(min=2), default=None,
              help="The most rounds (default 1000 while adding rounds to a precision). Given without "
                   "--precision: exactly this many rounds. Each round times one block of every workload "
                   "and the reference workload.")
@click.option("--block-steps", type=click.IntRange(min=1), default=100, show_default=True,
              help="Rollout steps per timed block.")
@click.option("--quick", is_flag=True,
              help="Blocks of 60 steps, precision ±2%, at most 1 minute (for CI after the tests).")
@opts.out_options
@opts.format_option
def gate(checks, checks_file, baseline_path, update_baseline, baseline_runs, precision, max_minutes, rounds,
         block_steps, quick, out, force, fmt) -> None:
    """CI gate: fail only on a statistically significant SPS regression beyond a check's threshold.

    Workloads (a scenario's env + wrapper + the policy's forward pass) are timed in short blocks
    rotating A B C, B C A, ... within this one process, so machine speed cancels out of relative
    checks; baseline checks divide SPS by a reference workload timed in the same rounds and allow
    for the process-to-process spread seen when the baseline was measured (the table says how
    large a drop a baseline check can see). Rounds are added until every check is known to the
    precision or the time budget ends. A check FAILs when the whole 95% interval of its ratio is
    below the threshold; otherwise it says "ok" or "within noise" with the interval. Exit 1 on
    failure, 2 on bad input.

    Example: perfkit gate --check "sps(wrapper=getattr) >= 0.98 * sps(wrapper=none)"
    """
    from perfkit.commands import gate as g
    from perfkit.render.table import render_gate

    if quick:
        block_steps = 60
    if rounds is not None and precision is None and max_minutes is None:
        rule = g.GateRule(rounds=rounds)  # a fixed number of rounds, as asked
    else:
        rule = g.GateRule(rounds=rounds or 1000, precision=precision or (0.02 if quick else 0.01),
                          max_seconds=60 * (max_minutes or (1 if quick else 3)))
    try:
        parsed = g.read_checks(checks, checks_file)
        baseline = None
        if any(c.against_baseline for c in parsed) and not update_baseline:
            # Checked against the checks now, not after minutes of measuring.
            baseline = g.load_baseline(baseline_path, [c.lhs for c in parsed if c.against_baseline])
        if update_baseline and not any(c.against_baseline for c in parsed):
            raise g.GateError("--update-baseline: none of the checks is against the baseline")
    except (g.GateError, ScenarioError) as e:
        raise click.UsageError(str(e)) from None
    for label in g.labels_needed(parsed):
        # The gate would otherwise time CPU work and label it "cuda".
        opts.check_device(dict(g.scenario_for(label).values), f"check workload sps({label})")
    opts.check_scenarios(g.scenario_for(label) for label in g.labels_needed(parsed))
    if update_baseline:
        # checked now, not after minutes of measuring that a failed write would lose
        opts.writable_dir(baseline_path.parent, "--baseline's directory")
        written = g.update_baseline(
            baseline_path, parsed, baseline_runs, rule.rounds if rounds else 20, block_steps,
            on_run=lambda k, n: click.echo(f"baseline run {k}/{n} (fresh process) ...", err=True))
        click.echo("\n".join(g.baseline_summary(written)))
        click.echo(f"wrote {baseline_path}", err=True)
        return
    run_dir = opts.run_dir(out, "gate", force)
    until = f"until every check is known to ±{rule.precision:.1%} (at most {rule.max_seconds / 60:g} min)" \
        if rule.precision else f"{rule.rounds} rounds"
    click.echo(f"{len(g.labels_needed(parsed)) or 1} workloads in blocks of {block_steps} steps, {until} -> "
               f"{run_dir}", err=True)
    try:
        record = g.run(parsed, rule, block_steps, baseline, on_round=_round_progress)
    except g.GateError as e:
        raise click.UsageError(str(e)) from None
    record.save(run_dir / "gate.json")
    click.echo(render_gate(record, fmt))
    for w in record.warnings:
        click.echo(f"warning: {w}", err=True)
    click.echo(f"\n{record.stop_reason}: {record.measurement.seconds:.1f} s; wrote {run_dir / 'gate.json'}", err=True)
    if record.failures:
        click.echo("\n".join(f"FAILED: {f}" for f in record.failures), err=True)
        sys.exit(1)


@click.command()
@click.option("--max-unreachable", type=opts.FiniteRange(0, 1), default=0.10, show_default=True,
              help="Fail when more than this fraction of first episodes end before a heart is possible.")
@opts.scenario_options
@opts.output_options
def diagnose(max_unreachable, out, force, fmt, seed, fixes, **kwargs) -> None:
    """Check the training signal without training: is the recipe used, can a heart be reached,
    do workers desync, what do scripted policies score, are observations sane and identical
    across wrapper variants? Exit 1 when a check fails.

    Example: perfkit diagnose --preset make_arena --desync early-reset --desync-rng shared
    """
    from perfkit.commands import diagnose as d
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
