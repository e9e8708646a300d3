"""CompareResult: what `perfkit compare` measured (sps.json), and every number derived from it.

The record holds measurements only: the trials (TrialResults, with the round each ran in), the
blocks of a shared-process run, profiles and how the run stopped. What the tables, plots and
warnings show (per-variant summary, ratio to the reference, phase times, learning means,
profiler overhead) is computed here, once, from those; renderers only format it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from perfkit.core import stats
from perfkit.core.folded import FrameDelta
from perfkit.core.stats import block_comparisons, steady_blocks
from perfkit.records.store import Field, Record, read_dataclass
from perfkit.records.trial import TrialResult

NODES_ALL_LOST = "every node was lost"  # stopping["reason"] of a cluster sweep left without nodes


@dataclass(frozen=True)
class VariantSummary:
    """One variant's row in the tables and plots."""

    label: str
    n: int  # samples behind `sps`: trials, or epochs when the variants shared one process
    failed: int  # failed trials
    sps: stats.Summary | None  # None when nothing finished; `sps.geomean` is the headline
    vs_reference: stats.Comparison | None  # paired ratio to the first variant; None for the first itself
    phases_ms_per_1k: dict[str, float] | None  # None when no trial finished
    learning: dict[str, float] | None  # means over the finished trials (stats.mean_learning)
    env_config_hash: str | None
    agents_per_env: int | None
    replaced: int = 0  # trials whose round was re-run because other processes disturbed it
    lost: int = 0  # trials lost with their node, or superseded (cluster runs); their rounds ran again elsewhere

    @property
    def env_sps(self) -> float:
        """The headline in env-steps/s (one env step moves every agent of the env)."""
        return self.sps.geomean / (self.agents_per_env or 1) if self.sps else 0.0


