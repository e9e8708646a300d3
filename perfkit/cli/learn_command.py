"""`perfkit learn`: did B stop learning? (registered on the group in main.py)."""

from __future__ import annotations

import sys

import click

from perfkit.cli import options as opts

DEFAULT_STEPS = 1_000_000
DEFAULT_SEEDS = 5
DEFAULT_MAX_SEEDS = 20  # with --precision


def parse_metric(text: str) -> tuple[str, bool]:
    """NAME or NAME:min (lower is better) -> (name, lower_is_better)."""
    name, sep, how = text.rpartition(":")
    if sep and how in ("min", "max"):
        return name, how == "min"
    return text, False


@click.command()
@click.option("--vary", multiple=True, metavar="AXIS=V1,V2,...",
              help="Axis to vary and its values (repeatable; every combination runs). The first variant is the "
                   "reference of every difference.")
@click.option("--steps", type=click.IntRange(min=1), default=DEFAULT_STEPS, show_default=True, metavar="N",
              help="Agent-steps every seed of every variant trains: learning is compared at equal experience, "
                   "never at equal seconds (a faster variant would see more).")
@click.option("--seeds", type=click.IntRange(min=1), default=DEFAULT_SEEDS, show_default=True, metavar="K",
              help="Seeds per variant (at least 2 for an interval; with --precision, the seeds run before the "
                   "rule may stop). Seed s of every variant sees the same env seeds and initial policy.")
@click.option("--precision", type=opts.FiniteRange(min=0.001, max=10), default=None, metavar="P",
              help="After the first --seeds seeds, run as many more as their spread says the interval of every "
                   "asked metric's difference needs to be within ±P of the reference's value (e.g. 0.2), at most "
                   "--max-seeds (Stein's two-stage rule: decided once, so it does not make verdicts more likely).")
@click.option("--max-seeds", type=click.IntRange(min=2), default=None, metavar="K",
              help=f"With --precision: the most seeds per variant (default {DEFAULT_MAX_SEEDS}).")
@click.option("--max-minutes", type=opts.FiniteRange(min=0.1), default=None, metavar="M",
              help="With --precision: start no more seeds after M minutes (the seeds under way finish; the first "
                   "--seeds always run).")
@click.option("--metric", "metrics", multiple=True, metavar="NAME[:min]",
              help="An episode metric to give a verdict on (repeatable; NAME:min when lower is better). Default: "
                   "heart.get when the env reports it, else episode_return. Every other metric the episodes "
                   "report is shown too, without a verdict.")
@click.option("--parallel", type=click.IntRange(min=1), default=None, metavar="J",
              help="Seeds trained side by side, each in its own process (default: one per core a trial keeps "
                   "busy; on CUDA at most 4 per GPU). Learning is compared at equal steps, so trials need not be "
                   "timed apart. With --backend ray: seeds per node.")
@click.option("--pairing", type=click.Choice(["seed", "none"]), default="seed", show_default=True,
              help="seed: variant B's seed s is A's seed s, and the verdict rests on the per-seed differences. "
                   "none: every variant gets its own seeds (Welch's interval), e.g. to check that twins agree.")
@click.option("--cmd", "cmds", multiple=True, metavar="NAME=COMMAND",
              help="Your own training command instead of perfkit's trainer (repeatable; the first is the "
                   "reference). {seed} in it is replaced by each seed (PERFKIT_SEED is set too); it runs until its "
                   "step counter (--progress) reaches --steps, then is stopped, or until it ends by itself (give it "
                   "a budget of at least --steps). --metric NAME=REGEX reads a metric from its output (default: "
                   "episodic_return, as CleanRL prints it). Vary it with --vary env:VAR=V1,V2.")
