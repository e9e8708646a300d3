"""ExplainRecord: `perfkit explain`'s explain.json: for each variant against the reference, the
gap in time per agent-step, its split over phases and the functions that moved, each a paired
difference over rounds with its interval (computed by perfkit/explain.py)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from perfkit.gpu import GpuSummary
from perfkit.records.store import Record


@dataclass(frozen=True)
class Delta:
    """B - A in microseconds per agent-step, averaged over paired rounds, with its interval."""

    name: str
    a_us: float
    b_us: float
    delta_us: float
    ci_low: float
    ci_high: float
    n: int

    @property
    def significant(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0


@dataclass(frozen=True)
class FrameChange:
    frame: str
    self_: Delta  # time with the frame as the leaf
    inclusive: Delta  # time with the frame anywhere on the stack
    by: str = "self"  # which of the two named it a cause ("inclusive": a change spread over its callees)
    via: str | None = None  # for a library frame (numpy, torch, the stdlib): the nearest caller outside it


@dataclass
class Explanation:
    """What `perfkit explain` found for one pair of variants."""

    a: str
    b: str
    rounds: int
    ratio: float  # SPS of B over SPS of A (geo-mean of paired ratios)
    ratio_ci: tuple[float, float]
    gap: Delta  # time per agent-step, B - A
    phases: list[Delta]
    causes: list[FrameChange] = field(default_factory=list)  # significant self-time changes, largest first
    frames_tested: int = 0
    batches: int = 0
    samples: dict[str, float] = field(default_factory=dict)  # label -> samples inside steady blocks
    notes: list[str] = field(default_factory=list)
    learning: dict[str, dict[str, float]] = field(default_factory=dict)  # label -> per-episode means, next to SPS

    @property
    def closure(self) -> float:
        """Sum of the significant phase deltas over the gap (1.0: the phases account for all of it)."""
        total = sum(p.delta_us for p in self.phases if p.significant)
        return total / self.gap.delta_us if self.gap.delta_us else math.nan

    @property
    def explained_by_causes(self) -> float:
        """Share of the gap that the listed functions account for: their self-time changes, or the
        inclusive change of a caller named for a change spread over its callees."""
        total = sum((c.inclusive if c.by == "inclusive" else c.self_).delta_us for c in self.causes)
        return total / self.gap.delta_us if self.gap.delta_us else math.nan

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["causes"] = [{"frame": c.frame, "self": asdict(c.self_), "inclusive": asdict(c.inclusive), "by": c.by,
                        "via": c.via} for c in self.causes]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Explanation:
        return cls(
            a=d["a"], b=d["b"], rounds=d["rounds"], ratio=d["ratio"], ratio_ci=tuple(d["ratio_ci"]),
            gap=Delta(**d["gap"]), phases=[Delta(**p) for p in d["phases"]],
            causes=[FrameChange(c["frame"], Delta(**c["self"]), Delta(**c["inclusive"]), c.get("by", "self"),
                                c.get("via")) for c in d["causes"]],
            frames_tested=d.get("frames_tested", 0), batches=d.get("batches", 0),
            samples=d.get("samples", {}), notes=d.get("notes", []), learning=d.get("learning", {}))


@dataclass
class ExplainRecord(Record):
    """Every explanation of one `perfkit explain` run, and how its blocks were sampled."""

    kind = "explain"

    explanations: list[Explanation]
    compare: str = "sps.json"  # the compare record the explanations came from, beside this file
    sampler: dict[str, Any] = field(default_factory=dict)  # tool, rate, sampler_cores
    flamegraphs: dict[str, dict[str, str]] = field(default_factory=dict)  # b label -> differential SVGs
    # On CUDA: label -> where its GPU time went, from one torch.profiler trace read by HTA (perfkit/gpu.py)
    gpu: dict[str, GpuSummary] = field(default_factory=dict)
    gpu_notes: list[str] = field(default_factory=list)  # why GPU rows are missing, where they are

    def to_dict(self) -> dict[str, Any]:
        return {"explanations": [e.to_dict() for e in self.explanations], "compare": self.compare,
                "sampler": self.sampler, "flamegraphs": self.flamegraphs,
                "gpu": {k: v.to_dict() for k, v in self.gpu.items()}, "gpu_notes": self.gpu_notes}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExplainRecord:
        return cls([Explanation.from_dict(e) for e in d["explanations"]], d.get("compare", "sps.json"),
                   d.get("sampler", {}), d.get("flamegraphs", {}),
                   {k: GpuSummary.from_dict(v) for k, v in d.get("gpu", {}).items()}, d.get("gpu_notes", []))