@dataclass
class CompareResult(Record):
    kind = "compare"

    variants: list[str]  # the first is the reference of every ratio
    scenarios: dict[str, dict]
    trials: dict[str, list[TrialResult]]  # label -> trials, in run order
    trials_planned: int  # rounds planned (the most rounds, when stopping at a precision)
    interrupted: bool = False
    machine: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, dict] = field(default_factory=dict)  # label -> profiler artifacts (+ flamediff)
    stopping: dict[str, Any] = field(default_factory=dict)  # the rule, and why the run stopped
    # "process": a fresh process per trial; "inprocess": variants share one; "interleave": commands
    # started once and run in turns, paused while another runs. The last two are measured in blocks.
    mode: str = "process"
    blocks: list[dict] = field(default_factory=list)  # inprocess: one epoch of every variant per round
    warmup_rounds: int = 0  # inprocess: rounds left out of the statistics (inprocess.WARMUP_ROUNDS)
    # When every block was sampled (`perfkit explain`): tool, rate, the folded stacks (one file for
    # a shared process; per trial in TrialResult.artifacts["folded"]) and the sampler's CPU in cores.
    sampler: dict[str, Any] = field(default_factory=dict)
    backend: str = "local"  # "local" or "ray" (trials on a cluster's nodes; see perfkit/engine/cluster.py)
    nodes: dict[str, dict] = field(default_factory=dict)  # ray: node id -> host, cpu, cores, gpu (and lost)

    @property
    def commands(self) -> bool:
        """Every variant is a user's own command (`--cmd`): its counter's steps, not agent-steps."""
        return bool(self.scenarios) and all(sc.get("workload") == "command" for sc in self.scenarios.values())

    @property
    def blocked(self) -> bool:
        """Measured in blocks, paired round by round (variants in one process, or commands in turns)."""
        return self.mode in ("inprocess", "interleave")

    def ok_trials(self, label: str) -> list[TrialResult]:
        """Trials whose numbers count. In one shared process an interrupted session still counts:
        its blocks are paired round by round."""
        keep = ("ok", "interrupted") if self.blocked else ("ok",)
        return [t for t in self.trials.get(label, []) if t.status in keep]

    def failed(self, label: str) -> list[TrialResult]:
        return [t for t in self.trials.get(label, []) if t.status == "failed"]

    def sps(self, label: str) -> list[float]:
        """The samples behind the summary: per trial, or per block (epoch) when variants share a process."""
        if self.blocked:
            return [b["sps"][label] for b in steady_blocks(self.blocks, self.warmup_rounds)
                    if b["sps"].get(label, 0) > 0]
        return [t.sps for t in self.ok_trials(label)]

    def pairs(self, label: str) -> list[tuple[TrialResult, TrialResult]]:
        """(reference trial, this variant's trial) for every round in which both finished, on the
        same node (a round runs every variant on one node; a pair across nodes is never formed)."""
        def by_round(ts: list[TrialResult]) -> dict[int, TrialResult]:
            return {t.round if t.round is not None else i: t for i, t in enumerate(ts) if t.sps > 0}

        first, this = by_round(self.ok_trials(self.variants[0])), by_round(self.ok_trials(label))
        return [(first[k], this[k]) for k in sorted(set(first) & set(this))
                if first[k].node.get("id") == this[k].node.get("id")]

    def paired(self, label: str) -> tuple[list[float], list[float]]:
        """(reference SPS, this variant's SPS) over rounds in which both finished (`pairs`)."""
        pairs = self.pairs(label)
        return [a.sps for a, _ in pairs], [b.sps for _, b in pairs]

    @property
    def nodes_all_lost(self) -> bool:
        """A cluster sweep that stopped because no node was left (cluster.py sets the reason)."""
        return self.stopping.get("reason") == NODES_ALL_LOST

    @property
    def multi_node(self) -> bool:
        """Trials ran on more than one machine (compare --backend ray): statistics block by node."""
        return len({t.node.get("id") for ts in self.trials.values() for t in ts if t.node.get("id")}) > 1

    def node_log_ratios(self, label: str) -> dict[str, list[float]]:
        """Per node, the log ratios log(this / reference) of its rounds (`pairs`)."""
        out: dict[str, list[float]] = {}
        for a, b in self.pairs(label):
            out.setdefault(a.node.get("id") or "local", []).append(math.log(b.sps / a.sps))
        return out

    def node_comparisons(self) -> dict[str, stats.NodeBlocked]:
        """Every variant after the first against the first, blocked by node: overall and per node."""
        if not self.ok_trials(self.variants[0]):
            return {}
        return {label: stats.compare_node_blocked(self.node_log_ratios(label)) for label in self.variants[1:]}

    def comparisons(self) -> dict[str, stats.Comparison]:
        """Every variant after the first against the first (the reference): paired by round, or
        by batches of blocks when the variants shared a process, or blocked by node when the
        rounds ran on several machines (`stats.compare_node_blocked`)."""
        if self.multi_node:
            return {label: nb.overall for label, nb in self.node_comparisons().items()}
        if self.blocked:
            if not self.blocks:
                return {}
            return {k: c for k, (_, c) in block_comparisons(self.blocks, self.variants, self.warmup_rounds,
                                                            self.stopping.get("batch_rounds")).items()}
        if not self.ok_trials(self.variants[0]):
            return {}
        return {label: stats.compare_samples(*self.paired(label), paired=True) for label in self.variants[1:]}

    def comparison(self, label: str) -> stats.Comparison | None:
        return self.comparisons().get(label)

    def summaries(self) -> list[VariantSummary]:
        """Per variant, in order: summary, ratio to the reference, phase times, learning means."""
        comparisons = self.comparisons()
        out = []
        for label in self.variants:
            xs, done = self.sps(label), self.ok_trials(label)
            phases = None
            if done:
                phases = {}
                for t in done:
                    for k, ms in t.phases_ms_per_1k.items():
                        phases[k] = phases.get(k, 0.0) + ms / len(done)
            out.append(VariantSummary(
                label=label, n=len(xs), failed=len(self.failed(label)),
                replaced=sum(t.status == "replaced" for t in self.trials.get(label, [])),
                lost=sum(t.status in ("lost", "superseded") for t in self.trials.get(label, [])),
                sps=stats.summarize(xs) if xs else None, vs_reference=comparisons.get(label) if xs else None,
                phases_ms_per_1k=phases, learning=stats.mean_learning([t.learning for t in done]) if done else None,
                env_config_hash=done[0].env_config_hash if done else None,
                agents_per_env=done[0].vec.get("agents_per_env") if done else None,
            ))
        return out

    def profile_overhead(self, label: str) -> float:
        """The profiled run's SPS as a fraction of the unprofiled median (1.0: no overhead)."""
        xs = self.sps(label)
        median = stats.summarize(xs).median if xs else 0.0  # 0: every counted trial measured nothing
        return self.profiles[label]["sps"] / median if median > 0 else float("nan")

    def flamediff_frames(self, label: str) -> list[FrameDelta] | None:
        """The frames whose share changed most against the reference; None when not recorded."""
        frames = self.profiles.get(label, {}).get("flamediff_frames")
        return None if frames is None else [FrameDelta(**f) for f in frames]

    def warnings(self) -> list[str]:
        """Things a careful reader should know before trusting the table."""
        out = []
        summaries = self.summaries()
        multi_node = self.multi_node
        spread_within = self.within_node_cv() if multi_node else {}
        for s in summaries:
            if multi_node:  # across machines the spread is the machines'; within one it is noise
                if spread_within.get(s.label, 0.0) >= stats.UNSTABLE_CV:
                    out.append(f"{s.label}: unstable measurement, spread ±{100 * spread_within[s.label]:.1f}% within "
                               f"nodes (>= {100 * stats.UNSTABLE_CV:.0f}%); add trials or quiet the machines")
            elif s.sps and s.sps.unstable:
                out.append(f"{s.label}: unstable measurement, spread ±{100 * s.sps.cv:.1f}% of the mean "
                           f"(>= {100 * stats.UNSTABLE_CV:.0f}%); add trials or quiet the machine")
            if s.vs_reference and s.vs_reference.verdict == stats.TOO_FEW:
                out.append(f"{s.label}: fewer than {stats.MIN_TRIALS} trials per variant, no verdict")
            lr = s.learning or {}
            if lr.get("curriculum.tasks_completed", 0) >= 2 and lr.get("curriculum.configs_applied", 1) == 0:
                out.append(f"{s.label}: the curriculum completed tasks but never applied a new config "
                           "(deferred config + __getattribute__ wrapper: the wrapper's reset never runs)")
        for label in self.variants:
            for t in self.failed(label):
                first = t.error.splitlines()[0] if t.error else "failed"
                round_ = "?" if t.round is None else t.round
                out.append(f"{label}: trial in round {round_} failed: {first} (details in sps.json)")
        if self.interrupted:
            done = sum(len(self.ok_trials(v)) for v in self.variants)
            planned = self.trials_planned * len(self.variants)
            what = " while profiling" if self.stopping.get("flamegraphs") == "interrupted" else ""
            out.append(f"interrupted{what}: {done} of {planned} trials finished")
        out += self.node_warnings()
        out += self.sentinel_warnings()
        planned, measured = self.trials_planned, self.stopping.get("processes") or 1
        if self.mode == "interleave" and planned > 1 and measured < planned and self.blocks:
            out.append(f"{measured} of {planned} process sets gave rounds to compare (the others' time went to "
                       "their start or a failure): the interval is over those")
        if self.mode == "interleave" and len(self.variants) > 1 and measured == 1 \
                and self.blocks:
            out.append("each command ran as one process: a process's own speed (often 1-4% between twins on a busy "
                       "machine) is not in the interval; --processes 3 or more (with the time for their warm-ups, "
                       "e.g. --max-minutes 3) puts it there")
        orders = {b["build_order"] for b in steady_blocks(self.blocks, self.warmup_rounds) if "build_order" in b}
        if 0 < len(orders) < len(self.variants):
            out.append(f"the trainers ran in {len(orders)} of their {len(self.variants)} build orders (the run was "
                       "too short to rebuild them in every order): an offset between trainers that comes with the "
                       "order they were built in (about 0.2% between twins) is not averaged out of the interval")
        rule = self.stopping.get("rule") or {}
        if rule.get("precision") and self.stopping.get("reason") != "precision":
            out.append(f"precision ±{rule['precision']:.1%} not reached: stopped by {self.stopping.get('reason')} "
                       f"after {self.stopping.get('rounds_run')} rounds" + self._time_to_precision(rule["precision"]))
        hashes = {s.env_config_hash for s in summaries if s.env_config_hash}
        if len(hashes) > 1 and not any("preset" in v for v in self.variants):
            out.append("variants ran different env configs (config hash differs): their SPS is not like for like")
        return out

    def _time_to_precision(self, precision: float) -> str:
        """'; the widest interval is ±W, and at this spread ±P needs about M minutes' where the
        rounds carry their time (one process, or commands in turns): a half-width shrinks as one
        over the square root of the rounds, so the time scales by (W / P)^2. Empty otherwise."""
        times = [b["t"] for b in self.blocks if isinstance(b.get("t"), (int, float))]
        if not times or max(times) <= 0 or any(b.get("process", 0) for b in self.blocks):
            return ""  # rounds without their time, or several process sets (the sets are the unit)
        widths = [w for w in (stats.half_width(c) for c in self.comparisons().values()) if math.isfinite(w)]
        if not widths:
            return ""
        w = max(widths)
        minutes = max(times) / 60 * (w / precision) ** 2
        return (f"; the widest interval is ±{w:.1%}, and at this spread ±{precision:.1%} needs about "
                f"{minutes:.0f} minutes of rounds (an interval narrows as one over the square root of the time)")

    def within_node_cv(self) -> dict[str, float]:
        """Per variant, the spread of its SPS around each node's own mean (sd of log SPS, pooled
        within nodes): how noisy the trials were, without the difference between machines."""
        out = {}
        for label in self.variants:
            groups: dict[str, list[float]] = {}
            for t in self.ok_trials(label):
                if t.sps > 0:
                    groups.setdefault(t.node.get("id") or "local", []).append(math.log(t.sps))
            var, dof = stats.pooled_within_var(list(groups.values()))
            if dof:
                out[label] = math.sqrt(var)
        return out

    def node_warnings(self) -> list[str]:
        """Cluster runs: nodes that disagree about a ratio, nodes lost and trials re-queued."""
        out = []
        if self.multi_node:
            for label, nb in self.node_comparisons().items():
                if nb.nodes_disagree:
                    per = ", ".join(f"{self.node_name(n)} {c.ratio:.3f}" for n, c in nb.per_node.items())
                    out.append(f"{label}: the nodes disagree about the ratio ({per}; p = {nb.disagree_p:.2g}): it "
                               "depends on the machine, and the overall ratio holds for this mix of machines only; "
                               "see the per-node table")
        lost = [t for ts in self.trials.values() for t in ts if t.node_lost]
        if lost:
            names = sorted({self.node_name(t.node.get("id", "?")) for t in lost})
            requeued = sum(1 for ts in self.trials.values() for t in ts if t.requeued and t.status == "ok")
            out.append(f"{len(lost)} trial(s) lost with their node ({', '.join(names)}): their rounds were re-queued "
                       f"({requeued} trial(s) of re-queued rounds counted); the lost trials, and those of their rounds "
                       "that finished before, are kept in sps.json")
        if self.nodes_all_lost:
            out.append(f"incomplete: every node was lost, after {self.stopping.get('rounds_run')} of "
                       f"{self.trials_planned} rounds")
        return out

    def node_name(self, node_id: str) -> str:
        """A short readable name for a node: host and the first 8 characters of its id."""
        info = self.nodes.get(node_id, {})
        short = node_id[:8]
        return f"{info['host']}/{short}" if info.get("host") else short

    def sentinel_warnings(self) -> list[str]:
        """What else used the machine: trials (or, in one process, epochs) during which other
        processes took CPU, and windows that stalled. Flagged, never dropped: the raw numbers stay
        in sps.json."""
        from perfkit.core.sentinel import MAX_OTHER_CORES, slow_windows

        out = []
        if self.blocked:
            unit = "blocks" if self.mode == "interleave" else "epochs"
            for label in self.variants:
                others = [b["others_cores"].get(label) for b in steady_blocks(self.blocks, self.warmup_rounds)
                          if b.get("others_cores", {}).get(label) is not None]
                busy = [x for x in others if x >= MAX_OTHER_CORES]
                if busy:
                    out.append(f"{label}: {len(busy)} of {len(others)} {unit} ran while other processes used "
                               f"{sum(busy) / len(busy):.1f} core on average")
            first = self.variants[0]
            batch = self.stopping.get("batch_rounds") or len(self.variants)

            def disturbed(b: dict) -> bool:
                return any((x or 0.0) >= MAX_OTHER_CORES for x in b.get("others_cores", {}).values())

            for label in self.variants[1:]:
                t = stats.trimmed_rounds(self.blocks, first, label, self.warmup_rounds, batch, disturbed)
                if t.disturbed and t.cut:
                    out.append(f"{label} vs {first}: the interval is a trimmed mean; it cut {t.cut} of {t.batches} "
                               f"rotations (the {stats.TRIM:.0%} most extreme at each end), {t.disturbed_cut} of the "
                               f"{t.disturbed} with a disturbed {unit[:-1]}: a stall of one side weighs no more "
                               "than any rotation kept")
            return out
        for label in self.variants:
            trials = self.trials.get(label, [])
            replaced = [t for t in trials if t.status == "replaced"]
            if replaced:
                worst = max((t.sentinel.get("others_cores") or 0.0) for t in replaced)
                out.append(f"{label}: {len(replaced)} of {len(trials)} trials re-run (their round was disturbed: "
                           f"other processes used up to {worst:.1f} core); the re-runs count, the first runs are "
                           "kept in sps.json")
            counted = [t for t in trials if t.status != "replaced"]
            flagged = [t for t in counted if t.sentinel.get("disturbed")]
            if flagged:
                worst = max((t.sentinel.get("others_cores") or 0.0) for t in flagged)
                out.append(f"{label}: {len(flagged)} of {len(counted)} counted trials disturbed: other processes "
                           f"used up to {worst:.1f} core")
            stalls = sum(len(slow_windows([w["sps"] for w in t.steady_windows])) for t in trials if t.windows)
            if stalls:
                out.append(f"{label}: {stalls} windows ran below half their trial's median SPS (stalls)")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "variants": self.variants, "scenarios": self.scenarios,
            "trials": {label: [t.to_dict() for t in ts] for label, ts in self.trials.items()},
            "trials_planned": self.trials_planned, "interrupted": self.interrupted, "machine": self.machine,
            "profiles": self.profiles, "stopping": self.stopping, "mode": self.mode, "blocks": self.blocks,
            "warmup_rounds": self.warmup_rounds, "sampler": self.sampler, "backend": self.backend,
            "nodes": self.nodes,
        }

    @classmethod
    def read(cls, f: Field) -> CompareResult:
        """Any readable version: versions 1 and 2 also wrote `rows` and each profile's
        `overhead_ratio`, both derived, and are ignored here."""
        return read_dataclass(cls, f, _FIELDS)


