"""Options and checks shared by perfkit's commands: option groups (the scenario, the budget, the
trainer's size, the output), results directories, and the up-front checks that turn bad input
into usage errors (exit 2)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click

from perfkit.core.scenario import AXES, Scenario, ScenarioError, parse_assignment, parse_vary

DEFAULT_SECONDS = 10.0
PROCESSES = 1  # --cmd --processes: sets of fresh processes per compare
SET_MIN_SECONDS = 10.0  # --processes: turns per set, beyond its warm-ups


class TableFormat(click.ParamType):
    """A tabulate table format, checked when given: importing tabulate (~70 ms) waits until then, so
    `--help` and usage errors stay instant."""

    name = "format"

    def convert(self, value, param, ctx):
        if value == "github":  # the default, converted on every run
            return value
        from tabulate import tabulate_formats

        if value not in tabulate_formats:
            self.fail(f"{value!r} is not a table format; choose from {', '.join(sorted(tabulate_formats))}", param, ctx)
        return value


class FiniteRange(click.FloatRange):
    """click.FloatRange that also refuses NaN and infinity: NaN compares false with both bounds, so
    FloatRange lets it through (`--precision nan` ran "until ±nan%", `--seconds nan` never ended)."""

    def convert(self, value, param, ctx):
        import math

        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            lo = "" if self.min is None else f"{self.min:g} <= "
            hi = "" if self.max is None else f" <= {self.max:g}"
            self.fail(f"{value!r} is not a finite number; expected a number {lo}x{hi}.", param, ctx)
        return rv

SEED = click.IntRange(0, 2**32 - 1)  # what numpy's seeding accepts; outside it numpy raises mid-trial


def axis_options(f):
    """One `--<axis>` option per axis, documented from the axis table."""
    for a in reversed(list(AXES.values())):
        f = click.option(
            f"--{a.name}", f"axis_{a.name.replace('-', '_')}", default=None, metavar="VALUE",
            help=f"{a.help}. Values: {a.values_text}. Default: {a.default}.",
        )(f)
    return f


def command_options(f):
    """A user's own training command instead of the built-in trainer (parameters `cmds`, `progress`,
    `metrics`, `warmup_seconds`, `start_timeout`, `block_seconds`; see `command_job`)."""
    f = click.option("--repo", default=".", show_default=True, type=click.Path(file_okay=False),
                     help="--cmd with --rev: the git repository whose revisions are compared.")(f)
    f = click.option("--rev", "revs", multiple=True, metavar="REV",
                     help="--cmd: run each command in a worktree of this revision of --repo (a branch, tag or "
                          "commit; repeatable, the first is the reference), from the same subfolder you run "
                          "perfkit in.")(f)
    f = click.option("--block-seconds", type=FiniteRange(min=0.05), default=0.3, show_default=True, metavar="S",
                     help="--cmd, --mode interleave: how long each command runs in its turn (longer when it prints "
                          "its step count less often: two of its usual gaps). Short turns pair the commands "
                          "closely; the statistics take batch means over about 3 s of each command's running.")(f)
    f = click.option("--start-timeout", type=FiniteRange(min=1), default=120.0, show_default=True, metavar="S",
                     help="--cmd: a trial fails when its command prints no step count within S seconds.")(f)
    f = click.option("--warmup-seconds", type=FiniteRange(min=0), default=10.0, show_default=True, metavar="S",
                     help="--cmd: seconds after the first step count that are left out (start-up, compilation, "
                          "caches); then --seconds are measured.")(f)
    f = click.option("--metric", "metrics", multiple=True, metavar="NAME=REGEX",
                     help="--cmd: a learning number to read from the command's output (group 1 is the value), "
                          "e.g. 'return=episodic_return=([-0-9.]+)'; or a known NAME: episodic_return, "
                          "episode_reward (both read when no --metric is given). Repeatable.")(f)
    f = click.option("--progress", default="auto", show_default=True, metavar="REGEX|NAME",
                     help="--cmd: how to read the cumulative step counter from each line the command prints: a "
                          "regex whose group 1 is the count, or cleanrl (global_step=N), sb3 (| total_timesteps | "
                          "N |), puffer (PuffeRL's log dict: \"agent_steps\": N), steps (steps: N), auto (the "
                          "first of these that matches).")(f)
    f = click.option("--cmd", "cmds", multiple=True, metavar="NAME=COMMAND",
                     help="Compare your own training command instead of perfkit's trainer: NAME=COMMAND, "
                          "repeatable, the first is the reference. By default (--mode interleave) every command "
                          "starts once, runs alone through --warmup-seconds, then they run in turns of "
                          "--block-seconds, each paused (SIGSTOP) while another runs; --mode process runs the "
                          "command afresh per trial. At the end each is stopped (SIGINT, then SIGTERM, SIGKILL). "
                          "Vary it with --vary env:VAR=V1,V2.")(f)
    return f


def processes_option(f):
    """compare --cmd --processes (parameter `processes`)."""
    f = click.option("--processes", type=click.IntRange(min=1), default=PROCESSES, show_default=True, metavar="N",
                     help="--cmd, --mode interleave: run each command as N processes, one set after another "
                          "sharing the time, and take the interval over the sets. Every process has a speed of its "
                          "own (memory layout, hash seed, the core it lands on: 1-4%% between twins on a busy "
                          "2-core machine), which no number of turns inside one process averages away; over N sets "
                          "it is inside the interval. 1: one process per command (a tighter interval that leaves "
                          "that offset out). Each set pays every command's start-up and --warmup-seconds.")(f)
    return f


def check_command_axes(vary, fixes, kwargs) -> None:
    """--cmd runs the user's command: no built-in trainer axis, and --vary only over env: axes."""
    trainer_axes = sorted(overrides(dict(kwargs), fixes))
    if trainer_axes:
        raise click.UsageError(f"--cmd runs your command: the built-in trainer's axes ({', '.join(trainer_axes)}) "
                               "do not apply to it; vary the command with --vary env:VAR=V1,V2")
    others = [v for v in vary if not v.startswith("env:")]
    if others:
        raise click.UsageError(f"--cmd: --vary {others[0]!r} is an axis of the built-in trainer; a command varies "
                               "by environment variable: --vary env:VAR=V1,V2")


