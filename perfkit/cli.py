"""perfkit's command line. Click only: parse, build scenarios, call the library, render."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from tabulate import tabulate_formats

from perfkit.scenario import AXES, Scenario, ScenarioError, parse_assignment, parse_vary

DEFAULT_SECONDS = 10.0


def _axis_options(f):
    """One `--<axis>` option per axis, documented from the axis table."""
    for a in reversed(list(AXES.values())):
        f = click.option(
            f"--{a.name}", f"axis_{a.name.replace('-', '_')}", default=None, metavar="VALUE",
            help=f"{a.help}. Values: {a.values_text}. Default: {a.default}.",
        )(f)
    return f


def _budget_options(f):
    f = click.option("--steps", type=click.IntRange(min=1), default=None,
                     help="Budget per trial in agent-steps (instead of --seconds).")(f)
    f = click.option("--seconds", type=click.FloatRange(min=0.1), default=None,
                     help=f"Budget per trial in seconds of training (default {DEFAULT_SECONDS:g}).")(f)
    f = click.option("--seed", type=int, default=1, show_default=True, help="Seed for envs, policy and sampling.")(f)
    f = click.option("--format", "fmt", type=click.Choice(tabulate_formats), default="github", show_default=True,
                     help="Table format (any tabulate format).")(f)
    f = click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Directory for results (default results/<timestamp>-<command>).")(f)
    return f


def _overrides(kwargs: dict, fixes: tuple[str, ...] = ()) -> dict[str, str]:
    values: dict[str, str] = {}
    for text in fixes:
        name, value = parse_assignment(text)
        values[name] = value
    for a in AXES.values():
        v = kwargs.pop(f"axis_{a.name.replace('-', '_')}", None)
        if v is not None:
            values[a.name] = a.validate(v)
    return values


def _budget(seconds, steps):
    if seconds is not None and steps is not None:
        raise click.UsageError("give --seconds or --steps, not both")
    if seconds is None and steps is None:
        seconds = DEFAULT_SECONDS
    return seconds, steps


def _run_dir(out: Path | None, command: str) -> Path:
    run_dir = out or Path("results") / f"{time.strftime('%Y%m%d-%H%M%S')}-{command}"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise click.UsageError(f"results directory {str(run_dir)!r} is not writable: {e.strerror}") from None
    return run_dir


def _check_device(values: dict[str, str]) -> None:
    if values.get("device") == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise click.UsageError("--device cuda: no CUDA device is available here; valid: auto, cpu")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="perfkit")
def main() -> None:
    """perfkit: find out why RL training got slower or stopped learning.

    Each suspect is an axis (wrapper dispatch, config timing, checkpoint cadence, workers, desync,
    arena preset, device); a variant is one value per axis. perfkit runs the same PPO loop under
    each variant, interleaving repeated trials in fresh processes, and reports agent-steps/s with
    spread and a significance verdict, the per-phase time split and learning metrics.

    Start with `perfkit variants`, then `perfkit compare --vary wrapper=getattribute,getattr,none`.
    """


@main.command()
def variants() -> None:
    """List the axes, their values and defaults."""
    from tabulate import tabulate

    rows = [[a.name, a.values_text, a.default, a.help] for a in AXES.values()]
    click.echo(tabulate(rows, headers=["axis", "values", "default", "what it changes"], tablefmt="github"))


@main.command()
@_axis_options
@_budget_options
def run(fmt, out, seed, seconds, steps, **kwargs) -> None:
    """Run ONE trial and print its SPS, phase breakdown and learning stats.

    Example: perfkit run --wrapper getattribute --seconds 20
    """
    from perfkit.render.table import render_trial
    from perfkit.trial import run_trial

    try:
        values = _overrides(kwargs)
        scenario = Scenario.build(values, seed=seed)
    except ScenarioError as e:
        raise click.UsageError(str(e)) from None
    _check_device(values)
    seconds, steps = _budget(seconds, steps)
    run_dir = _run_dir(out, "run")
    click.echo(f"running {scenario.label()} for {f'{seconds:g} s' if seconds else f'{steps:,} agent-steps'} ...",
               err=True)

    def on_window(w):
        click.echo(f"  window {w.index}: {w.sps:,.0f} agent-steps/s", err=True)

    trial = run_trial(scenario, seconds=seconds, steps=steps, out_dir=str(run_dir), on_window=on_window)
    trial.save(run_dir / "trial.json")
    click.echo(render_trial(trial, fmt))
    click.echo(f"\nwrote {run_dir / 'trial.json'}", err=True)
    if trial.interrupted:
        sys.exit(130)


@main.command()
@click.option("--vary", "vary", multiple=True, metavar="AXIS=V1,V2,...",
              help="Axis to vary and its values; repeat to cross several axes (every combination runs).")
@click.option("--fix", "fixes", multiple=True, metavar="AXIS=VALUE", help="Hold an axis at a value (repeatable).")
@click.option("--trials", type=click.IntRange(min=1), default=3, show_default=True,
              help="Trials per variant, interleaved A B C A B C ...")
@click.option("--flamegraph", is_flag=True, help="Also profile each variant once with py-spy and write an SVG.")
@_axis_options
@_budget_options
def compare(vary, fixes, trials, flamegraph, fmt, out, seed, seconds, steps, **kwargs) -> None:
    """Compare variants: SPS table with spread, ratio to the first variant and a verdict.

    Every combination of the --vary values runs TRIALS times, interleaved, each trial in a fresh
    process. The first variant is the baseline. Writes sps.json and sps.md (and a flamegraph per
    variant with --flamegraph) under the results directory.

    Example: perfkit compare --vary wrapper=getattribute,getattr,none --trials 5 --seconds 10
    """
    from perfkit.compare import SubprocessRunner, TrialFailed, plan_variants, run_compare
    from perfkit.render.table import render_learning, render_phases, render_sps, warnings_for

    try:
        values = _overrides(kwargs, fixes)
        varied = [parse_vary(v) for v in vary]
        names = [n for n, _ in varied]
        if len(set(names)) != len(names):
            raise ScenarioError(f"--vary names an axis twice: {', '.join(names)}")
        clash = sorted(set(names) & set(values))
        if clash:
            raise ScenarioError(f"axis {clash[0]!r} is both varied and fixed; drop one")
        base = Scenario.build(values, seed=seed)
        variant_list = plan_variants(base, varied)
    except ScenarioError as e:
        raise click.UsageError(str(e)) from None
    _check_device({**values, **{n: "cuda" for n, vs in varied if "cuda" in vs}})
    seconds, steps = _budget(seconds, steps)
    run_dir = _run_dir(out, "compare")
    if flamegraph:
        from perfkit.profilers import ProfilerUnavailable, pyspy

        try:
            pyspy.check()
        except ProfilerUnavailable as e:
            raise click.ClickException(str(e)) from None
    runner = SubprocessRunner(seconds=seconds, steps=steps)
    total = len(variant_list) * trials
    budget = f"{seconds:g} s" if seconds else f"{steps:,} agent-steps"
    click.echo(f"{len(variant_list)} variants x {trials} trials, {budget} each, interleaved -> {run_dir}", err=True)

    def on_trial(i, n, v, tr):
        click.echo(f"[{i + 1}/{n}] {v.label}: {tr.sps:,.0f} agent-steps/s "
                   f"(first window {tr.first_window_sps:,.0f}, {tr.seconds:.1f} s)", err=True)

    try:
        result = run_compare(variant_list, trials, runner, run_dir, on_trial)
    except TrialFailed as e:
        raise click.ClickException(f"{e}\n(finished trials are in {run_dir / 'sps.json'})") from None
    if flamegraph and not result.interrupted:
        _flamegraphs(result, variant_list, runner, run_dir)
    tables = [
        "## Throughput (agent-steps/s, steady state, warm-up window excluded)", render_sps(result, fmt),
        "## Where the time goes", render_phases(result, fmt),
        "## Learning (per episode, last windows of each trial)", render_learning(result, fmt),
    ]
    warn = warnings_for(result)
    if warn:
        tables += ["## Warnings", "\n".join(f"- {w}" for w in warn)]
    if result.profiles:
        tables += ["## Flamegraphs (py-spy)", "\n".join(
            f"- {label}: {p['svg']} (profiled run {p['sps']:,.0f} agent-steps/s, "
            f"{p['overhead_ratio']:.3f}x unprofiled median)" for label, p in result.profiles.items())]
    text = "\n\n".join(tables) + "\n"
    from perfkit.results import atomic_write_text

    atomic_write_text(run_dir / "sps.md", text)
    click.echo(text)
    click.echo(f"wrote {run_dir / 'sps.json'} and {run_dir / 'sps.md'}", err=True)
    if result.interrupted:
        sys.exit(130)


def _flamegraphs(result, variant_list, runner, run_dir: Path) -> None:
    from dataclasses import replace

    from perfkit.compare import TrialFailed
    from perfkit.profilers import pyspy
    from perfkit.stats import summarize

    for v in variant_list:
        svg = run_dir / f"flame-{v.slug}.svg"
        click.echo(f"profiling {v.label} with py-spy -> {svg}", err=True)
        prof = replace(runner, prefix=pyspy.prefix(svg))
        try:
            tr = prof(v, 0, run_dir / "profiles" / v.slug / "trial.json")
        except TrialFailed as e:
            click.echo(f"py-spy run failed for {v.label}: {e}", err=True)
            continue
        base = result.sps(v.label)
        result.profiles[v.label] = {
            "svg": str(svg), "sps": tr.sps,
            "overhead_ratio": tr.sps / summarize(base).median if base else float("nan"),
        }
    result.save(run_dir / "sps.json")
