"""perfkit's command line. Click only: parse, build scenarios, call the library, render, write.

This module holds the group, the measuring commands (variants, run, compare) and `report`;
tools.py the profiling, gate and diagnose commands, explain_command.py and bisect_command.py the
others, all added to the group below; options.py what they share.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from perfkit.cli import options as opts
from perfkit.cli.bisect_command import bisect
from perfkit.cli.explain_command import explain
from perfkit.cli.learn_command import learn
from perfkit.cli.tools import diagnose, flamediff, gate, profile
from perfkit.core.scenario import AXES

FLAMEGRAPH_RATE = 50  # compare --flamegraph: py-spy samples per second in every block


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="perfkit")
def main() -> None:
    """perfkit: find out why RL training got slower or stopped learning.

    Each suspect is an axis (wrapper dispatch, config timing, checkpoint cadence, workers, desync,
    arena preset, device, threads); a variant is one value per axis. perfkit runs the same PPO loop
    under each variant, interleaved (epoch by epoch in one process, or trial by trial in fresh
    processes for axes that change the process), and reports agent-steps/s with a paired ratio,
    its 95% interval and a verdict, the per-phase time split and learning metrics.
    The axes are explained in docs/axes.md.

    \b
    Start here:
      perfkit variants                                  the axes and their values
      perfkit compare --vary wrapper=getattribute,getattr,none --flamegraph
      perfkit compare --backend ray --vary ...          the same sweep on a Ray cluster's nodes
      perfkit compare --cmd a='python ppo.py' --cmd b=...your own training script
      perfkit learn --vary fault=none,quarter-lr        did it stop learning? a verdict across seeds
      perfkit diagnose --preset make_arena              learning signal, without training
      perfkit explain --vary wrapper=none,getattribute  why one is slower: phases, functions
      perfkit bisect --repo R --good A --bad B --env M  which commit did it
      perfkit profile --with pyspy --with torch         where the time goes
      perfkit gate --checks-file bench/gate_checks.txt  the CI gate
      perfkit report results/DIR                        re-render a past run's tables and plots
    """


# The profiling, gate, diagnose, explain and bisect commands are defined beside this module; the others below.
main.add_command(profile)
main.add_command(flamediff)
main.add_command(gate)
main.add_command(diagnose)
main.add_command(explain)
main.add_command(bisect)
main.add_command(learn)


@main.command()
def variants() -> None:
    """List the axes, their values and defaults (explained in docs/axes.md)."""
    from tabulate import tabulate

    rows = [[a.name, a.values_text, a.default, a.help] for a in AXES.values()]
    click.echo(tabulate(rows, headers=["axis", "values", "default", "what it changes"], tablefmt="github"))
    click.echo("\nThe axes are explained in docs/axes.md: what each models, its values, and what the original "
               "investigation found.")


@main.command()
@opts.scenario_options
@opts.budget_options
@opts.trainer_options
@opts.output_options
def run(fmt, out, force, seed, seconds, steps, num_envs, ppo, fixes, **kwargs) -> None:
    """Run ONE trial and print its SPS, phase breakdown and learning stats.

    The trial runs in this process. If the env or the update raises, the windows measured before
    are still written to trial.json with the error, and the exit status is 1.

    Example: perfkit run --wrapper getattribute --seconds 20
    """
    from perfkit.core.children import stop_on_sigterm
    from perfkit.engine.trial import run_trial
    from perfkit.render.table import render_trial

    scenario, _ = opts.scenario_from_options(kwargs, fixes, seed)
    seconds, steps = opts.budget(seconds, steps)
    run_dir = opts.run_dir(out, "run", force)
    click.echo(f"running {scenario.label()} for {f'{seconds:g} s' if seconds else f'{steps:,} agent-steps'} ...",
               err=True)

    def on_window(w):
        click.echo(f"  window {w.index}: {w.sps:,.0f} agent-steps/s", err=True)

    with stop_on_sigterm():
        trial = run_trial(scenario, seconds=seconds, steps=steps, out_dir=str(run_dir), on_window=on_window,
                          ppo=ppo, **({"num_envs": num_envs} if num_envs else {}))
    trial.save(run_dir / "trial.json")
    if trial.windows:
        click.echo(render_trial(trial, fmt))
    click.echo(f"\nwrote {run_dir / 'trial.json'}", err=True)
    if trial.error:
        click.echo(f"error: the trial failed after {len(trial.windows)} windows: {trial.error}", err=True)
        sys.exit(1)
    if trial.interrupted:
        sys.exit(130)


@main.command()
@click.option("--vary", "vary", multiple=True, metavar="AXIS=V1,V2,...",
              help="Axis to vary and its values; repeat to cross several axes (every combination runs).")
@click.option("--trials", type=click.IntRange(min=1), default=None,
              help="Rounds: every variant runs this many trials, interleaved A B C A B C ... "
                   "(default 3; with --precision, the most rounds to run).")
@click.option("--precision", type=opts.FiniteRange(min=0.001, max=0.5), default=None, metavar="P",
              help="Add rounds until every ratio's 95% interval is within ±P (e.g. 0.02), at least 6 rounds, "
                   "at most --trials (default 20 with --precision) or --max-minutes. Stops on the "
                   "interval's width alone, so it does not make verdicts more likely.")
@click.option("--max-minutes", type=opts.FiniteRange(min=0.1), default=None, metavar="M",
              help="Stop adding rounds after M minutes (the round under way finishes).")
@click.option("--mode", type=click.Choice(["auto", "process", "inprocess", "interleave"]), default="auto",
              show_default=True,
              help="process: every trial in a fresh process. inprocess: all variants in one process, "
                   "their training loops interleaved epoch by epoch (many more pairs per minute; only when "
                   "the varied axes do not change the process: not workers, device or threads). interleave "
                   "(--cmd): every command started once and run in turns, paused while another runs. auto: "
                   "inprocess when it can, else process; interleave with --cmd.")
@click.option("--stop-on-failure", is_flag=True,
              help="Stop at the first failed trial (default: record it and go on).")
@click.option("--reruns", type=click.IntRange(min=0, max=5), default=1, show_default=True,
              help="Fresh processes: run a round again when other processes took the machine during it "
                   "(the sentinel's reading, never the SPS, decides), at most this many times per round; "
                   "the disturbed trials stay in sps.json, marked replaced.")
@click.option("--flamegraph", is_flag=True,
              help="Sample every block with py-spy (at 50 Hz, pausing the trainer for each stack read so no "
                   "stack is torn; every variant alike) and draw a flamegraph per variant from its steady "
                   "blocks, with differential flamegraphs against the first.")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: trials on this machine. ray: trials on the nodes of a Ray cluster, one trial per node "
                   "at a time, every round on one node, statistics blocked by node (needs the extra: "
                   "pip install 'perfkit[ray]'; fresh processes only, no --flamegraph).")
@click.option("--ray-address", default=None, metavar="auto|HOST:PORT",
              help="--backend ray: the cluster to use; auto (default) finds the one started on this machine "
                   "with `ray start`.")
@click.option("--ray-requeues", type=click.IntRange(min=0, max=10), default=2, show_default=True,
              help="--backend ray: times a round goes back in the queue when its node dies under it.")
@opts.command_options
@opts.processes_option
@opts.scenario_options
@opts.budget_options
@opts.trainer_options
@opts.output_options
def compare(vary, fixes, trials, precision, max_minutes, mode, stop_on_failure, reruns, flamegraph, backend,
            ray_address, ray_requeues, fmt, out, force, seed, seconds, steps, num_envs, ppo, cmds, progress, metrics,
            warmup_seconds, start_timeout, block_seconds, repo, revs, processes, **kwargs) -> None:
    """Compare variants: SPS table with spread, ratio to the first variant and a verdict.

    Every combination of the --vary values runs in rounds, interleaved: by default (--mode auto)
    all variants share one process, their training loops alternating epoch by epoch, and when the
    varied axes change the process itself (workers, device, threads) each trial runs in a fresh
    process. The first variant is the reference of every ratio. Writes sps.json after every trial,
    and sps.md and plots (and a flamegraph per variant with --flamegraph) at the end, under the
    results directory. A failed trial is recorded (exit status, stderr tail) and counted in the
    table, and the run goes on; Ctrl-C or SIGTERM stops the running trial and writes the table of
    what finished. Exit status: 0, 1 if any trial failed (or, with --backend ray, every node was
    lost), 130 if interrupted.

    Your own trainer instead: --cmd NAME=COMMAND (repeatable; the first is the reference), every
    command started once and run in turns of --block-seconds (paused while another runs), its
    throughput read from the step counter it prints (--progress), optionally crossed with
    environment variables (--vary env:VAR=V1,V2).

    Example: perfkit compare --vary wrapper=getattribute,getattr,none --trials 5 --seconds 10

    Example: perfkit compare --cmd base='python ppo.py' --cmd fast='python ppo.py --num-envs 8'
    """
    given = click.get_current_context().get_parameter_source("processes") != click.core.ParameterSource.DEFAULT
    if given and (not cmds or mode == "process"):
        raise click.UsageError(f"--processes {processes} is for --cmd in turns (--mode interleave): "
                               + ("with --mode process every trial is a fresh process already" if cmds else
                                  "the built-in trainer's variants share one process, or run fresh per trial"))
    if cmds:
        if ray_address is not None and backend != "ray":
            raise click.UsageError("--ray-address is for --backend ray (the default backend is local)")
        job = opts.command_job(cmds, vary, fixes, kwargs, mode, backend, flamegraph, steps, ppo, num_envs, progress,
                               metrics, warmup_seconds, start_timeout, seconds,
                               _rule(trials, precision, max_minutes, reruns), stop_on_failure, block_seconds,
                               repo, revs, processes, ray_address, ray_requeues)
        if backend == "ray":  # before the results directory: an unreachable cluster leaves nothing behind
            _connect_ray(ray_address or "auto")
        _run_and_report(job, opts.run_dir(out, "compare", force), fmt, max_minutes)
        return
    if revs:
        raise click.UsageError("--rev runs your command (--cmd) in a worktree of each revision; the built-in "
                               "trainer has no revisions: give --cmd NAME=COMMAND")
    if mode == "interleave":
        raise click.UsageError("--mode interleave runs --cmd commands in turns; the built-in trainer interleaves its "
                               "variants in one process with --mode inprocess (or auto)")
    if backend == "ray":
        opts.check_ray_backend(mode, flamegraph)
        mode = "process"
    elif ray_address is not None:
        raise click.UsageError("--ray-address is for --backend ray (the default backend is local)")
    base, varied = opts.scenario_from_options(kwargs, fixes, seed, vary)
    variant_list, inprocess = opts.plan_and_mode(base, varied, mode)
    seconds, steps = opts.budget(seconds, steps)
    # the engine loads only once the input is known to be good: usage errors stay instant
    from perfkit.commands import compare as compare_cmd
    from perfkit.engine.profilers.pyspy import Sampling
    from perfkit.engine.rounds import StopRule

    if backend == "ray":  # before the results directory: an unreachable cluster leaves nothing behind
        _connect_ray(ray_address or "auto")
    rule = StopRule(rounds=trials or (20 if precision or max_minutes else 3), precision=precision,
                    max_seconds=60 * max_minutes if max_minutes else None, reruns=reruns)
    run_dir = opts.run_dir(out, "compare", force)
    if flamegraph:
        _require_pyspy()
    job = compare_cmd.CompareJob(variant_list, rule, inprocess, seconds, steps, ppo or {}, num_envs,
                                 sampling=Sampling(FLAMEGRAPH_RATE) if flamegraph else None, backend=backend,
                                 ray_address=ray_address or "auto", ray_requeues=ray_requeues,
                                 stop_on_failure=stop_on_failure)
    _run_and_report(job, run_dir, fmt, max_minutes)


def _rule(trials, precision, max_minutes, reruns):
    """compare's stop rule: --trials rounds (3; 20 when stopping on precision or time)."""
    from perfkit.engine.rounds import StopRule

    return StopRule(rounds=trials or (20 if precision or max_minutes else 3), precision=precision,
                    max_seconds=60 * max_minutes if max_minutes else None, reruns=reruns)


