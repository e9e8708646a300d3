"""A user's own training command as a compare variant: `--cmd NAME=COMMAND`, crossed with
environment-variable axes `--vary env:VAR=V1,V2`.

A `Command` plays the part a `Scenario` plays for the built-in trainer: it says what one trial
runs, gives the variant its label, and is stored in the records as a dict (`to_dict`).
"""

from __future__ import annotations

import itertools
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfkit.core.scenario import Variant

ENV_AXIS = "env:"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class CommandError(ValueError):
    """A `--cmd` or `env:` axis that cannot run: the message names the value and what is valid."""


@dataclass(frozen=True)
class Command:
    name: str  # the --cmd name
    text: str  # the command line as given (split like a POSIX shell, run without one)
    env: tuple[tuple[str, str], ...] = ()  # environment variables set for this variant
    cwd: str | None = None
    rev: str | None = None  # a revision of the user's repository (--rev), run in a worktree of it
    sha: str | None = None  # the commit `rev` named when the compare began

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text)

    def label(self, show_name: bool = True) -> str:
        parts = ([f"rev={self.rev}"] if self.rev else []) + ([self.name] if show_name else [])
        return ",".join([*parts, *(f"{ENV_AXIS}{k}={v}" for k, v in self.env)]) or self.name

    def to_dict(self) -> dict[str, Any]:
        out = {"workload": "command", "name": self.name, "command": self.text, "env": dict(self.env),
               "cwd": self.cwd}
        if self.rev:
            out.update(rev=self.rev, sha=self.sha)
        return out


def parse_cmd(spec: str) -> tuple[str, str]:
    """`NAME=COMMAND` -> (name, command)."""
    name, sep, text = spec.partition("=")
    name = name.strip()
    if not sep or not name or not text.strip():
        raise CommandError(f"--cmd {spec!r}: expected NAME=COMMAND, e.g. --cmd base='python ppo.py'")
    if not _NAME.match(name):
        raise CommandError(f"--cmd {spec!r}: the name {name!r} may hold letters, digits, '_', '.' and '-' only")
    try:
        argv = shlex.split(text)
    except ValueError as e:
        raise CommandError(f"--cmd {name}: cannot split {text!r} into arguments ({e})") from None
    if not argv:
        raise CommandError(f"--cmd {name}: the command is empty")
    return name, text.strip()


def parse_env_axis(spec: str) -> tuple[str, list[str]]:
    """`env:VAR=V1,V2` -> (VAR, [V1, V2])."""
    body = spec[len(ENV_AXIS):] if spec.startswith(ENV_AXIS) else spec
    var, sep, values = body.partition("=")
    vals = [v for v in values.split(",")] if sep else []
    if not _VAR.match(var.strip()):
        raise CommandError(f"--vary {spec!r}: {var!r} is not an environment variable name (letters, digits, _)")
    if not vals or any(v == "" for v in vals):
        raise CommandError(f"--vary {spec!r}: give the values, e.g. --vary env:{var.strip() or 'MY_FLAG'}=0,1")
    if len(set(vals)) != len(vals):
        raise CommandError(f"--vary {spec!r}: a value repeats")
    return var.strip(), vals


def plan_commands(cmds: list[str], env_axes: list[str], cwd: str | None = None,
                  revs: list[tuple[str, str]] = ()) -> list[Variant]:
    """Every revision (`--rev`: (name, sha); none: the working tree as it is) crossed with every
    `--cmd` and every `env:` axis value; the first combination is the reference."""
    if not cmds:
        raise CommandError("give at least one --cmd NAME=COMMAND")
    parsed = [parse_cmd(c) for c in cmds]
    names = [n for n, _ in parsed]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CommandError(f"--cmd names repeat: {', '.join(dup)}; give each command its own name")
    axes = [parse_env_axis(a) for a in env_axes]
    vars_ = [v for v, _ in axes]
    if len(set(vars_)) != len(vars_):
        twice = sorted({v for v in vars_ if vars_.count(v) > 1})
        raise CommandError(f"--vary env: the same variable twice ({', '.join(twice)})")
    rev_names = [r for r, _ in revs]
    if len(set(rev_names)) != len(rev_names):
        raise CommandError(f"--rev repeats: {', '.join(sorted({r for r in rev_names if rev_names.count(r) > 1}))}")
    n_combos = len(list(itertools.product(*[vals for _, vals in axes])))
    if max(1, len(revs)) * len(parsed) * max(1, n_combos) < 2:
        raise CommandError("one --cmd and no env: axis or second --rev is one variant: nothing to compare; add a "
                           "second --cmd, --vary env:VAR=A,B or --rev")
    variants = []
    for rev, sha in (revs or [(None, None)]):
        for name, text in parsed:
            for combo in itertools.product(*[vals for _, vals in axes]):
                c = Command(name, text, tuple(zip(vars_, combo, strict=True)), cwd, rev, sha)
                show = len(parsed) > 1 or not (axes or revs)
                variants.append(Variant(c.label(show_name=show), c))  # type: ignore[arg-type]
    return variants


def check_startable(variants: list[Variant]) -> None:
    """Each command's program exists (on PATH, or as a path) before any trial runs."""
    seen = set()
    for v in variants:
        cmd: Command = v.scenario  # type: ignore[assignment]
        prog = cmd.argv[0]
        if prog in seen:
            continue
        seen.add(prog)
        where = Path(cmd.cwd or ".")
        found = shutil.which(prog) if "/" not in prog else (prog if (where / prog).exists() else None)
        if found is None:
            raise CommandError(f"--cmd {cmd.name}: {prog!r} is not a program on PATH (nor a file); the command "
                               f"was {cmd.text!r}")
