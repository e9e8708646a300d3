"""BisectRecord: `perfkit bisect`'s bisect.json: the commits in the range, the regression measured
between the ends, every tested commit's evidence (paired rounds against both ends) and verdict,
and the outcome (perfkit/commands/bisection/)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from perfkit.records.store import MAX_MAGNITUDE, Field, Record, read_dataclass

VERDICTS = ("good", "bad", "beyond-bad", "beyond-good", "unclear", "skip")
# render/bisection.py exponentiates the ends' log SPS ratio: beyond this it overflows, and no
# regression is a factor of e^700.
MAX_LOG_RATIO = 700.0


@dataclass
class Step:
    """One tested commit: its verdict and the rounds behind it."""

    index: int  # in the range: 0 is the good end, len(commits) - 1 the bad end
    sha: str
    subject: str
    search: str  # "main", or "second" (the second change point of a non-monotonic history)
    verdict: str  # one of VERDICTS
    level: float  # (m - g) / (b - g): 0 good's level, 1 bad's
    level_ci: tuple[float, float]
    to_good: float  # SPS ratio to the good end (or the learning metric's difference)
    to_good_ci: tuple[float, float]
    rounds: int
    seconds: float
    error: str | None = None  # why the commit was skipped
    evidence: dict[str, list[float]] = field(default_factory=dict)  # per round: g, m, b in metric space


@dataclass
class BisectRecord(Record):
    kind = "bisect"

    repo: str
    env: str
    metric: str
    commits: list[dict[str, str]]  # sha, subject: [good, ..., bad]
    scenario: dict[str, str]
    options: dict[str, Any]
    ends: dict[str, Any] = field(default_factory=dict)  # to_good (bad's ratio), ci, rounds, evidence, sign
    steps: list[Step] = field(default_factory=list)
    outcome: dict[str, Any] = field(default_factory=dict)  # outcome, change_points, candidates, why, diffstat
    seconds: float = 0.0
    interrupted: bool = False
    machine: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["steps"] = [asdict(s) for s in self.steps]
        return d

    @classmethod
    def read(cls, f: Field) -> BisectRecord:
        rec = read_dataclass(cls, f, {
            "repo": Field.string, "env": Field.string, "metric": Field.string,
            "commits": lambda x: x.sequence(lambda c: {"sha": c["sha"].string(), "subject": c["subject"].string()}),
            "scenario": Field.obj, "options": Field.obj, "ends": Field.obj, "steps": lambda x: x.sequence(_read_step),
            "outcome": Field.obj, "seconds": lambda x: x.number(0), "interrupted": Field.boolean,
            "machine": Field.obj})
        _check_ends(f.get("ends", {}), rec.metric)
        _check_outcome(f.get("outcome", {}), len(rec.commits))
        return rec


def _bound(f: Field) -> float:
    """A level, a ratio to good or a bound of their interval: NaN when too few rounds gave one
    (a commit skipped before its first round)."""
    return f.number(nan=True)


def _interval(f: Field) -> tuple[float, float]:
    lo, hi = f.sequence(_bound, length=2)
    return lo, hi


def _read_step(f: Field) -> Step:
    return read_dataclass(Step, f, {
        "index": Field.integer, "sha": Field.string, "subject": Field.string,
        "search": lambda x: x.choice("main", "second"), "verdict": lambda x: x.choice(*VERDICTS), "level": _bound,
        "level_ci": _interval, "to_good": _bound, "to_good_ci": _interval, "rounds": Field.integer,
        "seconds": lambda x: x.number(0), "error": lambda x: x.optional(Field.string),
        "evidence": lambda x: x.mapping(lambda xs: xs.sequence(Field.number))})


def _check_ends(f: Field, metric: str) -> None:
    """The regression between the ends ({} before they are measured): bad - good in metric
    space; for `sps` a log ratio, which the report exponentiates."""
    if not f.obj():
        return
    limit = MAX_LOG_RATIO if metric == "sps" else MAX_MAGNITUDE
    f["delta"].number(-limit, limit)
    f["ci"].sequence(lambda x: x.number(-limit, limit, nan=True), length=2)
    f["rounds"].integer()


OUTCOMES = ("found", "two-changes", "range", "inconsistent", "no-regression", "incomplete", "interrupted")
# The commits each outcome's headline names by position (`change_points` or `candidates`, at
# least so many), and the outcomes whose headline says why.
_NAMES = {"found": ("change_points", 1), "two-changes": ("change_points", 2), "range": ("candidates", 0),
          "incomplete": ("candidates", 1)}
_SAYS_WHY = ("range", "inconsistent", "no-regression", "incomplete")


def _check_outcome(f: Field, n_commits: int) -> None:
    """The outcome ({} while the search runs): its kind, why, and the commits it names, indices
    into `commits`."""
    if not f.obj():
        return
    kind = f["outcome"].choice(*OUTCOMES)
    for key in ("change_points", "candidates", "commits"):
        f.get(key, []).sequence(lambda i: i.integer(0, n_commits - 1))
    if kind in _NAMES:
        key, least = _NAMES[kind]
        if len(f[key].value) < least:
            f[key].fail(f"at least {least} commit index(es) for a {kind!r} outcome")
    if kind in _SAYS_WHY:
        f["why"].string()
    f.get("diffstat", {}).mapping(Field.string)
