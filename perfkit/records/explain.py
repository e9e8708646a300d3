"""ExplainRecord: `perfkit explain`'s explain.json: for each variant against the reference, the
gap in time per agent-step, its split over phases and the functions that moved, each a paired
difference over rounds with its interval (computed by perfkit/commands/explain.py)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from perfkit.records.store import MIN_RATIO, Field, Record, read_dataclass
from perfkit.records.trial import read_learning


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
    def read(cls, f: Field) -> Explanation:
        a, b = f["a"].string(), f["b"].string()

        def learning(x: Field) -> dict[str, dict[str, float]]:
            out = x.mapping(read_learning)
            for label, values in x.items():  # shown as the two variants' columns
                if label not in (a, b):
                    values.fail(f"the learning of {a!r} or {b!r}")
            return out

        return read_dataclass(cls, f, {
            "a": Field.string, "b": Field.string, "rounds": Field.integer, "ratio": _ratio,
            "ratio_ci": lambda x: tuple(x.sequence(_ratio, length=2)), "gap": _read_delta,
            "phases": lambda x: x.sequence(_read_delta), "causes": lambda x: x.sequence(_read_cause),
            "frames_tested": Field.integer, "batches": Field.integer,
            "samples": lambda x: x.mapping(lambda n: n.number(0)), "notes": lambda x: x.sequence(Field.string),
            "learning": learning})


def _ratio(f: Field) -> float:
    """B's SPS over A's, or a bound of its interval: > 0 (the summary takes its inverse), NaN
    with too few rounds."""
    return f.number(MIN_RATIO, nan=True)


def _us(f: Field) -> float:
    """Microseconds per agent-step, NaN where too few rounds gave a mean or an interval."""
    return f.number(nan=True)


def _read_delta(f: Field) -> Delta:
    return read_dataclass(Delta, f, {"name": Field.string, "a_us": _us, "b_us": _us, "delta_us": _us, "ci_low": _us,
                                     "ci_high": _us, "n": Field.integer})


def _read_cause(f: Field) -> FrameChange:
    return FrameChange(f["frame"].string(), _read_delta(f["self"]), _read_delta(f["inclusive"]),
                       f.get("by", "self").choice("self", "inclusive"), f.get("via").optional(Field.string))


@dataclass
class GpuSummary:
    """Where one variant's GPU time went during its profiled epochs."""

    epochs: int  # profiler steps in the trace
    agent_steps_per_epoch: int
    rollout_steps_per_epoch: int
    kernel_us: float  # per agent-step, summed kernel durations on the main stream
    idle_us: dict[str, float]  # per agent-step: host_wait, kernel_wait, other
    syncs_per_rollout_step: float
    kernels_per_rollout_step: float
    stream: int
    trace: str = ""  # path of the trace, relative to the run directory
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def idle_total_us(self) -> float:
        return sum(self.idle_us.values())

    @property
    def idle_share(self) -> float:
        """Idle over idle + kernel time on the main stream."""
        busy = self.idle_total_us + self.kernel_us
        return self.idle_total_us / busy if busy else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "agent_steps_per_epoch": self.agent_steps_per_epoch,
                "rollout_steps_per_epoch": self.rollout_steps_per_epoch, "kernel_us": self.kernel_us,
                "idle_us": dict(self.idle_us), "syncs_per_rollout_step": self.syncs_per_rollout_step,
                "kernels_per_rollout_step": self.kernels_per_rollout_step, "stream": self.stream,
                "trace": self.trace, "extra": dict(self.extra)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GpuSummary:
        return cls(**{k: d[k] for k in ("epochs", "agent_steps_per_epoch", "rollout_steps_per_epoch", "kernel_us",
                                        "idle_us", "syncs_per_rollout_step", "kernels_per_rollout_step", "stream")},
                   trace=d.get("trace", ""), extra=d.get("extra", {}))


def _read_gpu(f: Field) -> GpuSummary:
    """One variant's GPU rows, every number the table shows checked before GpuSummary takes them."""
    for key in ("epochs", "agent_steps_per_epoch", "rollout_steps_per_epoch", "stream"):
        f[key].integer()
    for key in ("kernel_us", "syncs_per_rollout_step", "kernels_per_rollout_step"):
        f[key].number(0)
    f["idle_us"].mapping(lambda x: x.number(0))  # summed for the idle total
    for cause in ("host_wait", "kernel_wait", "other"):  # a row each
        f["idle_us"][cause].number(0)
    f.get("trace", "").string()
    f.get("extra", {}).get("profiler_step_us", 0).number(0)  # may be absent, never null: a row formats it
    return GpuSummary.from_dict(f.obj())


@dataclass
class ExplainRecord(Record):
    """Every explanation of one `perfkit explain` run, and how its blocks were sampled."""

    kind = "explain"

    explanations: list[Explanation]
    compare: str = "sps.json"  # the compare record the explanations came from, beside this file
    sampler: dict[str, Any] = field(default_factory=dict)  # tool, rate, sampler_cores
    flamegraphs: dict[str, dict[str, str]] = field(default_factory=dict)  # b label -> differential SVGs
    # On CUDA: label -> where its GPU time went, from one torch.profiler trace read by HTA (perfkit/engine/gpu.py)
    gpu: dict[str, GpuSummary] = field(default_factory=dict)
    gpu_notes: list[str] = field(default_factory=list)  # why GPU rows are missing, where they are

    def to_dict(self) -> dict[str, Any]:
        return {"explanations": [e.to_dict() for e in self.explanations], "compare": self.compare,
                "sampler": self.sampler, "flamegraphs": self.flamegraphs,
                "gpu": {k: v.to_dict() for k, v in self.gpu.items()}, "gpu_notes": self.gpu_notes}

    @classmethod
    def read(cls, f: Field) -> ExplainRecord:
        return read_dataclass(cls, f, {
            "explanations": lambda x: x.sequence(Explanation.read), "compare": Field.string,
            "sampler": _read_sampler, "flamegraphs": lambda x: x.mapping(_read_flamegraphs),
            "gpu": lambda x: x.mapping(_read_gpu), "gpu_notes": lambda x: x.sequence(Field.string)})


def _read_sampler(f: Field) -> dict[str, Any]:
    f.get("sampler_cores").optional(lambda x: x.number(0))
    return f.obj()


def _read_flamegraphs(f: Field) -> dict[str, str]:
    f["on_b"].string()  # the one the report links
    return f.mapping(Field.string)