def command_job(cmds, vary, fixes, kwargs, mode, backend, flamegraph, steps, ppo, num_envs, progress, metrics,
                warmup_seconds, start_timeout, seconds, rule, stop_on_failure, block_seconds=0.3, repo=".",
                revs=(), processes=1, ray_address=None, ray_requeues=2):
    """The compare of `--cmd` variants, every input checked first (usage errors, exit 2)."""
    from perfkit.core.command import CommandError, check_startable, plan_commands
    from perfkit.core.progress import ProgressError, compile_metric, compile_progress

    check_command_axes(vary, fixes, kwargs)
    if mode == "inprocess":
        raise click.UsageError("--mode inprocess is for the built-in trainer; with --cmd choose --mode interleave "
                               "(every command started once, run in turns: the default) or --mode process (a "
                               "fresh run of the command per trial)")
    if backend == "ray":
        if mode == "interleave" or processes > 1:
            raise click.UsageError(f"{'--mode interleave' if mode == 'interleave' else '--processes'} runs the "
                                   "commands in turns on this machine; --backend ray runs each trial as a fresh run "
                                   "of the command on a node: use --mode process (or auto) with --backend ray")
        check_ray_backend("process", flamegraph)
        mode = "process"
    for flag, given in (("--flamegraph", flamegraph), ("--steps", steps is not None), ("--ppo", bool(ppo)),
                        ("--num-envs", num_envs is not None)):
        if given:
            raise click.UsageError(f"{flag} is for the built-in trainer; with --cmd your command runs as it is, "
                                   "measured for --seconds")
    try:
        compile_progress(progress)
        for m in metrics:
            compile_metric(m)
        resolved = resolve_revs(repo, revs) if revs else []
        variants = plan_commands(list(cmds), list(vary), revs=resolved)
        check_startable(variants)
    except (CommandError, ProgressError) as e:
        raise click.UsageError(str(e)) from None
    from perfkit.commands.compare import CompareJob
    from perfkit.engine.command import CommandRunner
    from perfkit.engine.local import Interleave

    seconds = seconds if seconds is not None else DEFAULT_SECONDS
    if mode == "process":
        runner = CommandRunner(seconds=seconds, warmup_seconds=warmup_seconds, progress=progress,
                               metrics=tuple(metrics), start_timeout=start_timeout)
        return CompareJob(variants, rule, inprocess=False, seconds=seconds, workload=runner,
                          stop_on_failure=stop_on_failure, repo=repo if revs else None, backend=backend,
                          ray_address=ray_address or "auto", ray_requeues=ray_requeues)
    from perfkit.engine.local import interleave_budget

    budget = interleave_budget(rule, seconds, len(variants))
    if processes > 1 and budget is not None and budget / processes < len(variants) * warmup_seconds + SET_MIN_SECONDS:
        raise click.UsageError(
            f"--processes {processes}: each set of {len(variants)} commands would get {budget / processes:.0f} s, "
            f"not enough for their warm-ups ({len(variants)} x --warmup-seconds {warmup_seconds:g}) and "
            f"{SET_MIN_SECONDS:g} s of turns; give more time (--max-minutes, --trials or --seconds), fewer "
            "--processes, or a shorter --warmup-seconds")
    how = Interleave(block_seconds=block_seconds, warmup_seconds=warmup_seconds, progress=progress,
                     metrics=tuple(metrics), start_timeout=start_timeout, processes=processes)
    return CompareJob(variants, rule, inprocess=False, seconds=seconds, interleave=how,
                      stop_on_failure=stop_on_failure, repo=repo if revs else None)


