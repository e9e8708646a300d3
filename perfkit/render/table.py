"""Tables (tabulate) for trials and comparisons: `render_*(record, fmt) -> str`. The numbers of a
trial, a compare and a diagnose come from their records (perfkit/records/); here they are formatted."""

from __future__ import annotations

import math

from tabulate import tabulate

from perfkit.core import stats
from perfkit.core.folded import FrameDelta
from perfkit.core.timing import PHASES
from perfkit.records.compare import CompareResult, VariantSummary
from perfkit.records.diagnose import CheckOutcome
from perfkit.records.learning import TRAINING_STATS
from perfkit.records.trial import TrialResult

LEARNING_COLUMNS = (
    ("heart.get", "hearts/ep"),
    ("ore_red.get", "ore/ep"),
    ("battery_red.get", "batteries/ep"),
    ("episode_return", "return/ep"),
    ("episodes", "episodes"),
    ("entropy", "entropy"),
)


def _spread(s: stats.Summary) -> str:
    return f"{s.min:,.0f}–{s.max:,.0f} (±{100 * s.cv:.1f}%)"


def _trials_cell(v: VariantSummary, mode: str = "process", processes: int = 1) -> str:
    n = {"inprocess": f"{v.n} epochs", "interleave": f"{v.n} blocks"}.get(mode, f"{v.n}")
    if processes > 1:
        n += f" in {processes} processes"
    extra = [f"+{v.failed} failed"] * bool(v.failed) + [f"+{v.replaced} re-run"] * bool(v.replaced) + \
        [f"+{v.lost} lost with a node"] * bool(v.lost)
    return n + (f" ({', '.join(extra)})" if extra else "")


def render_sps(result: CompareResult, fmt: str = "github") -> str:
    """Variant, geometric-mean SPS, spread, paired ratio to the reference (first) variant with its
    CI, verdict."""
    rows = []
    for v in result.summaries():
        trials = _trials_cell(v, result.mode, result.stopping.get("processes") or 1)
        if v.sps is None:
            rows.append([v.label, trials, "no finished trial", "", "", "", ""])
            continue
        c = v.vs_reference
        if c is None:
            ratio, ci, verdict = "1.00 (reference)", "", ""
        else:
            ratio = f"{c.ratio:.3f}"
            ci = "" if c.verdict == stats.TOO_FEW else f"[{c.ci_low:.3f}, {c.ci_high:.3f}]"
            verdict = stats.describe(c)
        rows.append([v.label, trials, f"{v.sps.geomean:,.0f}", _spread(v.sps), f"{v.env_sps:,.0f}", ratio, ci,
                     verdict])
    headers = ["variant", "trials", "agent-steps/s (geo-mean)", "spread (min–max, ±cv)", "env-steps/s",
               "ratio vs first (geo-mean, paired)", "95% CI", "verdict"]
    if result.commands:  # a command's own counter: no agents, no env-steps apart from it
        headers = [h for h in headers if h != "env-steps/s"]
        headers[2] = "steps/s (geo-mean)"
        rows = [r[:4] + r[5:] if len(r) == 8 else r for r in rows]
    rows = [r if len(r) == len(headers) else r + [""] * (len(headers) - len(r)) for r in rows]
    return tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)


def render_nodes(result: CompareResult, fmt: str = "github") -> str:
    """Cluster runs: every variant's ratio to the first on each node (rounds run there) and
    overall, blocked by node, with the p-value of the nodes' disagreement."""
    blocked = result.node_comparisons()
    nodes = sorted({n for nb in blocked.values() for n in nb.per_node})

    def cell(c: stats.Comparison | None) -> str:
        if c is None:
            return "–"
        if c.verdict == stats.TOO_FEW:
            return f"{c.ratio:.3f}"
        return f"{c.ratio:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}]"

    rows = []
    for n in nodes:
        info = result.nodes.get(n, {})
        rounds = max(nb.rounds.get(n, 0) for nb in blocked.values())
        rows.append([result.node_name(n) + (" (lost)" if info.get("lost") else ""), info.get("cpu", "?"),
                     f"{info.get('ray_cpus', 0):g}" if info else "?", str(rounds),
                     *[cell(nb.per_node.get(n)) for nb in blocked.values()]])
    rows.append(["overall (blocked by node)", "", "", str(sum(int(r[3]) for r in rows)),
                 *[cell(nb.overall) + (" nodes disagree" if nb.nodes_disagree else "") for nb in blocked.values()]])
    headers = ["node", "cpu", "cpus", "rounds", *[f"{label} vs first" for label in blocked]]
    return tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)