def _run_and_report(job, run_dir: Path, fmt: str, max_minutes) -> None:
    """Run the compare, draw its flamegraphs if sampled, write and print its tables; the exit
    status says whether it was interrupted (130) or a trial failed (1)."""
    from perfkit.core.children import stop_on_sigterm
    from perfkit.render.report import render_compare

    click.echo(_plan_line(job, max_minutes, run_dir), err=True)
    with stop_on_sigterm():
        result = _run_job(job, run_dir)
    if job.sampling is not None:
        from perfkit.commands import flamegraphs

        flamegraphs.from_blocks(result, run_dir, job.sampling.rate)
    result.save(run_dir / "sps.json")
    rendered = render_compare(result, fmt)
    opts.write_files(run_dir, rendered.files)
    click.echo(rendered.text)
    click.echo(f"wrote {run_dir / 'sps.json'}, {run_dir / 'sps.md'} and plots (sps.png, learning.png, "
               "phases.png)", err=True)
    failed = sum(len(result.failed(v)) for v in result.variants)
    if result.interrupted:
        sys.exit(130)
    if result.nodes_all_lost:
        click.echo("every node of the cluster was lost before the sweep finished: the table holds what they measured",
                   err=True)
        sys.exit(1)
    if failed:
        click.echo(f"{failed} trial(s) failed: their errors are in {run_dir / 'sps.json'} and under Warnings",
                   err=True)
        sys.exit(1)


