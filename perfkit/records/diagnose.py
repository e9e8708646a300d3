"""DiagnoseResult: what `perfkit diagnose` found (diagnose.json), one CheckOutcome per check."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from perfkit.records.store import Record

OK, FAIL, NA = "ok", "FAIL", "n/a"


@dataclass
class CheckOutcome:
    name: str
    verdict: str  # OK, FAIL or NA
    detail: str
    data: dict = field(default_factory=dict)


@dataclass
class DiagnoseResult(Record):
    kind = "diagnose"

    scenario: dict[str, Any]
    checks: list[CheckOutcome]

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.verdict == FAIL]

    def to_dict(self) -> dict[str, Any]:
        # `failed` is derived, written for readers of the JSON (CI scripts); ignored on load
        return {"scenario": self.scenario, "checks": [asdict(c) for c in self.checks], "failed": self.failed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiagnoseResult:
        return cls(data["scenario"], [CheckOutcome(**c) for c in data["checks"]])
