"""Scenarios: one value per axis. Parsing `axis=value` text and validating it.

Every axis a user can name on the command line is declared once in `AXES`: its default, its
choices (or the grammar of its free-form values) and one line of help. `perfkit variants`
prints this table; the CLI turns `ScenarioError` into a usage error (exit 2).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from envs.arena.config import PRESETS
from envs.values import CONFIG_TIMINGS, CURRICULA, DESYNC_MODES, DESYNC_RNGS, DISPATCH_STYLES


class ScenarioError(ValueError):
    """Bad axis name or value; the message names the bad value and the valid choices."""


@dataclass(frozen=True)
class Axis:
    name: str
    default: str
    help: str
    choices: tuple[str, ...] = ()
    grammar: str = ""  # for free-form values, e.g. "epochs:N | seconds:S"
    parse: Callable[[str], str] | None = None

    def validate(self, value: str) -> str:
        value = value.strip()
        if self.parse is not None:
            return self.parse(value)
        if value not in self.choices:
            raise ScenarioError(f"invalid value {value!r} for axis {self.name!r}; valid: {', '.join(self.choices)}")
        return value

    @property
    def values_text(self) -> str:
        return ", ".join(self.choices) if self.choices else self.grammar


def canonical_number(x: float) -> str:
    """One spelling per number, so `0`, `0.0` and `00` are the same value (and label): integers
    without a point, others in Python's shortest round-trip form (`1.50` -> `1.5`)."""
    return str(int(x)) if x == int(x) else repr(x)