def _connect_ray(address: str) -> None:
    from perfkit.engine.cluster import ClusterError, connect, require_trial_nodes

    try:
        ray, connected = connect(address)
    except ClusterError as e:
        raise click.UsageError(str(e)) from None
    if connected:
        click.get_current_context().call_on_close(ray.shutdown)
    try:
        require_trial_nodes(ray)
    except ClusterError as e:
        raise click.UsageError(str(e)) from None


def _require_pyspy() -> None:
    from perfkit.engine.profilers import ProfilerUnavailable, pyspy

    try:
        pyspy.check()
    except ProfilerUnavailable as e:
        raise click.ClickException(str(e)) from None


def _plan_line(job, max_minutes, run_dir) -> str:
    rule, precision = job.rule, job.rule.precision
    budget = f"{job.seconds:g} s" if job.seconds else f"{job.steps:,} agent-steps"
    if job.interleave is not None:
        limit = f"{max_minutes:g} min" if max_minutes else f"{rule.rounds} x {budget} per command"
        until = f"until ±{precision:.1%} (at most {limit})" if precision else limit
        sets = job.interleave.processes
        sets = f", as {sets} sets of processes one after another" if sets > 1 else ""
        return (f"{len(job.variants)} commands run in turns of {job.interleave.block_seconds:g} s, each paused while "
                f"another runs{sets}, {until} -> {run_dir}")
    if job.inprocess:
        limit = f"{max_minutes:g} min" if max_minutes else f"{rule.rounds} x {budget} per variant"
        until = f"until ±{precision:.1%} (at most {limit})" if precision else limit
        return f"{len(job.variants)} variants in one process, epochs interleaved, {until} -> {run_dir}"
    until = f"until ±{precision:.1%} (at most {rule.rounds} rounds)" if precision else f"{rule.rounds} rounds"
    return f"{len(job.variants)} variants, {until}, {budget} each, interleaved -> {run_dir}"


