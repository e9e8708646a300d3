"""GateRecord: `perfkit gate`'s gate.json (what one gate run measured and decided)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from perfkit.core import stats
from perfkit.core.machine import machine_info
from perfkit.records.store import MIN_RATIO, Field, Record, read_dataclass


@dataclass
class CheckResult:
    check: str
    ratio: float
    ci_low: float
    ci_high: float
    threshold: float
    status: str  # "ok" | "within noise" | "FAIL"
    # Baseline checks: the ratio below which this check can fail at all, given the spread between
    # the baseline's processes (more rounds now cannot narrow that part). None for relative checks.
    detectable_below: float | None = None

    def fails(self) -> str | None:
        """A message when the check fails, else None (pytest-benchmark's convention)."""
        if self.status != "FAIL":
            return None
        return (f"{self.check}: ratio {self.ratio:.3f}, 95% CI [{self.ci_low:.3f}, {self.ci_high:.3f}] "
                f"entirely below {self.threshold:.3f}")


@dataclass(frozen=True)
class GateRule:
    """How many rounds a gate run measures: exactly `rounds` without a precision; with one, rounds
    are added until every check's ratio, as this run measures it, is known to +-`precision` (at
    least `min_rounds`, at most `rounds`), or until `max_seconds` have passed."""

    rounds: int = 20
    precision: float | None = None
    max_seconds: float | None = None
    min_rounds: int = stats.MIN_ROUNDS

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Measurement:
    samples: dict[str, list[float]]
    reference: list[float]
    rounds: int
    block_steps: int
    seconds: float
    machine: dict = field(default_factory=machine_info)
    stopped: str = "rounds"  # "rounds" | "precision" | "time"


@dataclass
class GateRecord(Record):
    """What one gate run measured and decided (gate.json)."""

    kind = "gate"

    checks: list[CheckResult]
    measurement: Measurement
    rule: GateRule
    warnings: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        """One message per failed check (pytest-benchmark's convention)."""
        return [f for f in (r.fails() for r in self.checks) if f]

    @property
    def medians(self) -> dict[str, float]:
        return {k: float(np.median(v)) for k, v in self.measurement.samples.items()}

    @property
    def stop_reason(self) -> str:
        """Why the run stopped, for people."""
        m, rule = self.measurement, self.rule
        if m.stopped == "precision":
            return f"every check known to +-{rule.precision:.1%} after {m.rounds} rounds"
        if m.stopped == "time":
            return f"time budget ({rule.max_seconds / 60:g} min) reached after {m.rounds} rounds"
        return (f"{m.rounds} rounds (the most allowed) before every check was known to +-{rule.precision:.1%}"
                if rule.precision else f"{m.rounds} rounds")

    def to_dict(self) -> dict[str, Any]:
        m = self.measurement
        return {
            "checks": [asdict(r) for r in self.checks],
            "failed": [r.check for r in self.checks if r.status == "FAIL"],
            "samples": m.samples, "reference": m.reference, "rounds": m.rounds, "block_steps": m.block_steps,
            "seconds": m.seconds, "machine": m.machine, "stopped": m.stopped, "rule": self.rule.to_dict(),
            "warnings": self.warnings,
        }

    @classmethod
    def read(cls, f: Field) -> GateRecord:
        """Versions before 2 wrote no `rule`: their rounds were fixed."""
        m = Measurement(f["samples"].mapping(_read_sps), _read_sps(f["reference"]), f["rounds"].integer(),
                        f["block_steps"].integer(), f["seconds"].number(0), f.get("machine", {}).obj(),
                        f.get("stopped", "rounds").choice("rounds", "precision", "time"))
        rule = read_dataclass(GateRule, f["rule"], _RULE) if f.has("rule") else GateRule(rounds=m.rounds)
        # the stop reason names the precision or the time budget it stopped at
        if m.stopped == "precision" and rule.precision is None:
            f["stopped"].fail("'rounds' or 'time' (rule.precision is null)")
        if m.stopped == "time" and rule.max_seconds is None:
            f["stopped"].fail("'rounds' or 'precision' (rule.max_seconds is null)")
        return cls(f["checks"].sequence(_read_check), m, rule, f.get("warnings", []).sequence(Field.string))


def _read_sps(f: Field) -> list[float]:
    """Per-round SPS (or the reference workload's): finite and > 0, as the gate measured them."""
    return f.sequence(lambda x: x.number(MIN_RATIO))


def _ratio(f: Field) -> float:
    return f.number(MIN_RATIO)


def _read_check(f: Field) -> CheckResult:
    return read_dataclass(CheckResult, f, {
        "check": Field.string, "ratio": _ratio, "ci_low": _ratio, "ci_high": _ratio, "threshold": _ratio,
        "status": lambda x: x.choice("ok", "within noise", "FAIL"),
        "detectable_below": lambda x: x.optional(_ratio)})


_RULE = {"rounds": lambda f: f.integer(1), "precision": lambda f: f.optional(lambda x: x.number(MIN_RATIO, 1)),
         "max_seconds": lambda f: f.optional(lambda x: x.number(0)), "min_rounds": Field.integer}