def resolve_revs(repo: str, revs) -> list[tuple[str, str]]:
    """Each `--rev` as (name, commit sha), or a usage error naming the one git does not know."""
    import subprocess

    from perfkit.core.command import CommandError

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, check=False)

    if git("rev-parse", "--git-dir").returncode != 0:
        raise CommandError(f"--repo {repo!r} is not a git repository (--rev needs one)")
    out = []
    for rev in revs:
        p = git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        if p.returncode != 0:
            raise CommandError(f"--rev {rev!r} is not a revision of {repo!r}: give a branch, tag or commit "
                               "(git rev-parse --verify must know it)")
        out.append((rev, p.stdout.strip()))
    return out


def scenario_options(f):
    """What one scenario is: `--<axis>` per axis, `--fix AXIS=VALUE` and `--seed` (parameters
    `axis_*`, `fixes`, `seed`; see `scenario_from_options`)."""
    f = click.option("--seed", type=SEED, default=1, show_default=True, help="Seed for envs, policy and sampling.")(f)
    f = click.option("--fix", "fixes", multiple=True, metavar="AXIS=VALUE",
                     help="Set an axis by name, like the --<axis> options (repeatable).")(f)
    return axis_options(f)


def budget_options(f):
    """How long each trial trains: `--seconds` or `--steps` (see `budget`)."""
    f = click.option("--steps", type=click.IntRange(min=1), default=None,
                     help="Budget per trial in agent-steps (instead of --seconds).")(f)
    f = click.option("--seconds", type=FiniteRange(min=0.1), default=None,
                     help=f"Budget per trial in seconds of training (default {DEFAULT_SECONDS:g}).")(f)
    return f


