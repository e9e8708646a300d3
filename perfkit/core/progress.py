"""A training command's progress, read from the lines it prints: a cumulative step counter and
learning numbers, each line timestamped as it arrived.

perfkit never takes a trainer's own SPS figure (cumulative, start-up included): throughput is the
counter's increase over wall time between two lines, after a warm-up measured in seconds from the
first line that carried a step count. Windows are cut at lines at least `min_window_s` apart, so a
trainer that prints a hundred lines a second does not turn timestamp jitter into noise.

Built-in recognisers (`--progress NAME`):
  cleanrl    `global_step=12345` (CleanRL's scripts print it with every finished episode)
  sb3        `| total_timesteps | 12345 |` (Stable-Baselines3's logger table)
  puffer     `"agent_steps": 12345` (PufferLib's PuffeRL log dict, printed as JSON or a Python dict by
             a logger; its dashboard abbreviates steps to "12.3K", too coarse to count)
  steps      `step 12345`, `steps: 12345`, `step=12345` (a plain counter)
  auto       the first of these that matches a line
A custom `--progress REGEX` must have one group: the cumulative step count (digits, `_` or `,`
allowed, e.g. `1_000_000`).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from perfkit.core.timing import Window

RECOGNISERS: dict[str, str] = {
    "cleanrl": r"global_step\s*[=:]\s*([\d_,]+)",
    "sb3": r"\|\s*total_timesteps\s*\|\s*([\d_,]+)\s*\|",
    "puffer": r"""['"]agent_steps['"]\s*:\s*([\d_,]+)""",
    "steps": r"\bsteps?\s*[=:]?\s*([\d_,]+)\b",
}
AUTO = "auto"
_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
METRIC_RECOGNISERS: dict[str, str] = {  # what `--metric NAME` alone reads
    "episodic_return": r"episodic_return\s*[=:]\s*\[?" + _NUMBER,
    "episode_reward": r"episode_reward\s*[=:]\s*\[?" + _NUMBER,
}


class ProgressError(ValueError):
    """A progress or metric regex that cannot work: it does not compile, or has no group."""


def compile_progress(spec: str) -> list[re.Pattern]:
    """The patterns `--progress SPEC` stands for: a recogniser's name, `auto` (all of them, in
    order), or a regex whose group 1 is the cumulative step count."""
    if spec == AUTO:
        return [re.compile(p) for p in RECOGNISERS.values()]
    if spec in RECOGNISERS:
        return [re.compile(RECOGNISERS[spec])]
    return [_one_group(spec, "--progress", f"or one of: {', '.join([AUTO, *RECOGNISERS])}")]


def compile_metric(spec: str) -> tuple[str, re.Pattern]:
    """`NAME=REGEX` (group 1 is the value), or a known NAME alone."""
    name, sep, regex = spec.partition("=")
    name = name.strip()
    if not sep:
        if name not in METRIC_RECOGNISERS:
            raise ProgressError(f"--metric {spec!r}: expected NAME=REGEX (group 1 is the value), or one of: "
                                f"{', '.join(METRIC_RECOGNISERS)}")
        return name, re.compile(METRIC_RECOGNISERS[name])
    if not name.isidentifier():
        raise ProgressError(f"--metric {spec!r}: the name {name!r} must be a word (letters, digits, _)")
    return name, _one_group(regex, f"--metric {name}", "e.g. 'loss=loss: ([0-9.]+)'")


def metric_patterns(specs: Sequence[str]) -> dict[str, re.Pattern]:
    """The metrics to read: the `--metric` specs given, or, with none, every known one (a trainer
    that prints `episodic_return=` gets its learning column without asking)."""
    if not specs:
        return {name: re.compile(regex) for name, regex in METRIC_RECOGNISERS.items()}
    return dict(compile_metric(m) for m in specs)


def _one_group(regex: str, what: str, hint: str) -> re.Pattern:
    try:
        pattern = re.compile(regex)
    except re.error as e:
        raise ProgressError(f"{what} {regex!r} is not a regular expression ({e}); {hint}") from None
    if pattern.groups < 1:
        raise ProgressError(f"{what} {regex!r} has no group: put the number in parentheses, {hint}")
    return pattern


def _to_int(text: str) -> int | None:
    digits = text.replace("_", "").replace(",", "")
    return int(digits) if digits.isdigit() else None


