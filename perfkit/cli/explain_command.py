"""`perfkit explain`: why is B slower than A (registered on the group in main.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from perfkit.cli import options as opts


@click.command()
@click.argument("results_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--vary", multiple=True, metavar="AXIS=V1,V2,...",
              help="Run a compare of these variants first (every block sampled), then explain it.")
@click.option("--a", "label_a", default=None, metavar="LABEL", help="The reference (default: the first variant).")
@click.option("--b", "label_b", default=None, metavar="LABEL", help="The variant to explain (default: every other).")
@click.option("--min-seconds", type=opts.FiniteRange(min=0), default=30.0, show_default=True,
              help="Run at least this long before the precision may stop the run: the functions need samples.")
@click.option("--rate", type=click.IntRange(min=1, max=1000), default=200, show_default=True,
              help="py-spy samples per second in every block; each sample pauses the trainer for the moment "
                   "py-spy reads its stack, and every variant pays that alike (the cost is measured in "
                   "docs/benchmarks.md).")
@click.option("--nonblocking", is_flag=True,
              help="Read stacks without pausing: cheaper, but a short function that returns mid-read can have its "
                   "callee shown under the wrong caller.")
@click.option("--precision", type=opts.FiniteRange(min=0.001, max=0.5), default=0.02, show_default=True,
              metavar="P", help="Add rounds until the SPS ratio is known to ±P (as compare --precision).")
@click.option("--max-minutes", type=opts.FiniteRange(min=0.1), default=3.0, show_default=True, metavar="M",
              help="Stop adding rounds after M minutes.")
@click.option("--mode", type=click.Choice(["auto", "process", "inprocess"]), default="auto", show_default=True,
              help="As compare --mode: variants in one process (epochs interleaved) when the axes allow.")
@opts.command_options
@opts.scenario_options
@opts.budget_options
@opts.trainer_options
@opts.output_options
def explain(results_dir, vary, label_a, label_b, min_seconds, rate, nonblocking, precision, max_minutes, mode, fmt,
            out, force, seed, seconds, steps, num_envs, ppo, fixes, cmds, progress, metrics, warmup_seconds,
            start_timeout, block_seconds, repo, revs, **kwargs) -> None:
    """Why is B slower than A? The gap in time per agent-step with its paired 95% interval, split
    over phases (env, forward, copy, learn, checkpoint, eval, misc), then the functions whose time
    per agent-step changed beyond noise, from py-spy samples of every block (warm-up left out).

    On a finished compare: perfkit explain results/<run> (phases always; functions when that
    compare was sampled, as `explain --vary` samples it). Running one: perfkit explain --vary
    wrapper=getattr,getattribute. Writes explain.json and a differential flamegraph coloured only
    where a function changed beyond noise; prints a paragraph to paste into a PR.

    Your own trainer: perfkit explain --cmd base='python train.py' --vary env:MY_FLAG=0,1 runs the
    commands in turns (as compare --cmd does) with py-spy on each command's process tree in every
    block (non-blocking: a blocking read would resume a paused command).

    On CUDA, `explain --vary` also takes one torch.profiler trace per variant and adds GPU rows read
    by Holistic Trace Analysis (pip install 'perfkit[gpu]'): GPU idle time by cause (waiting for the
    host, between kernels, other), kernel time, and CUDA syncs per rollout step.
    """
    from perfkit.commands.explain import write_explain
    from perfkit.engine.profilers.pyspy import Sampling
    from perfkit.records.compare import CompareResult
    from perfkit.records.store import ResultsError
    from perfkit.render.explain import render_explain

    if results_dir is not None:
        if vary or cmds:
            raise click.UsageError("give RESULTS_DIR (explain a finished compare) or --vary/--cmd (run one), not both")
        try:
            result = CompareResult.load(results_dir / "sps.json")
        except ResultsError as e:
            raise click.UsageError(f"{results_dir}: {e}") from None
        check_labels(result.variants, label_a, label_b, "this compare")
        run_dir = results_dir
        if out is not None and out.resolve() == results_dir.resolve():
            out = None  # --out RESULTS_DIR: beside the compare, as without --out
        out_dir = opts.run_dir(out, "explain", force) if out is not None else opts.writable_dir(
            results_dir, "RESULTS_DIR", "; pass --out DIR to write the explanation elsewhere")
    elif cmds:
        result, run_dir = _run_commands(cmds, vary, fixes, kwargs, mode, rate, precision, max_minutes, min_seconds,
                                        out, force, seconds, steps, num_envs, ppo, progress, metrics, warmup_seconds,
                                        start_timeout, block_seconds, label_a, label_b, repo, revs)
        out_dir = run_dir
    else:
        if revs:
            raise click.UsageError("--rev runs your command (--cmd) in a worktree of each revision: give --cmd")
        if not vary:
            raise click.UsageError("give RESULTS_DIR (a finished compare) or --vary AXIS=A,B (run one)")
        sampling = Sampling(rate, blocking=not nonblocking)
        result, run_dir = _run(vary, sampling, precision, max_minutes, min_seconds, mode, out, force, seed, seconds,
                               steps, num_envs, ppo, fixes, kwargs, label_a, label_b)
        out_dir = run_dir
    record = write_explain(result, run_dir, label_a, label_b, out_dir)
    click.echo(render_explain(record, fmt))
    click.echo(f"\nwrote {out_dir / 'explain.json'}", err=True)
    if results_dir is not None and result.interrupted:
        click.echo(f"note: the compare in {results_dir} was interrupted; this explains the rounds it finished",
                   err=True)
    elif results_dir is None and result.interrupted:
        sys.exit(130)


def check_labels(labels: list[str], label_a: str | None, label_b: str | None, where: str) -> None:
    """--a and --b name two different variants of the compare; there are at least two."""
    if len(labels) < 2:
        raise click.UsageError(f"{where} has one variant ({', '.join(labels)}): nothing to explain against")
    for name, label in (("--a", label_a), ("--b", label_b)):
        if label is not None and label not in labels:
            raise click.UsageError(f"{name} {label!r} is not a variant of {where}; choose from {', '.join(labels)}")
    a = label_a or labels[0]  # the reference by default
    if label_b == a:
        default = "" if label_a else " (--a defaults to the first variant)"
        raise click.UsageError(f"--a and --b are both {a!r}{default}: a variant against itself has nothing to explain")


def _run(vary, sampling, precision, max_minutes, min_seconds, mode, out, force, seed, seconds, steps, num_envs, ppo,
         fixes, kwargs, label_a, label_b):
    from perfkit.commands import compare as compare_cmd
    from perfkit.core.children import stop_on_sigterm
    from perfkit.engine.profilers import ProfilerUnavailable, pyspy
    from perfkit.engine.rounds import StopRule

    base, varied = opts.scenario_from_options(kwargs, fixes, seed, vary)
    variants, inprocess = opts.plan_and_mode(base, varied, mode)
    # before minutes of measuring, not after
    check_labels([v.label for v in variants], label_a, label_b, "the compare --vary asks for")
    try:
        pyspy.check()
    except ProfilerUnavailable as e:
        raise click.ClickException(str(e)) from None
    seconds, steps = opts.budget(seconds, steps)
    rule = StopRule(rounds=20, precision=precision, max_seconds=60 * max_minutes,
                    min_seconds=min(min_seconds, 60 * max_minutes))
    run_dir = opts.run_dir(out, "explain", force)
    click.echo(f"{len(variants)} variants, {'one process' if inprocess else 'a fresh process per trial'}, every "
               f"block sampled at {sampling.rate} Hz{'' if sampling.blocking else ' (non-blocking)'}, until "
               f"±{precision:.1%} (at most {max_minutes:g} min) -> {run_dir}",
               err=True)
    job = compare_cmd.CompareJob(variants, rule, inprocess, seconds, steps, ppo or {}, num_envs, sampling=sampling)
    with stop_on_sigterm():
        result = compare_cmd.run(job, run_dir, lambda i, n, v, tr: click.echo(
            f"[{i}/{n}] {v.label}: {tr.sps:,.0f} agent-steps/s", err=True))
        if not result.interrupted and any(t.device.startswith("cuda") for ts in result.trials.values() for t in ts):
            _gpu_traces(variants, job.runner(), run_dir)
    return result, run_dir


def _run_commands(cmds, vary, fixes, kwargs, mode, rate, precision, max_minutes, min_seconds, out, force, seconds,
                  steps, num_envs, ppo, progress, metrics, warmup_seconds, start_timeout, block_seconds, label_a,
                  label_b, repo, revs):
    """explain --cmd: the commands in turns, every block of each sampled by py-spy (non-blocking)."""
    from perfkit.commands import compare as compare_cmd
    from perfkit.core.children import stop_on_sigterm
    from perfkit.engine.profilers import ProfilerUnavailable, pyspy
    from perfkit.engine.profilers.pyspy import Sampling
    from perfkit.engine.rounds import StopRule

    if mode != "auto":
        raise click.UsageError(f"--mode {mode}: explain --cmd runs your commands in turns (compare's --mode "
                               "interleave); leave --mode out")
    rule = StopRule(rounds=None, precision=precision, max_seconds=60 * max_minutes,
                    min_seconds=min(min_seconds, 60 * max_minutes))
    job = opts.command_job(cmds, vary, fixes, kwargs, "interleave", "local", False, steps, ppo, num_envs, progress,
                           metrics, warmup_seconds, start_timeout, seconds, rule, False, block_seconds, repo, revs)
    check_labels([v.label for v in job.variants], label_a, label_b, "the --cmd variants")
    try:
        pyspy.check()
    except ProfilerUnavailable as e:
        raise click.ClickException(str(e)) from None
    job.sampling = Sampling(rate, blocking=False)
    run_dir = opts.run_dir(out, "explain", force)
    click.echo(f"{len(job.variants)} commands in turns of {block_seconds:g} s, every block sampled at {rate} Hz "
               f"(non-blocking), until ±{precision:.1%} (at most {max_minutes:g} min) -> {run_dir}", err=True)
    with stop_on_sigterm():
        result = compare_cmd.run(job, run_dir)
    return result, run_dir


def _gpu_traces(variants, runner, run_dir) -> None:
    """On CUDA: one torch.profiler trace per variant for the GPU rows (perfkit/engine/gpu.py)."""
    from perfkit.engine.gpu import HtaUnavailable, capture, require_hta

    try:
        require_hta()
    except HtaUnavailable as e:
        click.echo(f"no GPU rows: {e}", err=True)
        return
    errors = capture(variants, runner, run_dir, progress=lambda m: click.echo(m, err=True))
    for label, err in errors.items():
        click.echo(f"no GPU trace of {label}: {err}", err=True)
