"""BisectRecord: `perfkit bisect`'s bisect.json: the commits in the range, the regression measured
between the ends, every tested commit's evidence (paired rounds against both ends) and verdict,
and the outcome (perfkit/bisect.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from perfkit.records.store import Record


@dataclass
class Step:
    """One tested commit: its verdict and the rounds behind it."""

    index: int  # in the range: 0 is the good end, len(commits) - 1 the bad end
    sha: str
    subject: str
    search: str  # "main", or "second" (the second change point of a non-monotonic history)
    verdict: str  # good, bad, beyond-bad, beyond-good, unclear, skip
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
    def from_dict(cls, d: dict[str, Any]) -> BisectRecord:
        steps = [Step(**{**s, "level_ci": tuple(s["level_ci"]), "to_good_ci": tuple(s["to_good_ci"])})
                 for s in d.get("steps", [])]
        keys = ("repo", "env", "metric", "commits", "scenario", "options", "ends", "outcome", "seconds", "interrupted",
                "machine")
        return cls(**{k: d[k] for k in keys if k in d}, steps=steps)
