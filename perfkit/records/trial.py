"""TrialResult: what one trial measured (`perfkit run`'s trial.json, one trial of a compare)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from perfkit.core.machine import machine_info
from perfkit.records.store import Field, Record, read_dataclass

# A trial's first window pays for start-up, lazy imports inside torch and cold caches: steady-state
# SPS, phase times and profiles leave it out (older records say how many they left out).
WARMUP_WINDOWS = 1


class TrialFailed(RuntimeError):
    """A trial that produced no result (profilers raise it; `run_compare` records it instead)."""


def require_ok(tr: TrialResult) -> TrialResult:
    """For callers that need a measurement (profilers): a failed trial becomes `TrialFailed`."""
    if tr.error:
        raise TrialFailed(f"trial {tr.label} failed: {tr.error}")
    return tr


@dataclass
class TrialResult(Record):
    """Everything one trial measured. `windows` are per-epoch SPS windows; the first
    `warmup_windows` of them are warm-up, left out of `sps` and `phases`."""

    kind = "trial"

    scenario: dict[str, Any]
    label: str
    sps: float  # steady-state agent-steps/s, warm-up windows excluded
    first_window_sps: float
    agent_steps: int
    seconds: float
    epochs: int
    phases: dict[str, float]  # seconds per phase over the steady-state windows
    windows: list[dict[str, Any]]
    learning: dict[str, float]  # last episodes' means (hearts, ore, batteries, return, ...)
    env_config: dict[str, Any] | None
    env_config_hash: str | None
    vec: dict[str, Any]
    device: str
    ppo: dict[str, Any]
    checkpoints: int = 0
    evals: list[dict[str, float]] = field(default_factory=list)
    interrupted: bool = False
    machine: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)  # profiler outputs written by the trial
    error: str | None = None  # why the trial failed (exception or exit status + stderr tail); windows kept
    exit_status: int | None = None  # of the trial process, when it ran in one and failed
    threads: dict[str, Any] = field(default_factory=dict)  # torch intra-op / inter-op threads and why
    sentinel: dict[str, Any] = field(default_factory=dict)  # other processes' CPU use during the trial
    warmup_windows: int = WARMUP_WINDOWS  # windows left out of `sps` and `phases`
    round: int | None = None  # the compare round this trial ran in; None outside a compare
    # Its round was re-run because other processes disturbed it: kept in the record, not counted.
    replaced: bool = False
    # On a cluster (compare --backend ray): the node it ran on (id, host, cpu, cores, gpu), how many
    # times its round was re-queued because a node died, whether this trial died with its node (its
    # round then ran again elsewhere) or was superseded by that re-run, and the driver's time
    # around the trial process (dispatch, transfer) in seconds. `process_s`: the trial process's
    # own wall time, on a cluster or locally.
    node: dict[str, Any] = field(default_factory=dict)
    requeued: int = 0
    node_lost: bool = False
    superseded: bool = False  # finished, but its round ran again on another node after its node was lost
    dispatch_s: float | None = None
    process_s: float | None = None  # wall time of the trial's process, start to exit (fresh-process trials)

    @property
    def steady_windows(self) -> list[dict[str, Any]]:
        return self.windows[self.warmup_windows:] or self.windows

    @property
    def steady_agent_steps(self) -> int:
        return sum(w["agent_steps"] for w in self.steady_windows)

    @property
    def status(self) -> str:
        """"ok", "failed", "interrupted", "replaced" (its round was re-run), "lost" (its node died
        under it; its round was re-queued on another node) or "superseded" (finished on that node
        before it died; the round ran again elsewhere): only "ok" trials enter statistics."""
        if self.node_lost:
            return "lost"
        if self.error:
            return "failed"
        if self.interrupted:
            return "interrupted"
        return "replaced" if self.replaced else "superseded" if self.superseded else "ok"

    @property
    def env_steps_per_second(self) -> float:
        agents = self.vec.get("agents_per_env") or 1
        return self.sps / agents

    @property
    def phases_ms_per_1k(self) -> dict[str, float]:
        """Milliseconds per 1,000 agent-steps in each phase, over the steady-state windows; {}
        when no agent-step was measured."""
        steps = self.steady_agent_steps or self.agent_steps
        return {k: 1e6 * secs / steps for k, secs in self.phases.items()} if steps else {}

    @property
    def phase_shares(self) -> dict[str, float]:
        """Each phase's fraction of the steady-state time."""
        total = sum(self.phases.values()) or 1.0
        return {k: secs / total for k, secs in self.phases.items()}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}  # status: for readers of the JSON; derived on load

    @classmethod
    def read(cls, f: Field) -> TrialResult:
        return read_dataclass(cls, f, _FIELDS)

    @classmethod
    def failed(cls, scenario: dict[str, Any], label: str, error: str | None, exit_status: int | None = None,
               interrupted: bool = False) -> TrialResult:
        """A trial that measured nothing: still a record, so the table can count it."""
        return cls(scenario=scenario, label=label, sps=0.0, first_window_sps=0.0, agent_steps=0, seconds=0.0,
                   epochs=0, phases={}, windows=[], learning={}, env_config=None, env_config_hash=None, vec={},
                   device="", ppo={}, error=error, exit_status=exit_status, interrupted=interrupted,
                   machine=machine_info())