@click.option("--progress", default="auto", show_default=True, metavar="REGEX|NAME",
              help="--cmd: how to read the cumulative step counter from each line the command prints: a regex "
                   "whose group 1 is the count, or cleanrl, sb3, puffer, steps, auto (as compare --cmd).")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: seeds on this machine. ray: seeds on the nodes of a Ray cluster, every node training "
                   "--parallel seeds at once (default: one per core a seed keeps busy), each seed in a fresh process "
                   "given its share of the node; a seed lost with its node runs again elsewhere. Needs pip install "
                   "'perfkit[ray]', and perfkit, your env or command importable on every node.")
@click.option("--ray-address", default=None, metavar="auto|HOST:PORT",
              help="--backend ray: the cluster to use; auto (default) finds the one started on this machine "
                   "with `ray start`.")
@click.option("--start-timeout", type=opts.FiniteRange(min=1), default=120.0, show_default=True, metavar="S",
              help="--cmd: a seed fails when its command prints no step count within S seconds.")
@opts.scenario_options
@opts.trainer_options
@opts.output_options
def learn(vary, steps, seeds, precision, max_seeds, max_minutes, metrics, parallel, pairing, cmds, progress,
          backend, ray_address, start_timeout, fixes, seed, num_envs, ppo, fmt, out, force, **kwargs) -> None:
    """Did B stop learning? Every variant trains --steps agent-steps under --seeds seeds (fresh
    processes, several side by side), and for each asked metric prints the final value across seeds
    (interquartile mean with a bootstrap 95% interval), the difference B − A with its paired
    t-interval, the probability that a seed of B ends better than one of A, a verdict (learns worse,
    learns better, no significant difference), and agent-steps to reach half of A's improvement.

    A seed's final value is the mean over the episodes in its last 20% of steps. Writes learn.json
    after every finished seed, and learn.md and learning.png (each seed faint, the IQM with its band)
    at the end. Ctrl-C stops the seeds under way and prints the table of those that finished. Exit
    status: 0, 1 if a seed failed, 130 if interrupted.

    Example: perfkit learn --vary preset=basic_easy_shaped,make_arena --steps 500000 --seeds 5

    Example: perfkit learn --vary env=mypkg.envs:make,mypkg.envs_v2:make --metric score --precision 0.2

    Example: perfkit learn --backend ray --ray-address HEAD:6379 --vary preset=basic_easy_shaped,make_arena
    --seeds 20

    Example: perfkit learn --cmd base='python ppo.py --seed {seed} --total-timesteps 200000' --cmd
    lr='python ppo.py --seed {seed} --total-timesteps 200000 --learning-rate 1e-4' --steps 200000
    """
    from perfkit.core.threads import available_cores

    if seeds < 2:
        raise click.UsageError(f"--seeds {seeds}: an interval, and so a learning verdict, needs at least 2 seeds "
                               "per variant (5 or more to see a modest difference)")
    if max_seeds is not None and not precision:
        raise click.UsageError("--max-seeds is the limit of --precision's rule; without --precision exactly --seeds "
                               "seeds run")
    if max_minutes is not None and not precision:
        raise click.UsageError("--max-minutes limits --precision's rule; without --precision exactly --seeds seeds run")
    max_seeds = max_seeds or max(DEFAULT_MAX_SEEDS, seeds) if precision else seeds
    if max_seeds < seeds:
        raise click.UsageError(f"--max-seeds {max_seeds} is below --seeds {seeds}")
    ctx = click.get_current_context()
    if backend == "ray":
        _require_ray()
    elif ray_address is not None:
        raise click.UsageError("--ray-address is for --backend ray (the default backend is local)")
    for name in ("progress", "start_timeout"):
        if not cmds and ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT:
            raise click.UsageError(f"--{name.replace('_', '-')} reads your own command's output: give --cmd NAME=COMMAND")
    parsed = [parse_metric(m) for m in metrics]
    if cmds:
        parsed = _command_metrics(parsed)
    names = [n for n, _ in parsed]
    if len(set(names)) != len(names):
        raise click.UsageError(f"--metric names a metric twice: {', '.join(names)}")
    if cmds:
        variants, command = _command_variants(cmds, vary, fixes, kwargs, num_envs, ppo, progress, metrics,
                                              start_timeout)
    else:
        base, varied = opts.scenario_from_options(kwargs, fixes, seed, vary)
        variants, _ = opts.plan_and_mode(base, varied, "process")
        command = None
    from perfkit.commands import learning
    from perfkit.records.learning import SEED_SPACING, seed_of

    last = seed_of(pairing == "seed", len(variants) - 1, seed + max_seeds - 1) + SEED_SPACING - 1
    if last > 2**32 - 1:
        raise click.UsageError(f"--seed {seed}: its seeds' env seeds would go up to {last:,}, past 2**32 - 1 (each "
                               f"seed's envs take a block of {SEED_SPACING:,}); give a smaller --seed")
    if num_envs is not None and num_envs > SEED_SPACING:
        raise click.UsageError(f"--num-envs {num_envs}: learn gives each seed a block of {SEED_SPACING:,} env seeds, so "
                               f"at most {SEED_SPACING:,} envs per trial")

    per_node, workers = parallel, 0
    if command is not None:
        asked = names or ["episodic_return"]
        parallel = parallel or learning.auto_parallel()
        unseeded = [v.label for v in variants if learning.SEED_FIELD not in v.scenario.text]  # type: ignore[attr-defined]
        if unseeded:
            click.echo(f"note: {', '.join(unseeded)}: no {learning.SEED_FIELD} in the command, so every seed runs the "
                       "same command line (only PERFKIT_SEED differs): seeds differ only if the trainer reads it or "
                       "seeds itself at random", err=True)
    else:
        try:
            checks = [learning.preflight(v) for v in variants]
            seen = _common([c.metrics for c in checks])
            asked = learning.choose_metrics(names, seen)
            for v, c in zip(variants, checks, strict=True):
                learning.check_budget(steps, c.agents, learning.num_envs_of(v, num_envs), learning.num_steps_of(ppo))
        except learning.LearnInputError as e:
            raise click.UsageError(str(e)) from None
        if seen is None:
            click.echo("note: no episode ended in a short random-action run of the env, so the metrics could not be "
                       "checked before training", err=True)
        workers = learning.workers_of(variants[0])
        parallel = parallel or learning.auto_parallel(workers, learning.gpus_of(variants)
                                                      if backend == "local" else 0)
    runner, nodes = None, None
    if backend == "ray":  # before the results directory: an unreachable cluster leaves nothing behind
        runner = _start_cluster(ray_address or "auto", per_node, workers)
        parallel, nodes = runner.parallel, runner.infos
    job = learning.LearnJob(variants, steps, seeds, max_seeds, asked,
                            lower_is_better=[n for n, low in parsed if low], precision=precision,
                            max_seconds=60 * max_minutes if max_minutes else None, parallel=parallel,
                            ppo=ppo or {}, num_envs=num_envs, first_seed=seed, paired=pairing == "seed",
                            command=command, nodes=nodes)
    run_dir = opts.run_dir(out, "learn", force)
    until = (f"{seeds} seeds, then as many as their spread says ±{precision:.1%} of the reference needs (at most "
             f"{max_seeds}"
             f"{f', {max_minutes:g} min' if max_minutes else ''})" if precision else f"{seeds} seeds")
    where = f"on {len(nodes)} Ray node(s)" if nodes else f"({available_cores()} cores)"
    click.echo(f"{len(variants)} variant(s) x {until}, {steps:,} agent-steps per seed, {parallel} side by side "
               f"{where}, verdict on {', '.join(asked)} -> {run_dir}", err=True)
    if nodes:
        click.echo("ray: " + ", ".join(f"{i['host']}/{nid[:8]} ({i['slots']} seed(s) at once, {i['cores_per_seed']} "
                                       f"core(s) each{', ' + i['gpu'] if i.get('gpu') else ''})"
                                       for nid, i in nodes.items()), err=True)
    from perfkit.core.children import stop_on_sigterm
    from perfkit.render.report import render_learn

    with stop_on_sigterm():
        result = learning.run(job, run_dir, _on_trial(asked[0]), runner=runner)
    rendered = render_learn(result, fmt)
    opts.write_files(run_dir, rendered.files)
    click.echo(rendered.text)
    click.echo(f"wrote {run_dir / 'learn.json'}, {run_dir / 'learn.md'} and {run_dir / 'learning.png'}", err=True)
    if result.interrupted:
        sys.exit(130)
    if any(t.status == "failed" for ts in result.trials.values() for t in ts):
        sys.exit(1)


