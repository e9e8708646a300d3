"""`perfkit bisect`: the commit that moved SPS or a learning metric (registered in main.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from perfkit.cli import options as opts


@click.command()
@click.option("--repo", required=True, type=click.Path(path_type=Path),
              help="The git repository holding your env (its working tree and index are never touched).")
@click.option("--good", required=True, metavar="REV", help="A revision that was fast (or learned).")
@click.option("--bad", required=True, metavar="REV", help="A later revision that is slow (or does not learn).")
@click.option("--metric", default="sps", show_default=True, metavar="sps|KEY",
              help="sps (agent-steps/s), or a learning key the env reports per episode (hearts = heart.get, "
                   "episode_return, ...): then each round trains every commit afresh for --learn-epochs.")
@click.option("--max-minutes", type=opts.FiniteRange(min=0.1), default=15.0, show_default=True, metavar="M",
              help="Stop testing commits after M minutes (the record says how far it got).")
@click.option("--step-minutes", type=opts.FiniteRange(min=0.05), default=2.0, show_default=True, metavar="M",
              help="At most this long on one commit before calling it \"cannot tell\" and testing a neighbour.")
@click.option("--precision", type=opts.FiniteRange(min=0.001, max=0.5), default=0.01, show_default=True,
              metavar="P", help="Measure the regression between the ends to ±P (or a third of its size) first.")
@click.option("--block-seconds", type=opts.FiniteRange(min=0.05), default=None,
              help="Training per commit per round (sps): rounds rotate good, tested commit, bad "
                   "(default 0.5; 2 with --cmd).")
@click.option("--cmd", "cmd_text", default=None, metavar="COMMAND",
              help="Bisect your own training command instead of the built-in trainer on --env: it runs in each "
                   "commit's worktree, from the same subfolder you run perfkit in; its speed is read from the step "
                   "counter it prints (--progress), its turns paused and resumed as compare --cmd does.")
@click.option("--progress", default="auto", show_default=True, metavar="REGEX|NAME",
              help="--cmd: the step counter in the command's output (as compare --progress).")
@click.option("--warmup-seconds", type=opts.FiniteRange(min=0), default=10.0, show_default=True, metavar="S",
              help="--cmd: each commit's command runs alone this long after its first step count.")
@click.option("--start-timeout", type=opts.FiniteRange(min=1), default=120.0, show_default=True, metavar="S",
              help="--cmd: a commit whose command prints no step count within S seconds is skipped.")
@click.option("--learn-epochs", type=click.IntRange(min=2), default=40, show_default=True,
              help="With a learning --metric: epochs of one fresh training run per commit per round.")
@opts.scenario_options
@opts.trainer_options
@opts.output_options
def bisect(repo, good, bad, metric, max_minutes, step_minutes, precision, block_seconds, cmd_text, progress,
           warmup_seconds, start_timeout, learn_epochs, fmt, out, force, seed, num_envs, ppo, fixes, **kwargs) -> None:
    """Find the commit that made your env slower (or stop learning), despite noise.

    Every tested commit is checked out into its own git worktree under the results directory (your
    checkout is untouched; the worktrees are removed at the end, also on Ctrl-C). One trainer
    process imports your env (--env pkg.module:factory) from each commit's worktree (or its src/)
    in isolation; for every step, fresh trainers of good, the tested commit and bad take turns, a
    block of training each per round, side by side. A commit's level is 0 at good's speed and 1 at
    bad's; a sequential test (Wald's, each wrong answer about 0.5% likely) adds rounds until it can
    tell level 0 from 1, up to --step-minutes, then a neighbour is tested. A commit whose env fails
    to import or build is skipped. A commit slower than the bad end means two changes: both are
    searched for and reported. Writes bisect.json; prints the first bad commit with its diffstat
    and the evidence.

    Your own trainer: perfkit bisect --repo . --good v1.2 --bad HEAD --cmd 'python train.py'.

    Example: perfkit bisect --repo ../myenv --good v1.2 --bad HEAD --env myenv.arena:make
    """
    from perfkit.commands.bisection import Bisect, BisectError, BisectOptions, commit_range
    from perfkit.core.machine import machine_info
    from perfkit.core.scenario import Scenario, ScenarioError
    from perfkit.records.bisection import BisectRecord

    metric = {"hearts": "heart.get"}.get(metric, metric)
    if cmd_text is not None:
        return _bisect_command(repo, good, bad, metric, max_minutes, step_minutes, precision, block_seconds or 2.0,
                               cmd_text, progress, warmup_seconds, start_timeout, fmt, out, force, num_envs, ppo,
                               fixes, kwargs)
    block_seconds = block_seconds or 0.5
    try:
        values = opts.overrides(kwargs, fixes)
        if ":" not in values.get("env", ""):
            raise click.UsageError(f"--env {values.get('env', 'arena')!r}: name your env as pkg.module:factory, the "
                                   "code being bisected (imported from each commit's worktree)")
        values.setdefault("wrapper", "none")  # perfkit's curriculum wrapper is not the user's code
        scenario = Scenario.build(values, seed=seed)
    except ScenarioError as e:
        raise click.UsageError(str(e)) from None
    try:
        commits = commit_range(repo, good, bad)
    except BisectError as e:
        raise click.UsageError(str(e)) from None
    run_dir = opts.run_dir(out, "bisect", force)
    options = BisectOptions(metric=metric, block_seconds=block_seconds, learn_epochs=learn_epochs,
                            max_minutes=max_minutes, step_minutes=step_minutes, precision=precision)
    record = BisectRecord(str(Path(repo).resolve()), values["env"], metric,
                          [{"sha": c.sha, "subject": c.subject} for c in commits], dict(scenario.values),
                          vars(options).copy(), machine=machine_info())
    spec = {"values": dict(scenario.values), "ppo": ppo, "num_envs": num_envs, "seed": seed,
            "warmup_seconds": 2 * block_seconds}
    click.echo(f"{len(commits) - 1} commits from {commits[0].short} (good) to {commits[-1].short} (bad), "
               f"metric {metric}, at most {max_minutes:g} min -> {run_dir}", err=True)
    job = Bisect(repo, commits, spec, run_dir, options, record, progress=lambda m: click.echo(m, err=True))
    _run(job, record, run_dir, fmt)


def _run(job, record, run_dir: Path, fmt: str) -> None:
    from perfkit.commands.bisection import BisectError, Interrupts
    from perfkit.render.bisection import render_bisect

    # Ctrl-C or SIGTERM: the first stops the search; later ones cannot cut short its cleanup (the
    # trainers ended, the worktrees removed, bisect.json saved), nor the printing of the result, nor
    # the exit (130).
    with Interrupts(linger=True) as interrupts:
        try:
            job.run(lambda: record.save(run_dir / "bisect.json"), interrupts)
        except BisectError as e:
            raise click.UsageError(str(e)) from None
        except RuntimeError as e:  # an end that built, then failed: the steps so far are in bisect.json
            raise click.ClickException(f"{e} (the steps so far are in {run_dir / 'bisect.json'})") from None
        click.echo(render_bisect(record, fmt))
        click.echo(f"\nwrote {run_dir / 'bisect.json'}", err=True)
        if record.interrupted or interrupts.received:
            sys.exit(130)


def _bisect_command(repo, good, bad, metric, max_minutes, step_minutes, precision, block_seconds, cmd_text, progress,
                    warmup_seconds, start_timeout, fmt, out, force, num_envs, ppo, fixes, kwargs) -> None:
    """bisect --cmd: every input checked first (exit 2), then the search on the user's command."""
    import os
    import shlex

    from perfkit.commands.bisection import Bisect, BisectOptions, CommandTrainers, commit_range
    from perfkit.commands.bisection.git import git
    from perfkit.core.machine import machine_info
    from perfkit.core.progress import ProgressError, compile_progress
    from perfkit.records.bisection import BisectRecord

    if metric != "sps":
        raise click.UsageError(f"--metric {metric!r}: bisect --cmd measures SPS (a learning metric needs the "
                               "built-in trainer)")
    trainer_axes = sorted(opts.overrides(dict(kwargs), fixes))
    if trainer_axes or ppo or num_envs is not None:
        given = ", ".join(trainer_axes) or ("--ppo" if ppo else "--num-envs")
        raise click.UsageError(f"{given}: the built-in trainer's options do not apply to --cmd")
    try:
        if not shlex.split(cmd_text):
            raise click.UsageError("--cmd: the command is empty")
        compile_progress(progress)
        commits = commit_range(repo, good, bad)
    except (ProgressError, ValueError) as e:
        raise click.UsageError(str(e)) from None
    top = Path(git(repo, "rev-parse", "--show-toplevel").strip()).resolve()
    here = Path(os.getcwd()).resolve()
    sub = here.relative_to(top) if here.is_relative_to(top) else Path()
    run_dir = opts.run_dir(out, "bisect", force)
    options = BisectOptions(metric="sps", block_seconds=block_seconds, max_minutes=max_minutes,
                            step_minutes=step_minutes, precision=precision)
    record = BisectRecord(str(Path(repo).resolve()), f"command: {cmd_text}", "sps",
                          [{"sha": c.sha, "subject": c.subject} for c in commits], {"command": cmd_text, "cwd": str(sub)},
                          vars(options).copy(), machine=machine_info())
    trainers = CommandTrainers(cmd_text, sub, run_dir / "logs", progress, (), warmup_seconds, start_timeout)
    click.echo(f"{len(commits) - 1} commits from {commits[0].short} (good) to {commits[-1].short} (bad), your "
               f"command {cmd_text!r}, at most {max_minutes:g} min -> {run_dir}", err=True)
    job = Bisect(repo, commits, {}, run_dir, options, record, progress=lambda m: click.echo(m, err=True),
                 trainers=trainers)
    _run(job, record, run_dir, fmt)
