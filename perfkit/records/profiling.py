"""ProfileRecord: `perfkit profile`'s profile.json: every trial (unprofiled and under each
profiler, round by round, with the sentinel's reading) and the overhead derived from them."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from perfkit.core import stats
from perfkit.core.machine import machine_info
from perfkit.records.store import Field, Record, read_dataclass

UNPROFILED = "none"  # the tool name of unprofiled trials


@dataclass
class ProfileRecord(Record):
    """Every trial of a `perfkit profile` run (profile.json)."""

    kind = "profile"

    scenario: dict[str, Any]
    tools: list[str]
    repeats: int
    trials: list[dict[str, Any]] = field(default_factory=list)  # round, tool, sps, status, error, sentinel
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)  # tool -> round 1's files and extras
    interrupted: bool = False
    machine: dict[str, Any] = field(default_factory=machine_info)

    def _clean(self, tool: str) -> list[dict[str, Any]]:
        """This tool's trials that count: finished with a measurement, and not disturbed by other processes."""
        return [t for t in self.trials if t["tool"] == tool and t["status"] == "ok" and not t["disturbed"]
                and t["sps"] > 0]  # a trial that measured nothing has no ratio to the others

    def clean_pairs(self, tool: str) -> tuple[list[float], list[float]]:
        """(unprofiled SPS, this tool's SPS) over rounds where both finished and neither was disturbed."""
        none = {t["round"]: t["sps"] for t in self._clean(UNPROFILED)}
        this = {t["round"]: t["sps"] for t in self._clean(tool)}
        rounds = sorted(set(none) & set(this))
        return [none[k] for k in rounds], [this[k] for k in rounds]

    def overhead(self, tool: str) -> stats.Comparison:
        """This tool's SPS over the unprofiled SPS of the same rounds: geo-mean of paired ratios."""
        a, b = self.clean_pairs(tool)
        return stats.compare_samples(a, b, paired=True) if a else stats.Comparison(math.nan, math.nan, math.nan, 0.95,
                                                                                   stats.TOO_FEW)

    def sps(self, tool: str) -> float:
        """Geometric mean SPS of the trials that count (nan if none)."""
        xs = [t["sps"] for t in self._clean(tool)]
        return stats.summarize(xs).geomean if xs else math.nan

    def unprofiled_sps(self) -> float:
        return self.sps(UNPROFILED)

    def counts(self, tool: str) -> dict[str, int]:
        ts = [t for t in self.trials if t["tool"] == tool]
        return {"trials": len(ts), "failed": sum(t["status"] == "failed" for t in ts),
                "disturbed": sum(t["status"] == "ok" and t["disturbed"] for t in ts)}

    @property
    def warnings(self) -> list[str]:
        out = []
        for tool in [UNPROFILED, *self.tools]:
            c = self.counts(tool)
            name = "unprofiled" if tool == UNPROFILED else tool
            if c["disturbed"]:
                others = [t["others_cores"] for t in self.trials if t["tool"] == tool and t["disturbed"]
                          and t["others_cores"] is not None]
                used = f" (others used up to {max(others):.2f} core)" if others else ""
                out.append(f"{c['disturbed']} of {c['trials']} {name} trials left out of the overhead: other "
                           f"processes were busy during them{used}")
            if c["failed"]:
                errors = [t["error"].splitlines()[0] for t in self.trials if t["tool"] == tool and t["error"]]
                out.append(f"{c['failed']} of {c['trials']} {name} trials failed: {errors[0]}")
        for tool in self.tools:
            n = len(self.clean_pairs(tool)[0])
            if n < 2:
                out.append(f"{tool}: {n} clean pair(s) with an unprofiled trial: no interval (use --repeats 3 or more)")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def read(cls, f: Field) -> ProfileRecord:
        return read_dataclass(cls, f, {
            "scenario": Field.obj, "tools": lambda x: x.sequence(Field.string), "repeats": Field.integer,
            "trials": lambda x: x.sequence(_read_trial),
            "artifacts": lambda x: {tool: _read_artifacts(a, tool) for tool, a in x.items()},
            "interrupted": Field.boolean, "machine": Field.obj})


def _read_trial(f: Field) -> dict[str, Any]:
    """One trial as the overhead and the warnings read it; a failed one says why (profiling.py
    marks a trial failed exactly when it has an error)."""
    f["round"].integer()
    f["tool"].string()
    f["sps"].number(0)
    error = f["error"].optional(Field.string)
    if f["status"].choice("ok", "failed") == "failed" and not error:
        f["error"].fail("the error of a failed trial")
    f["disturbed"].boolean()
    f["others_cores"].optional(lambda x: x.number(0))
    return f.obj()


def _read_artifacts(f: Field, tool: str) -> dict[str, Any]:
    """A profiler's files and extras as the report lists them, with Scalene's top lines."""
    f.get("files", {}).obj()
    f.get("sps_outside_profiled_epochs").optional(lambda x: x.number(0))
    if tool == "scalene":
        f["top_lines"].sequence(_read_top_line)
    return f.obj()


def _read_top_line(f: Field) -> None:
    f["where"].string()
    f["code"].string()
    for k in ("cpu_percent", "python", "native"):
        f[k].number()
