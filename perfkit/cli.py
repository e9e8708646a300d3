"""perfkit's command line. Click only: parse, build scenarios, call the library, render."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import numpy as np
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


def _parse_ppo(ctx, param, values: tuple[str, ...]) -> dict:
    from dataclasses import fields

    from perfkit.train.ppo import PPOConfig

    known = {f.name: f.type for f in fields(PPOConfig)}
    out: dict = {}
    for text in values:
        key, sep, raw = text.partition("=")
        if not sep or key not in known:
            raise click.BadParameter(f"{text!r}: expected KEY=VALUE with KEY one of {', '.join(known)}")
        kind = float if known[key] in (float, "float") else int
        try:
            out[key] = kind(raw)
        except ValueError:
            raise click.BadParameter(f"{text!r}: {key} takes a{'n integer' if kind is int else ' number'}") from None
    return out


def _budget_options(f):
    f = click.option("--fix", "fixes", multiple=True, metavar="AXIS=VALUE",
                     help="Set an axis by name, like the --<axis> options (repeatable).")(f)
    f = click.option("--ppo", "ppo", multiple=True, metavar="KEY=VALUE", callback=_parse_ppo,
                     help="Override a PPO setting, e.g. --ppo minibatch_size=16384 (repeatable).")(f)
    f = click.option("--num-envs", type=click.IntRange(min=1), default=None,
                     help="Arenas per trial (24 agents each; default 4 = 96 agents). Rounded up to a "
                          "multiple of the worker count.")(f)
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


def _check_env(values: dict[str, str]) -> None:
    env = values.get("env", "arena")
    if env == "mettagrid":
        from envs.mettagrid import INSTALL_HINT, available

        if not available():
            raise click.UsageError(INSTALL_HINT)
    elif ":" in env:
        import importlib

        module, _, attr = env.partition(":")
        try:
            if not callable(getattr(importlib.import_module(module), attr)):
                raise AttributeError(f"{attr} is not callable")
        except (ImportError, AttributeError) as e:
            raise click.UsageError(f"--env {env}: cannot load the factory ({e}); expected pkg.module:callable "
                                   "taking (buf=None, seed=0) and returning a pufferlib.PufferEnv") from None


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

    \b
    Start here:
      perfkit variants                                  the axes and their values
      perfkit compare --vary wrapper=getattribute,getattr,none --flamegraph
      perfkit diagnose --preset make_arena              learning signal, without training
      perfkit profile --with pyspy --with torch         where the time goes
      perfkit gate --checks-file bench/gate_checks.txt  the CI gate
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
def run(fmt, out, seed, seconds, steps, num_envs, ppo, fixes, **kwargs) -> None:
    """Run ONE trial and print its SPS, phase breakdown and learning stats.

    Example: perfkit run --wrapper getattribute --seconds 20
    """
    from perfkit.render.table import render_trial
    from perfkit.trial import run_trial

    try:
        values = _overrides(kwargs, fixes)
        scenario = Scenario.build(values, seed=seed)
    except ScenarioError as e:
        raise click.UsageError(str(e)) from None
    _check_device(values)
    _check_env(values)
    seconds, steps = _budget(seconds, steps)
    run_dir = _run_dir(out, "run")
    click.echo(f"running {scenario.label()} for {f'{seconds:g} s' if seconds else f'{steps:,} agent-steps'} ...",
               err=True)

    def on_window(w):
        click.echo(f"  window {w.index}: {w.sps:,.0f} agent-steps/s", err=True)

    trial = run_trial(scenario, seconds=seconds, steps=steps, out_dir=str(run_dir), on_window=on_window,
                      ppo=ppo, **({"num_envs": num_envs} if num_envs else {}))
    trial.save(run_dir / "trial.json")
    click.echo(render_trial(trial, fmt))
    click.echo(f"\nwrote {run_dir / 'trial.json'}", err=True)
    if trial.interrupted:
        sys.exit(130)


@main.command()
@click.option("--vary", "vary", multiple=True, metavar="AXIS=V1,V2,...",
              help="Axis to vary and its values; repeat to cross several axes (every combination runs).")
@click.option("--trials", type=click.IntRange(min=1), default=3, show_default=True,
              help="Trials per variant, interleaved A B C A B C ...")
@click.option("--flamegraph", is_flag=True, help="Also profile each variant once with py-spy and write an SVG.")
@_axis_options
@_budget_options
def compare(vary, fixes, trials, flamegraph, fmt, out, seed, seconds, steps, num_envs, ppo, **kwargs) -> None:
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
    _check_env({**values, **{n: "mettagrid" for n, vs in varied if "mettagrid" in vs}})
    seconds, steps = _budget(seconds, steps)
    run_dir = _run_dir(out, "compare")
    if flamegraph:
        from perfkit.profilers import ProfilerUnavailable, pyspy

        try:
            pyspy.check()
        except ProfilerUnavailable as e:
            raise click.ClickException(str(e)) from None
    runner = SubprocessRunner(seconds=seconds, steps=steps, ppo=ppo, num_envs=num_envs)
    budget = f"{seconds:g} s" if seconds else f"{steps:,} agent-steps"
    click.echo(f"{len(variant_list)} variants x {trials} trials, {budget} each, interleaved -> {run_dir}", err=True)

    def on_trial(i, n, v, tr):
        click.echo(f"[{i + 1}/{n}] {v.label}: {tr.sps:,.0f} agent-steps/s "
                   f"(first window {tr.first_window_sps:,.0f}, {tr.seconds:.1f} s)", err=True)

    try:
        result = run_compare(variant_list, trials, runner, run_dir, on_trial)
    except TrialFailed as e:
        raise click.ClickException(f"{e}\n(finished trials are in {run_dir / 'sps.json'})") from None
    diffs = _flamegraphs(result, variant_list, runner, run_dir, fmt) if flamegraph and not result.interrupted else []
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
            f"- {label}: {p['files']['svg']} (profiled run {p['sps']:,.0f} agent-steps/s, "
            f"{p['overhead_ratio']:.3f}x the unprofiled median)" for label, p in result.profiles.items()), *diffs]
    from perfkit.render.plots import PLOTS
    from perfkit.results import atomic_write_bytes, atomic_write_text

    for name, render in PLOTS.items():
        atomic_write_bytes(run_dir / name, render(result))
    tables += ["## Plots", "![throughput](sps.png)\n\n![learning curves](learning.png)\n\n![phases](phases.png)"]
    text = "\n\n".join(tables) + "\n"
    atomic_write_text(run_dir / "sps.md", text)
    click.echo(text)
    click.echo(f"wrote {run_dir / 'sps.json'}, {run_dir / 'sps.md'} and plots (sps.png, learning.png, "
               "phases.png)", err=True)
    if result.interrupted:
        sys.exit(130)


TRAIN_LOOP = "train (perfkit/train/ppo.py)"


def _flamegraphs(result, variant_list, runner, run_dir: Path, fmt: str) -> list[str]:
    """Profile each variant once with py-spy; diff every variant against the first. Returns
    markdown sections for sps.md."""
    from perfkit.compare import TrialFailed
    from perfkit.flame.folded import read_folded
    from perfkit.flame.report import write_flamediff
    from perfkit.profilers import pyspy
    from perfkit.render.table import render_flamediff
    from perfkit.stats import summarize

    sections = []
    for v in variant_list:
        click.echo(f"profiling {v.label} with py-spy ...", err=True)
        try:
            r = pyspy.profile(runner, v, run_dir / "profiles" / v.slug)
        except TrialFailed as e:
            click.echo(f"py-spy run failed for {v.label}: {e}", err=True)
            continue
        base = result.sps(v.label)
        r["overhead_ratio"] = r["sps"] / summarize(base).median if base else float("nan")
        result.profiles[v.label] = r
        result.save(run_dir / "sps.json")
    first = variant_list[0].label
    if first in result.profiles:
        a = read_folded(result.profiles[first]["files"]["folded"]).focus(TRAIN_LOOP)
        for v in variant_list[1:]:
            if v.label not in result.profiles:
                continue
            b = read_folded(result.profiles[v.label]["files"]["folded"]).focus(TRAIN_LOOP)
            files, rows = write_flamediff(a, b, run_dir, first, v.label, stem=f"flamediff-{v.slug}")
            result.profiles[v.label]["flamediff"] = files
            sections.append(f"### {v.label} vs {first} (samples inside the training loop)\n\n"
                            f"{render_flamediff(rows, 'first', 'this', fmt)}\n\n"
                            f"differential flamegraphs: {files['on_b']} (this variant's shape), {files['on_a']} "
                            "(the first's)")
    result.save(run_dir / "sps.json")
    return sections


@main.command()
@click.option("--with", "tools", multiple=True, required=True, type=click.Choice(["pyspy", "torch", "scalene"]),
              help="Profiler to run the trial under (repeatable: each gets its own trial).")
@click.option("--rate", type=click.IntRange(min=1, max=10_000), default=100, show_default=True,
              help="py-spy samples per second.")
@click.option("--native", is_flag=True, help="py-spy: include native (C/C++) frames (slower).")
@click.option("--no-subprocesses", is_flag=True, help="py-spy: do not follow rollout worker processes.")
@click.option("--torch-schedule", default="skip_first=2,wait=1,warmup=1,active=2,repeat=1", show_default=True,
              metavar="K=V,...", help="torch.profiler schedule, in training epochs.")
@click.option("--scalene-memory", is_flag=True, help="Scalene: also profile memory (~120x slower: not for SPS).")
@_axis_options
@_budget_options
def profile(tools, rate, native, no_subprocesses, torch_schedule, scalene_memory, fmt, out, seed, seconds, steps,
            num_envs, ppo, fixes, **kwargs) -> None:
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

    try:
        values = _overrides(kwargs, fixes)
        scenario = Scenario.build(values, seed=seed)
    except ScenarioError as e:
        raise click.UsageError(str(e)) from None
    try:
        sched = {k: int(v) for k, v in (item.split("=", 1) for item in torch_schedule.split(","))}
        torch_cfg = torchprof.TorchProfileConfig(**sched)
    except (ValueError, TypeError):
        raise click.BadParameter(f"{torch_schedule!r}: expected skip_first=N,wait=N,warmup=N,active=N,repeat=N",
                                 param_hint="--torch-schedule") from None
    _check_device(values)
    _check_env(values)
    seconds, steps = _budget(seconds, steps)
    run_dir = _run_dir(out, "profile")
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


@main.command()
@click.argument("a", type=click.Path(exists=True, path_type=Path))
@click.argument("b", type=click.Path(exists=True, path_type=Path))
@click.option("--top", type=click.IntRange(min=1), default=15, show_default=True, help="Rows in the frame table.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for the SVGs and table (default results/<timestamp>-flamediff).")
@click.option("--focus", default=None, metavar="TEXT",
              help=f"Keep only samples through a frame containing TEXT, e.g. '{TRAIN_LOOP}' (leaves out start-up).")
@click.option("--format", "fmt", type=click.Choice(tabulate_formats), default="github", show_default=True)
def flamediff(a, b, top, out, focus, fmt) -> None:
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
    run_dir = _run_dir(out, "flamediff")
    files, rows = write_flamediff(pa, pb, run_dir, "A", "B", top=top)
    table = render_flamediff(rows, "A", "B", fmt)
    atomic_write_text(run_dir / "flamediff.md", f"A = {a}\nB = {b}\n\n{table}\n")
    click.echo(f"A = {a} ({pa.total:g} samples)\nB = {b} ({pb.total:g} samples)\n\n{table}")
    click.echo(f"\nwrote {files['on_b']}, {files['on_a']} and {run_dir / 'flamediff.md'}", err=True)


def _round_progress(r: int, n: int) -> None:
    if r == n or r % 5 == 0:
        click.echo(f"round {r}/{n}", err=True)


@main.command()
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
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for gate.json (default results/<timestamp>-gate).")
@click.option("--format", "fmt", type=click.Choice(tabulate_formats), default="github", show_default=True)
def gate(checks, checks_file, baseline_path, update_baseline, baseline_runs, rounds, block_steps, quick, out,
         fmt) -> None:
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
        texts += [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]
    if not texts:
        raise click.UsageError("no checks: give --check TEXT or --checks-file FILE")
    try:
        parsed = [g.parse_check(t) for t in texts]
        baseline = None
        if any(c.against_baseline for c in parsed) and not update_baseline:
            baseline = g.load_baseline(baseline_path)
    except g.GateError as e:
        raise click.UsageError(str(e)) from None
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
    run_dir = _run_dir(out, "gate")
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


@main.command()
@click.option("--max-unreachable", type=click.FloatRange(0, 1), default=0.10, show_default=True,
              help="Fail when more than this fraction of first episodes end before a heart is possible.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for diagnose.json (default results/<timestamp>-diagnose).")
@click.option("--format", "fmt", type=click.Choice(tabulate_formats), default="github", show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--fix", "fixes", multiple=True, metavar="AXIS=VALUE", help="Set an axis by name (repeatable).")
@_axis_options
def diagnose(max_unreachable, out, fmt, seed, fixes, **kwargs) -> None:
    """Check the training signal without training: is the recipe used, can a heart be reached,
    do workers desync, what do scripted policies score, are observations sane and identical
    across wrapper variants? Exit 1 when a check fails.

    Example: perfkit diagnose --preset make_arena --desync early-reset --desync-rng shared
    """
    from perfkit import diagnose as d
    from perfkit.render.table import render_diagnose
    from perfkit.results import write_json

    try:
        values = _overrides(kwargs, fixes)
        scenario = Scenario.build(values, seed=seed)
    except ScenarioError as e:
        raise click.UsageError(str(e)) from None
    if scenario["env"] != "arena":
        raise click.UsageError(f"diagnose knows the reference arena only; got --env {scenario['env']}")
    run_dir = _run_dir(out, "diagnose")
    outcomes = d.diagnose(scenario, max_unreachable,
                          on_check=lambda o: click.echo(f"{o.name}: {o.verdict}", err=True))
    write_json(run_dir / "diagnose.json", "diagnose", {"scenario": scenario.to_dict(), **d.to_dict(outcomes)})
    click.echo(render_diagnose(outcomes, fmt))
    click.echo(f"\nwrote {run_dir / 'diagnose.json'}", err=True)
    if any(o.verdict == d.FAIL for o in outcomes):
        sys.exit(1)