def parse_ppo(ctx, param, values: tuple[str, ...]) -> dict:
    from dataclasses import fields

    from perfkit.train.config import PPOConfig, PPOConfigError

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
    try:
        PPOConfig(**out)  # validates ranges now, not as a traceback (or silent nonsense) mid-trial
    except PPOConfigError as e:
        raise click.BadParameter(str(e)) from None
    return out


def trainer_options(f):
    """The trainer's size: `--num-envs` and `--ppo KEY=VALUE` (parameters `num_envs`, `ppo`)."""
    f = click.option("--ppo", "ppo", multiple=True, metavar="KEY=VALUE", callback=parse_ppo,
                     help="Override a PPO setting, e.g. --ppo minibatch_size=16384 (repeatable).")(f)
    f = click.option("--num-envs", type=click.IntRange(min=1), default=None,
                     help="Arenas per trial (24 agents each; default 4 = 96 agents). Rounded up to a "
                          "multiple of the worker count.")(f)
    return f


def format_option(f):
    """`--format` (parameter `fmt`): the tables' tabulate format."""
    return click.option("--format", "fmt", type=TableFormat(), default="github", show_default=True,
                        help="Table format: any tabulate format, e.g. github, plain, grid, latex.")(f)


def output_options(f):
    """`--format`, `--out DIR` and `--force`: for every command that prints tables and writes a
    results directory."""
    return format_option(out_options(f))


def out_options(f):
    """`--out DIR` and `--force`, shared by every command that writes a results directory."""
    f = click.option("--force", is_flag=True,
                     help="Allow a non-empty --out: its previous perfkit results are deleted first.")(f)
    f = click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Directory for results (default: a new results/<timestamp>-<command>).")(f)
    return f


def overrides(kwargs: dict, fixes: tuple[str, ...] = ()) -> dict[str, str]:
    values: dict[str, str] = {}
    for text in fixes:
        name, value = parse_assignment(text)
        values[name] = value
    for a in AXES.values():
        v = kwargs.pop(f"axis_{a.name.replace('-', '_')}", None)
        if v is not None:
            values[a.name] = a.validate(v)
    return values


def scenario_from_options(kwargs: dict, fixes: tuple[str, ...], seed: int, vary: tuple[str, ...] = (),
                          check_envs: bool = True) -> tuple[Scenario, list[tuple[str, list[str]]]]:
    """The checks every measuring command makes before it measures anything, as usage errors
    (exit 2): the axis options (`kwargs`, emptied of them) and `--fix`, the `--vary` axes (none
    twice, none also fixed), the env defaults (`apply_env_defaults`), the scenario, CUDA where
    asked for, and (with `check_envs`) that every env to run can be built. Returns the base
    scenario and the varied axes."""
    try:
        values = overrides(kwargs, fixes)
        varied = [parse_vary(v) for v in vary]
        names = [n for n, _ in varied]
        if len(set(names)) != len(names):
            raise ScenarioError(f"--vary names an axis twice: {', '.join(names)}")
        clash = sorted(set(names) & set(values))
        if clash:
            raise ScenarioError(f"axis {clash[0]!r} is both varied and fixed; drop one")
        if check_envs:
            values = apply_env_defaults(values, varied)
        scenario = Scenario.build(values, seed=seed)
    except ScenarioError as e:
        raise click.UsageError(str(e)) from None
    check_device({**values, **{n: "cuda" for n, vs in varied if "cuda" in vs}})
    if check_envs:
        check_env(values, varied)
    return scenario, varied


def budget(seconds, steps):
    if seconds is not None and steps is not None:
        raise click.UsageError("give --seconds or --steps, not both")
    if seconds is None and steps is None:
        seconds = DEFAULT_SECONDS
    return seconds, steps


_PROJECT_MARKERS = (".git", "pyproject.toml", "setup.py")  # never delete what looks like a source tree