def _require_ray() -> None:
    from perfkit.engine.cluster import ClusterError, require_ray

    try:
        require_ray()
    except ClusterError as e:
        raise click.UsageError(str(e)) from None


def _start_cluster(address: str, per_node: int | None, workers: int):
    """The cluster's seed slots, started (ended when the command ends); a usage error when the
    cluster cannot be reached or has no node for trials."""
    from perfkit.engine.cluster import ClusterError
    from perfkit.engine.cluster_seeds import ClusterSeeds

    runner = ClusterSeeds(address, per_node=per_node, workers=workers)
    try:
        runner.__enter__()
    except ClusterError as e:
        raise click.UsageError(str(e)) from None
    click.get_current_context().call_on_close(runner.__exit__)
    return runner


def _command_metrics(parsed: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """--cmd: each --metric is NAME=REGEX or a known NAME (compare --cmd's form), with :min/:max."""
    from perfkit.core.progress import ProgressError, compile_metric

    try:
        return [(compile_metric(spec)[0], low) for spec, low in parsed]
    except ProgressError as e:
        raise click.UsageError(str(e)) from None


def _command_variants(cmds, vary, fixes, kwargs, num_envs, ppo, progress, metrics, start_timeout):
    """learn --cmd: the commands crossed with env: axes, checked before any seed runs."""
    from perfkit.commands.learning import CommandLearning
    from perfkit.core.command import CommandError, check_startable, plan_commands
    from perfkit.core.progress import ProgressError, compile_progress

    opts.check_command_axes(vary, fixes, kwargs)
    for flag, given in (("--num-envs", num_envs is not None), ("--ppo", bool(ppo))):
        if given:
            raise click.UsageError(f"{flag} is for the built-in trainer; with --cmd your command runs as it is")
    try:
        compile_progress(progress)
        variants = plan_commands(list(cmds), list(vary))
        check_startable(variants)
    except (CommandError, ProgressError) as e:
        raise click.UsageError(str(e)) from None
    specs = tuple(parse_metric(m)[0] for m in metrics)
    return variants, CommandLearning(progress, specs, start_timeout)


def _common(seen: list[list[str] | None]) -> list[str] | None:
    """Metrics every variant's env reported (None when no episode ended for any of them)."""
    known = [set(s) for s in seen if s is not None]
    return sorted(set.intersection(*known)) if known else None


def _on_trial(metric: str):
    from perfkit.core import learning_stats as ls

    def on_trial(i: int, n: int, label: str, seed: int, tr) -> None:
        if tr.status == "failed":
            click.echo(f"[{i}/{n}] {label} seed {seed}: FAILED ({(tr.error or '').splitlines()[0]})", err=True)
            return
        value = ls.final_value(ls.points(tr.windows, metric), tr.agent_steps)
        shown = "no episodes" if value != value else f"{metric} {value:.3f}"
        where = f" on {tr.node.get('host', '?')}/{str(tr.node.get('id', ''))[:8]}" if tr.node else ""
        again = f" (run again after its node was lost {tr.requeued}x)" if tr.requeued else ""
        click.echo(f"[{i}/{n}] {label} seed {seed}: {tr.agent_steps:,} agent-steps in "
                   f"{(tr.process_s or tr.seconds):.0f} s ({tr.sps:,.0f}/s), {shown}{where}{again}", err=True)

    return on_trial