def render_phases(result: CompareResult, fmt: str = "github") -> str:
    """Milliseconds per 1,000 agent-steps in each phase (steady state): perfkit's phases, then any
    other a user's trainer reported through perfkit.probe."""
    summaries = [v for v in result.summaries() if v.phases_ms_per_1k]
    seen = {k for v in summaries for k in v.phases_ms_per_1k}
    names = [p for p in PHASES if p in seen or not seen - set(PHASES)] + sorted(seen - set(PHASES))
    rows = [[v.label, *(f"{v.phases_ms_per_1k.get(p, 0.0):.2f}" for p in names),
             f"{sum(v.phases_ms_per_1k.values()):.2f}"] for v in summaries]
    return tabulate(rows, headers=["variant (ms per 1k agent-steps)", *names, "total"], tablefmt=fmt,
                    disable_numparse=True)


def render_learning(result: CompareResult, fmt: str = "github") -> str:
    """Learning health next to SPS: per-episode items, return, entropy, resolved config hash. When
    no variant reports the built-in trainer's columns (a user's command with --metric), its own
    metrics are the columns; a user's env without hearts adds the keys its episodes report."""
    summaries = [v for v in result.summaries() if v.learning is not None]
    if summaries and not any(k in v.learning for v in summaries for k, _ in LEARNING_COLUMNS):
        names = sorted({k for v in summaries for k in v.learning})
        rows = [[v.label, *(f"{v.learning[k]:.4g}" if k in v.learning else "–" for k in names)] for v in summaries]
        return tabulate(rows, headers=["variant", *names], tablefmt=fmt, disable_numparse=True)
    columns = list(LEARNING_COLUMNS)
    if not any("heart.get" in v.learning for v in summaries):  # a user's env: its own episode keys too
        own = sorted({k for v in summaries for k in v.learning} - {k for k, _ in LEARNING_COLUMNS} - TRAINING_STATS)
        columns[4:4] = [(k, k) for k in own if not k.startswith(stats.COUNTER_PREFIX)]
    rows = []
    for v in result.summaries():
        lr = v.learning
        if lr is None:
            continue
        cells = [f"{lr[k]:.2f}" if k in lr else "–" for k, _ in columns]
        applied = lr.get("curriculum.configs_applied")
        done = lr.get("curriculum.tasks_completed")
        cur = "–" if done is None or applied is None else f"{applied:.0f}/{done:.0f}"
        rows.append([v.label, *cells, cur, v.env_config_hash or "–"])
    headers = ["variant", *(h for _, h in columns), "configs applied/tasks", "config hash"]
    return tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)


def render_trial(trial: TrialResult, fmt: str = "github") -> str:
    """One trial: SPS, first window apart, phase split and learning."""
    head = [
        ["steady-state", f"{trial.sps:,.0f} agent-steps/s", f"{trial.env_steps_per_second:,.0f} env-steps/s"],
        ["first window (warm-up)", f"{trial.first_window_sps:,.0f} agent-steps/s", ""],
        ["agent-steps / epochs / seconds", f"{trial.agent_steps:,}", f"{trial.epochs} / {trial.seconds:.1f}s"],
    ]
    ms, shares = trial.phases_ms_per_1k, trial.phase_shares
    phases = [[p, f"{ms.get(p, 0.0):.2f}" if ms else "–", f"{100 * shares.get(p, 0.0):.1f}%"] for p in PHASES]
    learning = [[h, f"{trial.learning[k]:.3f}"] for k, h in LEARNING_COLUMNS if k in trial.learning]
    parts = [
        tabulate(head, headers=["measure", "value", ""], tablefmt=fmt, disable_numparse=True),
        tabulate(phases, headers=["phase", "ms per 1k agent-steps", "share"], tablefmt=fmt, disable_numparse=True),
    ]
    if learning:
        parts.append(tabulate(learning, headers=["learning (last episodes)", "mean"], tablefmt=fmt,
                              disable_numparse=True))
    return "\n\n".join(parts)


def render_flamediff(rows: list[FrameDelta], label_a: str, label_b: str, fmt: str = "github") -> str:
    """Frames whose share of samples changed most from A to B (percentage points)."""
    table = [[d.frame[:90], f"{100 * d.self_a:.2f}", f"{100 * d.self_b:.2f}", f"{100 * d.self_delta:+.2f}",
              f"{100 * d.inclusive_a:.2f}", f"{100 * d.inclusive_b:.2f}", f"{100 * d.inclusive_delta:+.2f}"]
             for d in rows]
    headers = ["frame", f"self % {label_a}", f"self % {label_b}", "self Δ", f"incl % {label_a}",
               f"incl % {label_b}", "incl Δ"]
    return tabulate(table, headers=headers, tablefmt=fmt, disable_numparse=True)