def run_dir(out: Path | None, command: str, force: bool = False) -> Path:
    """The results directory for a command: a new, unique one by default (two commands started
    in the same second get `-2`, `-3`, ...); a given `--out` must be empty unless `force`, which
    deletes what is in it first. Checked writable (a usage error if not)."""
    try:
        if out is None:
            return _new_dir(Path("results"), f"{time.strftime('%Y%m%d-%H%M%S')}-{command}")
        if out.exists() and not out.is_dir():
            raise click.UsageError(f"--out {str(out)!r} is a file, not a directory")
        if out.is_dir() and any(out.iterdir()):
            if not force:
                names = sorted(p.name for p in out.iterdir())
                shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
                raise click.UsageError(f"--out {str(out)!r} is not empty (holds {shown}); choose another directory "
                                       "or pass --force to delete its contents first")
            _clear(out)
    except OSError as e:
        raise click.UsageError(f"results directory {str(out)!r} is not writable: {e.strerror}") from None
    return writable_dir(out, "results directory")


def writable_dir(path: Path, what: str, hint: str = "") -> Path:
    """`path`, created if missing and checked writable now: a usage error naming it (and `hint`)
    before anything is measured or rendered, not an OSError after."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".perfkit-write-test-"):
            pass
    except OSError as e:
        raise click.UsageError(f"{what} {str(path)!r} is not writable: {e.strerror}{hint}") from None
    return path


def _new_dir(parent: Path, name: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        path = parent / (name if n == 1 else f"{name}-{n}")
        try:
            path.mkdir()  # atomic: of two commands racing for a name, one gets it
            return path
        except FileExistsError:
            continue
    raise click.UsageError(f"cannot create a new results directory under {str(parent)!r}: {name}-* all taken")


def _clear(path: Path) -> None:
    import shutil

    resolved = path.resolve()
    if resolved in (Path.cwd().resolve(), Path.home().resolve(), Path(resolved.anchor)) or \
            any((path / m).exists() for m in _PROJECT_MARKERS):
        raise click.UsageError(f"--force will not delete {str(path)!r}: it is the working directory, home, a root "
                               "or a source tree; give --out a directory of its own")
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


_ENV_CHECKS: dict = {}  # env value -> EnvCheck, for this process (the module is imported once anyway)


def _env_check(value: str):
    from envs.registry import EnvSpecError
    from envs.registry import check_env as check

    if value not in _ENV_CHECKS:
        try:
            _ENV_CHECKS[value] = check(value)
        except EnvSpecError as e:
            raise click.UsageError(str(e)) from None
    return _ENV_CHECKS[value]


def env_values(values: dict[str, str], varied: list[tuple[str, list[str]]] = ()) -> list[str]:
    """Every env a command will run: the varied env values, else the fixed (or default) one."""
    for name, vs in varied:
        if name == "env":
            return list(vs)
    return [values.get("env", AXES["env"].default)]


def check_env(values: dict[str, str], varied: list[tuple[str, list[str]]] = ()) -> None:
    """Usage error (exit 2) unless every env the command will run can be built (see
    envs.registry.check_env: a factory is imported and one env built and closed)."""
    for value in env_values(values, varied):
        _env_check(value)


def apply_env_defaults(values: dict[str, str], varied: list[tuple[str, list[str]]] = ()) -> dict[str, str]:
    """The overrides adjusted for the envs that will run: checks every env (usage error if one
    cannot be built); when an env lacks set_env_config/get_env_config (which the curriculum wrapper
    calls) and the user did not set `wrapper`, fixes wrapper=none with a note on stderr; when the
    user asked for a wrapper on such an env, a usage error naming the env and the fix."""
    lacking = [c for c in map(_env_check, env_values(values, varied)) if not c.has_set_env_config]
    if not lacking:
        return values
    env = lacking[0]
    missing = "/".join(env.missing_config_methods)
    wrappers = next((vs for n, vs in varied if n == "wrapper"), [values["wrapper"]] if "wrapper" in values else [])
    if not wrappers:
        others = " for every variant" if len(env_values(values, varied)) > 1 else ""
        click.echo(f"note: --env {env.value} has no {missing}; using wrapper=none{others} "
                   "(the curriculum wrapper needs it)", err=True)
        return {**values, "wrapper": "none"}
    bad = next((w for w in wrappers if w != "none"), None)
    if bad is not None:
        raise click.UsageError(
            f"--env {env.value} has no {missing}, so wrapper={bad} cannot drive it (the curriculum wrapper "
            "calls set_env_config/get_env_config); use wrapper=none (or leave wrapper unset), or add "
            "set_env_config(cfg)/get_env_config() to the env")
    return values


def check_scenarios(scenarios) -> None:
    """For commands that take whole scenarios (the gate's checks): usage error unless each
    scenario's env can be built and, where the env lacks set_env_config, its wrapper is none."""
    for sc in scenarios:
        check = _env_check(sc["env"])
        if not check.has_set_env_config and sc["wrapper"] != "none":
            label, w = sc.label(), sc["wrapper"]
            fixed = label.replace(f"wrapper={w}", "wrapper=none") if "wrapper=" in label else f"{label},wrapper=none"
            default = " (the default)" if w == AXES["wrapper"].default else ""
            raise click.UsageError(
                f"scenario {label}: env {check.value} has no {'/'.join(check.missing_config_methods)}, so "
                f"wrapper={w}{default} cannot drive it; add wrapper=none to the scenario (in a gate check: "
                f"sps({fixed}))")


def check_device(values: dict[str, str], what: str = "--device cuda") -> None:
    """A usage error when the scenario asks for CUDA on a machine without it (torch would quietly
    run elsewhere, or fail mid-trial). `what` names where the request came from."""
    if values.get("device") == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise click.UsageError(f"{what}: no CUDA device is available here; valid: auto, cpu")




def plan_and_mode(base, varied, mode: str):
    """The variants of `--vary` and whether they share one process: `--mode inprocess` must be
    possible for the varied axes (usage error naming those that change the process); `auto` shares
    one process whenever it can and there is more than one variant."""
    from perfkit.core.scenario import PROCESS_AXES, plan_variants, shares_process

    try:
        variants = plan_variants(base, varied)
    except ScenarioError as e:
        raise click.UsageError(str(e)) from None
    names = [n for n, _ in varied]
    if mode == "inprocess" and not shares_process(names):
        raise click.UsageError(f"--mode inprocess: varied axes {', '.join(a for a in names if a in PROCESS_AXES)} "
                               "change the process; use --mode process (or auto)")
    return variants, mode == "inprocess" or (mode == "auto" and shares_process(names) and len(variants) > 1)


def check_ray_backend(mode: str, flamegraph: bool) -> None:
    """`--backend ray`: usage errors for what it cannot do, and for Ray missing (with the install hint)."""
    from perfkit.engine.cluster import ClusterError, require_ray

    if mode == "inprocess":
        raise click.UsageError("--mode inprocess runs every variant in one local process; --backend ray runs each "
                               "trial in a fresh process on a node: use --mode process (or auto) with --backend ray")
    if flamegraph:
        raise click.UsageError("--flamegraph is not available with --backend ray (the samples stay on the nodes); "
                               "run it with --backend local")
    try:
        require_ray()
    except ClusterError as e:
        raise click.UsageError(str(e)) from None


def write_files(run_dir: Path, files: dict[str, str | bytes]) -> None:
    """The re-rendered files; a directory that cannot take them (read-only, full) is a clear error
    after the tables were printed, never a traceback."""
    from perfkit.core.files import atomic_write_bytes

    for name, data in files.items():
        try:
            atomic_write_bytes(run_dir / name, data.encode() if isinstance(data, str) else data)
        except OSError as e:
            raise click.ClickException(f"could not write {run_dir / name}: {e.strerror}; the tables are printed "
                                       "above (pass --out DIR to write the files elsewhere)") from None