def _read_variants(f: Field) -> list[str]:
    variants = f.sequence(Field.string)
    if not variants:  # the first is the reference of every ratio
        f.fail("at least one variant")
    return variants


def _read_profile(f: Field) -> dict[str, Any]:
    """One variant's profiler artifacts as sps.md links them: a separate profiled trial (`sps`)
    or samples of every steady block (`samples` at `rate` Hz), and its differential flamegraph."""
    f["files"]["svg"].string()
    if f.has("sps"):
        f["sps"].number(0)
    else:
        f["samples"].number(0)
        f["rate"].number(0)
    if f.has("flamediff"):
        f["flamediff"]["on_b"].string()
        f["flamediff"]["on_a"].string()
    f.get("flamediff_frames").optional(lambda x: x.sequence(_read_frame_delta))
    return {k: v for k, v in f.obj().items() if k != "overhead_ratio"}  # derived: versions 1 and 2 wrote it


def _read_frame_delta(f: Field) -> dict[str, Any]:
    read_dataclass(FrameDelta, f, {"frame": Field.string, "inclusive_a": _share, "inclusive_b": _share,
                                   "self_a": _share, "self_b": _share})
    return f.obj()


def _share(f: Field) -> float:
    return f.number(0, 1)


def _read_stopping(f: Field) -> dict[str, Any]:
    rule = f.get("rule")
    if rule.value is not None:
        rule.get("precision").optional(lambda x: x.number(0, 1))  # shown as a percentage
    f.get("processes").optional(Field.integer)  # shown as a count
    return f.obj()