def _cadence(axis: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value == "off":
            return value
        m = re.fullmatch(r"(epochs|seconds):([0-9]+(?:\.[0-9]+)?)", value)
        if not m or float(m.group(2)) <= 0 or (m.group(1) == "epochs" and not m.group(2).isdigit()):
            raise ScenarioError(
                f"invalid value {value!r} for axis {axis!r}; valid: off, epochs:N (integer N>0), seconds:S (S>0)"
            )
        # Canonical, so `epochs:02` / `epochs:2` are caught as duplicates and label alike.
        return f"{m.group(1)}:{canonical_number(float(m.group(2)))}"

    return parse


def _workers(value: str) -> str:
    if value in ("serial", "auto", "pow2"):
        return value
    if re.fullmatch(r"[0-9]+", value) and int(value) >= 1:
        return str(int(value))  # `02` -> `2`
    raise ScenarioError(f"invalid value {value!r} for axis 'workers'; valid: serial, auto, pow2, or an integer >= 1")


def _threads(value: str) -> str:
    from perfkit.core.threads import parse_threads

    try:
        return parse_threads(value)
    except ValueError as e:
        raise ScenarioError(f"invalid value {value!r} for axis 'threads'; valid: auto, or an integer 1..256") from e


def _env(value: str) -> str:
    if value in ("arena", "mettagrid") or re.fullmatch(r"[\w.]+:\w+", value):
        return value
    raise ScenarioError(f"invalid value {value!r} for axis 'env'; valid: arena, mettagrid, or pkg.module:factory")


def _bounded_float(axis: str, maximum: float) -> Callable[[str], str]:
    def parse(value: str) -> str:
        try:
            x = float(value)
        except ValueError:
            x = math.nan
        # `not (0 <= x <= maximum)` also rejects nan; inf is rejected by the bound (an infinite
        # busy-wait hangs the trial forever).
        if not 0 <= x <= maximum:
            raise ScenarioError(f"invalid value {value!r} for axis {axis!r}; valid: a number >= 0 and "
                                f"<= {canonical_number(maximum)}")
        return canonical_number(x)

    return parse


INJECT_COST_MAX_US = 1_000_000.0  # one second per env step: far past any cost worth simulating


AXES: dict[str, Axis] = {
    a.name: a
    for a in (
        Axis("wrapper", "getattr",
             "curriculum wrapper's attribute dispatch: __getattribute__ on every access (as shipped), "
             "__getattr__ fallback (the fix), or no wrapper", DISPATCH_STYLES),
        Axis("env-config", "per-episode",
             "when the next task's config is applied: at episode end inside step (as shipped), or at the "
             "next reset (the fix)", CONFIG_TIMINGS),
        Axis("curriculum", "single", "tasks the wrapper draws from: the preset alone, or preset + variants", CURRICULA),
        Axis("checkpoint", "off", "how often the policy is saved, counted in training epochs or in seconds",
             grammar="off, epochs:N, seconds:S", parse=_cadence("checkpoint")),
        Axis("eval", "off", "how often a blocking evaluation episode pauses training (epochs or seconds)",
             grammar="off, epochs:N, seconds:S", parse=_cadence("eval")),
        Axis("workers", "serial",
             "rollout worker processes: serial (in the trainer), auto = (cores // 2) // gpus, pow2 = that "
             "rounded down to a power of two, or N", grammar="serial, auto, pow2, N", parse=_workers),
        Axis("desync", "off",
             "how each env's first episode is shortened: max-steps draws its limit in [1, max_steps], "
             "early-reset truncates it at a step drawn in [1, max_steps)", DESYNC_MODES),
        Axis("desync-rng", "per-env",
             "RNG for the desync draw: seeded per env, or NumPy's global state (forked workers then all draw "
             "the same step)", DESYNC_RNGS),
        Axis("preset", "basic_easy_shaped",
             "arena configuration: the old default, the new default after the refactor, or the recipe that "
             "restored learning", tuple(PRESETS)),
        Axis("device", "auto", "where the policy runs", ("auto", "cpu", "cuda")),
        Axis("threads", "auto", "torch intra-op threads; auto leaves a core for the process's own Python and one "
             "per rollout worker, so a busy neighbour cannot stall every thread (1 on 2 cores)",
             grammar="auto, N", parse=_threads),
        Axis("env", "arena",
             "environment under test: the reference arena, the real mettagrid, or your own factory "
             "(buf=None, seed=0) -> pufferlib.PufferEnv", grammar="arena, mettagrid, pkg.module:factory",
             parse=_env),
        Axis("inject-cost-us", "0", "busy-wait this many µs per env step in a named function (validation knob)",
             grammar=f"number in [0, {canonical_number(INJECT_COST_MAX_US)}]",
             parse=_bounded_float("inject-cost-us", INJECT_COST_MAX_US)),
        Axis("fault", "none",
             "a seeded fault in perfkit's own trainer (validation knob for explain and learn): a host sync per "
             "rollout step, an extra copy of each observation batch, half the minibatch size, or a learning "
             "rate 4x too small",
             ("none", "host-sync", "obs-copy", "half-minibatch", "quarter-lr")),
        Axis("release", "none",
             "a bundle of the suspects as the investigation's stack had them before and after its refactor "
             "(wrapper, env-config, checkpoint, eval, desync, preset); axes you set yourself win",
             ("none", "before", "after")),
    )
}

# What `release=before|after` sets (docs/axes.md#release says where each value comes from). Workers
# are left out: both rules give 1 worker on a 2-core machine; vary `workers` on its own.
RELEASES: dict[str, dict[str, str]] = {
    "none": {},
    "before": {"wrapper": "getattr", "env-config": "deferred", "checkpoint": "epochs:50", "eval": "off",
               "desync": "max-steps", "desync-rng": "per-env", "preset": "basic_easy_shaped"},
    "after": {"wrapper": "getattribute", "env-config": "per-episode", "checkpoint": "epochs:5", "eval": "epochs:50",
              "desync": "early-reset", "desync-rng": "shared", "preset": "make_arena"},
}


def axis(name: str) -> Axis:
    try:
        return AXES[name]
    except KeyError:
        raise ScenarioError(f"unknown axis {name!r}; valid: {', '.join(AXES)}") from None


@dataclass(frozen=True)
class Scenario:
    """One value per axis (all as validated strings) plus the seed."""

    values: tuple[tuple[str, str], ...]
    seed: int = 1

    @classmethod
    def build(cls, overrides: dict[str, str] | None = None, seed: int = 1) -> Scenario:
        values = {name: a.default for name, a in AXES.items()}
        for name, value in (overrides or {}).items():
            values[name] = axis(name).validate(value)
        given = {axis(name).name for name in overrides or {}}
        for name, value in RELEASES[values["release"]].items():  # a bundle fills what was not given
            if name not in given:
                values[name] = value
        return cls(tuple(values.items()), seed)

    def __getitem__(self, name: str) -> str:
        return dict(self.values)[axis(name).name]

    def with_values(self, **changes: str) -> Scenario:
        d = dict(self.values)
        old_bundle = RELEASES[d["release"]]
        for k, v in changes.items():
            d[axis(k).name] = axis(k).validate(v)
        if d["release"] != self["release"]:
            # A new bundle fills every axis it names that is still at its default (or at the old
            # bundle's value) and not changed here: axes set to something else win, as in build().
            named = {axis(k).name for k in changes}
            for name, value in RELEASES[d["release"]].items():
                if name not in named and d[name] in (AXES[name].default, old_bundle.get(name)):
                    d[name] = value
            for name, value in old_bundle.items():  # what only the old bundle set goes back to default
                if name not in named and name not in RELEASES[d["release"]] and d[name] == value:
                    d[name] = AXES[name].default
        return dataclasses.replace(self, values=tuple(d.items()))

    def label(self, axes: list[str] | None = None) -> str:
        """`wrapper=getattr,env-config=deferred` for the named axes (default: non-default ones)."""
        d = dict(self.values)
        names = axes if axes is not None else [k for k, v in d.items() if v != AXES[k].default]
        return ",".join(f"{k}={d[k]}" for k in names) or "defaults"

    def to_dict(self) -> dict:
        return {"values": dict(self.values), "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict) -> Scenario:
        return cls.build(d["values"], seed=int(d.get("seed", 1)))


def parse_assignment(text: str) -> tuple[str, str]:
    """`axis=value` -> (axis, validated value)."""
    if "=" not in text:
        raise ScenarioError(f"expected axis=value, got {text!r}; axes: {', '.join(AXES)}")
    name, value = text.split("=", 1)
    return axis(name.strip()).name, axis(name.strip()).validate(value)


def parse_vary(text: str) -> tuple[str, list[str]]:
    """`axis=v1,v2,...` -> (axis, [validated values]); duplicates are an error."""
    if "=" not in text:
        raise ScenarioError(f"expected axis=v1,v2,..., got {text!r}; axes: {', '.join(AXES)}")
    name, values = text.split("=", 1)
    a = axis(name.strip())
    parsed = [a.validate(v) for v in values.split(",") if v.strip()]
    if not parsed:
        raise ScenarioError(f"--vary {a.name}= names no values; valid: {a.values_text}")
    repeated = sorted({v for v in parsed if parsed.count(v) > 1})
    if repeated:
        # Values are compared canonically (`0` == `0.0`), so name the value as it was understood.
        raise ScenarioError(f"--vary {a.name} repeats a value: {values!r} (as {', '.join(repeated)})")
    return a.name, parsed


@dataclass(frozen=True)
class Variant:
    label: str
    # what one trial runs: a Scenario of the built-in trainer, or a user's command
    # (perfkit.core.command.Command); both say what they are with to_dict()
    scenario: Scenario

    @property
    def slug(self) -> str:
        return label_slug(self.label)


def label_slug(label: str) -> str:
    """A variant's label as a file name: `wrapper=getattr,env=x:y` -> `wrapper=getattr__env=x_y`."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", label.replace(",", "__"))


def plan_variants(base: Scenario, vary: list[tuple[str, list[str]]]) -> list[Variant]:
    """Every combination of the varied axes' values, first value of each axis first."""
    if not vary:
        return [Variant("defaults", base)]
    names = [name for name, _ in vary]
    if len(set(names)) != len(names):
        raise ValueError(f"an axis is varied twice: {', '.join(names)}")
    variants = []
    for combo in itertools.product(*(values for _, values in vary)):
        sc = base.with_values(**dict(zip(names, combo, strict=True)))
        variants.append(Variant(sc.label(names), sc))
    return variants


# Axes whose values change the process itself (worker processes, the device, torch's thread pool):
# variants that differ in one of these must run in separate processes.
PROCESS_AXES = ("workers", "device", "threads")


def shares_process(varied_axes: list[str]) -> bool:
    return not any(a in PROCESS_AXES for a in varied_axes)