def render_profiles(record, fmt: str = "github") -> str:
    """Per profiler: SPS, overhead as a paired ratio to the unprofiled trials with its interval,
    trials (left out / failed), artifacts."""
    def counts(tool: str) -> str:
        c = record.counts(tool)
        extra = [f"{c['disturbed']} left out (disturbed)"] * bool(c["disturbed"]) + [f"{c['failed']} failed"] * bool(
            c["failed"])
        return ", ".join([str(c["trials"]), *extra])

    def sps(x: float) -> str:
        return "–" if math.isnan(x) else f"{x:,.0f}"

    unprofiled = record.unprofiled_sps()
    rows = [["none (unprofiled)", sps(unprofiled), "1.000 (reference)", "", counts("none"), ""]]
    for tool in record.tools:
        c = record.overhead(tool)
        ratio = "–" if math.isnan(c.ratio) else f"{c.ratio:.3f}"
        ci = "–" if math.isnan(c.ci_low) else f"[{c.ci_low:.3f}, {c.ci_high:.3f}]"
        art = record.artifacts.get(tool, {})
        if art.get("sps_outside_profiled_epochs") and not math.isnan(unprofiled):
            ratio += f" (outside profiled epochs: {art['sps_outside_profiled_epochs'] / unprofiled:.3f})"
        rows.append([tool, sps(record.sps(tool)), ratio, ci, counts(tool), ", ".join(sorted(art.get("files", {})))])
    return tabulate(rows, headers=["profiler", "agent-steps/s (geo-mean)", "ratio to unprofiled (paired)", "95% CI",
                                   "trials", "artifacts"], tablefmt=fmt, disable_numparse=True)


def render_top_lines(top: list[dict], fmt: str = "github") -> str:
    rows = [[r["where"], f"{r['cpu_percent']:.1f}", f"{r['python']:.1f}", f"{r['native']:.1f}", r["code"]] for r in top]
    return tabulate(rows, headers=["line", "CPU %", "python", "native", "code"], tablefmt=fmt, disable_numparse=True)


def render_gate(record, fmt: str = "github") -> str:
    """The checks with their verdicts, then each workload's median SPS."""
    rows = [[r.check, f"{r.ratio:.3f}", f"[{r.ci_low:.3f}, {r.ci_high:.3f}]", f"{r.threshold:.3f}", r.status]
            for r in record.checks]
    headers = ["check", "ratio", "95% CI", "threshold", "verdict"]
    if any(r.detectable_below is not None for r in record.checks):
        # a baseline check cannot fail above this ratio, however many rounds run now
        headers.append("can fail below")
        for row, r in zip(rows, record.checks, strict=True):
            row.append("-" if r.detectable_below is None else f"{r.detectable_below:.3f}")
    checks = tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)
    sps = tabulate([[k, f"{v:,.0f}"] for k, v in record.medians.items()],
                   headers=["workload (rollout: env + policy forward)", "agent-steps/s (median)"], tablefmt=fmt,
                   disable_numparse=True)
    return f"{checks}\n\n{sps}"


def render_diagnose(outcomes: list[CheckOutcome], fmt: str = "github") -> str:
    """One summary table, then a table per check that has rows of its own."""
    parts = [tabulate([[o.name, o.verdict, o.detail] for o in outcomes], headers=["check", "verdict", "detail"],
                      tablefmt=fmt, disable_numparse=True)]
    by = {o.name: o for o in outcomes}
    reach = by.get("heart reachable in first episodes")
    if reach is not None:
        rows = [[mode, f"{100 * r['analytic']:.1f}%", f"{100 * r['measured']:.1f}%"]
                for mode, r in reach.data["by_desync_mode"].items()]
        parts.append(f"First episodes ending before the earliest heart (step {reach.data['earliest_heart_step']}):\n"
                     + tabulate(rows, headers=["desync", "expected", "measured over env seeds"], tablefmt=fmt,
                                disable_numparse=True))
    scripted = by.get("scripted policy gets hearts")
    if scripted is not None:
        rows = [[name, f"{r['greedy_hearts']:.2f}", f"{r['greedy_return']:.2f}", f"{r['random_hearts']:.2f}",
                 f"{r['random_return']:.2f}"] for name, r in scripted.data.items()]
        parts.append("Reference policies, per agent per episode (upper bound and floor for PPO):\n" + tabulate(
            rows, headers=["preset", "greedy hearts", "greedy return", "random hearts", "random return"],
            tablefmt=fmt, disable_numparse=True))
    obs = by.get("observations")
    if obs is not None:
        rows = [[name, lo, hi] for name, (lo, hi) in obs.data["channel_ranges"].items()]
        parts.append("Observation channel ranges:\n" + tabulate(rows, headers=["channel", "min", "max"],
                                                                 tablefmt=fmt))
    return "\n\n".join(parts)