def _read_block(f: Field) -> dict[str, Any]:
    """One round of variants sharing a process: per label its SPS, other processes' CPU use and
    (version 3 on) agent-steps, seconds and phases, which `perfkit explain` reads together."""
    f["round"].integer()
    f.get("process").optional(Field.integer)  # compare --cmd --processes: which of the process sets
    f["sps"].mapping(lambda x: x.number(0))
    f.get("others_cores", {}).mapping(lambda x: x.optional(lambda y: y.number(0)))
    for label, phases in f.get("phases", {}).items():
        phases.mapping(Field.number)
        f["agent_steps"][label].integer()
        f["seconds"][label].number(0)
    return f.obj()


def _read_sampler(f: Field) -> dict[str, Any]:
    f.get("folded").optional(Field.string)  # `perfkit explain` reads the session's samples from it
    f.get("sampler_cores").optional(lambda x: x.number(0))
    return f.obj()


def _read_node(f: Field) -> dict[str, Any]:
    f.get("ray_cpus", 0).number(0)  # may be absent, never null: the per-node table formats it
    return f.obj()


_FIELDS = {
    "variants": _read_variants, "scenarios": lambda f: f.mapping(Field.obj),
    "trials": lambda f: f.mapping(lambda ts: ts.sequence(TrialResult.read)), "trials_planned": Field.integer,
    "interrupted": Field.boolean, "machine": Field.obj, "profiles": lambda f: f.mapping(_read_profile),
    "stopping": _read_stopping, "mode": lambda f: f.choice("process", "inprocess", "interleave"),
    "blocks": lambda f: f.sequence(_read_block), "warmup_rounds": Field.integer, "sampler": _read_sampler,
    "backend": Field.string, "nodes": lambda f: f.mapping(_read_node),
}