def _on_trial(i, n, v, tr) -> None:
    where = f" on {tr.node['host']}/{tr.node['id'][:8]}" if tr.node else ""
    if tr.status == "lost":
        click.echo(f"[{i}/{n}] {v.label}: LOST with its node{where}; round {tr.round} re-queued", err=True)
    elif tr.status == "failed":
        click.echo(f"[{i}/{n}] {v.label}: FAILED ({tr.error.splitlines()[0]})", err=True)
    else:
        click.echo(f"[{i}/{n}] {v.label}: {tr.sps:,.0f} agent-steps/s "
                   f"(first window {tr.first_window_sps:,.0f}, {tr.seconds:.1f} s){where}", err=True)


def _on_round():
    """A line every few seconds while commands run in turns: the last round's SPS per command."""
    last = [0.0]

    def on_round(r: int, block: dict) -> None:
        if time.monotonic() - last[0] >= 5.0:
            last[0] = time.monotonic()
            cells = ", ".join(f"{k} {v:,.0f}" for k, v in block["sps"].items())
            click.echo(f"round {r + 1}: {cells} steps/s", err=True)

    return on_round


def _on_nodes(infos) -> None:
    names = ", ".join(f"{i['host']}/{nid[:8]} ({i['ray_cpus']:g} CPU{', ' + i['gpu'] if i.get('gpu') else ''})"
                      for nid, i in infos.items())
    click.echo(f"ray: {len(infos)} node(s), one trial per node at a time, each round on one node: {names}", err=True)


def _run_job(job, run_dir):
    from perfkit.commands import compare as compare_cmd

    if job.backend != "ray":
        return compare_cmd.run(job, run_dir, _on_trial, on_round=_on_round())
    from perfkit.engine.cluster import ClusterError

    try:
        return compare_cmd.run(job, run_dir, _on_trial, on_nodes=_on_nodes)
    except ClusterError as e:
        raise click.UsageError(str(e)) from None


@main.command()
@click.argument("results_dir", metavar="RESULTS_DIR", type=click.Path(path_type=Path))
@opts.format_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the re-rendered files (a compare's sps.md and plots) here instead of into RESULTS_DIR.")
def report(results_dir, fmt, out) -> None:
    """Re-render a past run from its record, without running anything.

    RESULTS_DIR is a results directory of any perfkit command, or its record: compare (sps.json:
    prints its tables and rewrites sps.md and the plots), explain (explain.json), run (trial.json),
    gate (gate.json), profile (profile.json), bisect (bisect.json), learn (learn.json: prints its
    tables and rewrites learn.md and learning.png) or diagnose (diagnose.json).
    With --out, the re-rendered files go there instead.

    Example: perfkit report results/20261127-compare --format plain
    """
    from perfkit.records.store import ResultsError
    from perfkit.render.report import rerender

    try:
        rendered = rerender(results_dir, fmt)
    except ResultsError as e:
        raise click.UsageError(str(e)) from None
    click.echo(rendered.text)
    if rendered.files:
        where = out or (results_dir if results_dir.is_dir() else results_dir.parent)
        opts.write_files(where, rendered.files)
        click.echo(f"wrote {', '.join(str(where / name) for name in rendered.files)}", err=True)