def read_learning(f: Field) -> dict[str, float]:
    """Learning stats (per-episode means, losses): a diverged run records NaN or infinite losses,
    and they are shown as such."""
    return f.mapping(lambda x: x.number(nan=True, inf=True))


def _read_window(f: Field) -> dict[str, Any]:
    """One SPS window: what the tables, plots, warnings and `perfkit explain` read of it. Its
    learning stats may have been trimmed from the file: then it has none, as the writer puts it."""
    f["agent_steps"].integer()
    f["seconds"].number(0)
    f["sps"].number(0)
    f.get("phases", {}).mapping(Field.number)
    f.get("others_cores").optional(Field.number)
    return {**f.obj(), "learning": read_learning(f.get("learning", {}))}


def _read_vec(f: Field) -> dict[str, Any]:
    f.get("agents_per_env").optional(Field.integer)  # SPS per env divides by it (0 or absent: 1)
    return f.obj()


def _read_artifacts(f: Field) -> dict[str, Any]:
    f.get("folded").optional(Field.string)  # `perfkit explain` reads the samples from it
    return f.obj()


def _read_sentinel(f: Field) -> dict[str, Any]:
    f.get("others_cores").optional(lambda x: x.number(0))
    return f.obj()


def _read_node(f: Field) -> dict[str, Any]:
    f.get("id", "").string()  # trials are grouped by it and the node is named by its first characters
    return f.obj()


_FIELDS = {
    "scenario": Field.obj, "label": Field.string, "sps": lambda f: f.number(0),
    "first_window_sps": lambda f: f.number(0), "agent_steps": Field.integer, "seconds": lambda f: f.number(0),
    "epochs": Field.integer, "phases": lambda f: f.mapping(Field.number),
    "windows": lambda f: f.sequence(_read_window), "learning": read_learning,
    "env_config": lambda f: f.optional(Field.obj), "env_config_hash": lambda f: f.optional(Field.string),
    "vec": _read_vec, "device": Field.string, "ppo": Field.obj, "checkpoints": Field.integer,
    "evals": lambda f: f.sequence(Field.obj), "interrupted": Field.boolean, "machine": Field.obj,
    "artifacts": _read_artifacts, "error": lambda f: f.optional(Field.string),
    "exit_status": lambda f: f.optional(lambda x: x.integer(minimum=-(2**31))), "threads": Field.obj,
    "sentinel": _read_sentinel, "warmup_windows": Field.integer, "round": lambda f: f.optional(Field.integer),
    "replaced": Field.boolean, "node": _read_node, "requeued": Field.integer, "node_lost": Field.boolean,
    "superseded": Field.boolean, "dispatch_s": lambda f: f.optional(lambda x: x.number(0)),
    "process_s": lambda f: f.optional(lambda x: x.number(0)),
}