@dataclass
class Progress:
    """What the lines said so far: (time, cumulative steps) points and (time, value) per metric."""

    patterns: Sequence[re.Pattern]
    metrics: dict[str, re.Pattern] = field(default_factory=dict)
    points: list[tuple[float, int]] = field(default_factory=list)
    values: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    lines: int = 0
    phases_at: dict[float, dict[str, float]] = field(default_factory=dict)  # cumulative seconds per phase
    probed: bool = False  # the trainer reports through perfkit.probe: its counts replace the regex's

    def feed_probe(self, t: float, steps: int, phases: dict[str, float]) -> None:
        """A report of `perfkit.probe`: cumulative steps and seconds per phase at time `t`."""
        if not self.probed:
            self.probed, self.points = True, []
        if not self.points or steps >= self.points[-1][1]:
            self.points.append((t, steps))
            self.phases_at[t] = dict(phases)

    def feed(self, t: float, line: str) -> None:
        """One line, read at time `t` (seconds on any monotonic clock)."""
        self.lines += 1
        for pattern in ([] if self.probed else self.patterns):
            m = pattern.search(line)
            if m is not None:
                steps = _to_int(m.group(1))
                # a counter that goes back (a second run, an eval loop's own count) is not progress
                if steps is not None and (not self.points or steps >= self.points[-1][1]):
                    self.points.append((t, steps))
                break
        for name, pattern in self.metrics.items():
            m = pattern.search(line)
            if m is not None:
                try:
                    self.values.setdefault(name, []).append((t, float(m.group(1))))
                except ValueError:
                    pass

    @property
    def started(self) -> float | None:
        """When the first step count arrived."""
        return self.points[0][0] if self.points else None

    def windows(self, warmup_s: float, min_window_s: float = 1.0, until: float | None = None) -> list[Window]:
        """Windows cut at points at least `min_window_s` apart: first the warm-up (everything up to
        the first point `warmup_s` after the first count; one window), then the steady ones up to
        `until`, the last of them what remains after the last full one. The learning numbers of a
        window are the mean of each metric's values in it."""
        pts = [p for p in self.points if until is None or p[0] <= until]
        if len(pts) < 2:
            return []
        start = pts[0][0]
        cut = [pts[0]]
        warm_end = next((p for p in pts if p[0] - start >= warmup_s), None)
        if warm_end is None:  # the run never got past its warm-up: one window of all of it
            return [self._window(0, pts[0], pts[-1])]
        cut.append(warm_end)
        for p in pts:
            if p[0] - cut[-1][0] >= min_window_s:
                cut.append(p)
        if pts[-1][0] > cut[-1][0]:  # the rest after the last full window: its steps and seconds count too
            cut.append(pts[-1])
        return [self._window(i, a, b) for i, (a, b) in enumerate(zip(cut, cut[1:], strict=False))]

    def windows_by_steps(self, every: int, start: tuple[float, int] | None = None,
                         until: float | None = None) -> list[Window]:
        """Windows cut where the counter has grown by at least `every` steps (the last one what is
        left), each with its metric means and how many values that was (`episodes`): a learning
        curve at even agent-steps, whatever the speed (`perfkit learn --cmd`). `start` (time,
        count) opens the first window (e.g. the command's start at count 0); the last one runs to
        `until`, so values printed after the last count are in it."""
        pts = [p for p in self.points if until is None or p[0] <= until]
        if start is not None:
            pts = [start, *(p for p in pts if p[0] >= start[0])]
        if len(pts) < 2:
            return []
        cut = [pts[0]]
        for p in pts[1:]:
            if p[1] - cut[-1][1] >= every:
                cut.append(p)
        if pts[-1][1] > cut[-1][1]:
            cut.append(pts[-1])
        if until is not None and len(cut) > 1 and until > cut[-1][0]:
            cut[-1] = (until, cut[-1][1])
        return [self._window(i, a, b, True) for i, (a, b) in enumerate(itertools.pairwise(cut))]

    def _window(self, index: int, a: tuple[float, int], b: tuple[float, int], count_episodes: bool = False) -> Window:
        """The window from point a to point b; with `count_episodes`, its learning numbers also
        hold `episodes`: the most values any metric printed in it (a window's weight in learn)."""
        learning: dict[str, float] = {}
        for name, vals in self.values.items():
            inside = [v for t, v in vals if a[0] < t <= b[0]]
            if inside:
                learning[name] = sum(inside) / len(inside)
                if count_episodes:
                    learning["episodes"] = max(learning.get("episodes", 0.0), float(len(inside)))
        pa, pb = self.phases_at.get(a[0], {}), self.phases_at.get(b[0], {})
        phases = {k: v - pa.get(k, 0.0) for k, v in pb.items()}
        return Window(index=index, agent_steps=b[1] - a[1], seconds=b[0] - a[0], phases=phases, learning=learning)


def last_values(progress: Progress, last: int = 5) -> dict[str, float]:
    """Each metric's mean over its last `last` values: where the learning got to."""
    return {name: sum(v for _, v in vals[-last:]) / len(vals[-last:]) for name, vals in progress.values.items()
            if vals}


def tail(lines: Iterable[str], n: int = 10) -> list[str]:
    out: list[str] = []
    for line in lines:
        out.append(line.rstrip("\n"))
        if len(out) > n:
            out.pop(0)
    return out
