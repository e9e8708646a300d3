"""DiagnoseResult: what `perfkit diagnose` found (diagnose.json), one CheckOutcome per check."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from perfkit.records.store import Field, Record, read_dataclass

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
    def read(cls, f: Field) -> DiagnoseResult:
        return read_dataclass(cls, f, {"scenario": Field.obj, "checks": lambda x: x.sequence(_read_check)})


def _read_check(f: Field) -> CheckOutcome:
    check = read_dataclass(CheckOutcome, f, {"name": Field.string, "verdict": lambda x: x.choice(OK, FAIL, NA),
                                             "detail": Field.string, "data": Field.obj})
    read_rows = _ROWS.get(check.name)
    if read_rows is not None:
        read_rows(f.get("data", {}))
    return check


def _read_reach(f: Field) -> None:
    f["earliest_heart_step"].integer()
    for mode in f["by_desync_mode"].values():
        mode["analytic"].number(0, 1)  # fractions of first episodes
        mode["measured"].number(0, 1)


def _read_scripted(f: Field) -> None:
    for preset in f.values():
        for key in ("greedy_hearts", "greedy_return", "random_hearts", "random_return"):
            preset[key].number()


def _read_observations(f: Field) -> None:
    for channel in f["channel_ranges"].values():
        channel.sequence(Field.number, length=2)  # min, max


# The checks whose data render_diagnose tabulates, by name: what their tables read.
_ROWS = {"heart reachable in first episodes": _read_reach, "scripted policy gets hearts": _read_scripted,
         "observations": _read_observations}
