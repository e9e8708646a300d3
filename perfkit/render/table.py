"""Tables (tabulate) for trials and comparisons: `render_*(result, fmt) -> str`."""

from __future__ import annotations

from tabulate import tabulate

from perfkit import stats
from perfkit.timing import PHASES

LEARNING_COLUMNS = (
    ("heart.get", "hearts/ep"),
    ("ore_red.get", "ore/ep"),
    ("battery_red.get", "batteries/ep"),
    ("episode_return", "return/ep"),
    ("episodes", "episodes"),
    ("entropy", "entropy"),
)


def _spread(s: dict) -> str:
    return f"{s['min']:,.0f}–{s['max']:,.0f} (±{100 * s['cv']:.1f}%)"


def _trials_cell(row: dict, mode: str = "process") -> str:
    n = f"{row['n']} epochs" if mode == "inprocess" else f"{row['n']}"
    return n + (f" (+{row['failed']} failed)" if row.get("failed") else "")


def render_sps(result, fmt: str = "github") -> str:
    """Variant, geometric-mean SPS, spread, paired ratio to the first variant with its CI, verdict."""
    rows = []
    for row in result.rows():
        s = row.get("summary")
        trials = _trials_cell(row, getattr(result, "mode", "process"))
        if s is None:
            rows.append([row["variant"], trials, "no finished trial", "", "", "", ""])
            continue
        env_sps = s["geomean"] / (row.get("agents_per_env") or 1)
        c = row.get("vs_first")
        if c is None:
            ratio, ci, verdict = "1.00 (reference)", "", ""
        else:
            ratio = f"{c['ratio']:.3f}"
            ci = "" if c["verdict"] == stats.TOO_FEW else f"[{c['ci_low']:.3f}, {c['ci_high']:.3f}]"
            verdict = stats.describe(stats.Comparison(**c))
        rows.append([row["variant"], trials, f"{s['geomean']:,.0f}", _spread(s), f"{env_sps:,.0f}", ratio, ci, verdict])
    headers = ["variant", "trials", "agent-steps/s (geo-mean)", "spread (min–max, ±cv)", "env-steps/s",
               "ratio vs first (geo-mean, paired)", "95% CI", "verdict"]
    rows = [r if len(r) == len(headers) else r + [""] * (len(headers) - len(r)) for r in rows]
    return tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)


def render_phases(result, fmt: str = "github") -> str:
    """Milliseconds per 1,000 agent-steps in each phase (steady state)."""
    rows = []
    for row in result.rows():
        ph = row.get("phases_ms_per_1k")
        if not ph:
            continue
        total = sum(ph.values())
        rows.append([row["variant"], *(f"{ph.get(p, 0.0):.2f}" for p in PHASES), f"{total:.2f}"])
    return tabulate(rows, headers=["variant (ms per 1k agent-steps)", *PHASES, "total"], tablefmt=fmt,
                    disable_numparse=True)


def render_learning(result, fmt: str = "github") -> str:
    """Learning health next to SPS: per-episode items, return, entropy, resolved config hash."""
    rows = []
    for row in result.rows():
        lr = row.get("learning")
        if lr is None:
            continue
        cells = [f"{lr[k]:.2f}" if k in lr else "–" for k, _ in LEARNING_COLUMNS]
        applied = lr.get("curriculum.configs_applied")
        done = lr.get("curriculum.tasks_completed")
        cur = "–" if done is None else f"{applied:.0f}/{done:.0f}"
        rows.append([row["variant"], *cells, cur, row.get("env_config_hash") or "–"])
    headers = ["variant", *(h for _, h in LEARNING_COLUMNS), "configs applied/tasks", "config hash"]
    return tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)


def warnings_for(result) -> list[str]:
    """Things a careful reader should know before trusting the table."""
    out = []
    for row in result.rows():
        s = row.get("summary")
        if s and s["unstable"]:
            out.append(f"{row['variant']}: unstable measurement, spread ±{100 * s['cv']:.1f}% of the mean "
                       f"(>= {100 * stats.UNSTABLE_CV:.0f}%); add trials or quiet the machine")
        c = row.get("vs_first")
        if c and c["verdict"] == stats.TOO_FEW:
            out.append(f"{row['variant']}: fewer than {stats.MIN_TRIALS} trials per variant, no verdict")
        lr = row.get("learning") or {}
        if lr.get("curriculum.tasks_completed", 0) >= 2 and lr.get("curriculum.configs_applied", 1) == 0:
            out.append(f"{row['variant']}: the curriculum completed tasks but never applied a new config "
                       "(deferred config + __getattribute__ wrapper: the wrapper's reset never runs)")
    hashes = {row.get("env_config_hash") for row in result.rows() if row.get("env_config_hash")}
    for label in result.variants:
        for t in result.failed(label):
            first = (t.get("error") or "").splitlines()[0] if t.get("error") else "failed"
            out.append(f"{label}: trial in round {t.get('round', '?')} failed: {first} (details in sps.json)")
    stopping = getattr(result, "stopping", {}) or {}
    if result.interrupted:
        done = sum(len(result.ok_trials(v)) for v in result.variants)
        planned = result.trials_planned * len(result.variants)
        what = " while profiling" if stopping.get("flamegraphs") == "interrupted" else ""
        out.append(f"interrupted{what}: {done} of {planned} trials finished")
    out += sentinel_warnings(result)
    rule = stopping.get("rule") or {}
    if rule.get("precision") and stopping.get("reason") != "precision":
        out.append(f"precision ±{rule['precision']:.1%} not reached: stopped by {stopping.get('reason')} after "
                   f"{stopping.get('rounds_run')} rounds")
    if len(hashes) > 1 and not any("preset" in v for v in result.variants):
        out.append("variants ran different env configs (config hash differs): their SPS is not like for like")
    return out


def sentinel_warnings(result) -> list[str]:
    """What else used the machine: trials (or, in one process, epochs) during which other processes
    took CPU, and windows that stalled. Flagged, never dropped: the raw numbers stay in sps.json."""
    from perfkit.results import TrialResult
    from perfkit.sentinel import MAX_OTHER_CORES, slow_windows

    out = []
    if getattr(result, "mode", "process") == "inprocess":
        for label in result.variants:
            others = [b["others_cores"].get(label) for b in result.blocks[result.warmup_rounds:]
                      if b.get("others_cores", {}).get(label) is not None]
            busy = [x for x in others if x >= MAX_OTHER_CORES]
            if busy:
                out.append(f"{label}: {len(busy)} of {len(others)} epochs ran while other processes used "
                           f"{sum(busy) / len(busy):.1f} core on average (paired epochs share the disturbance)")
        return out
    for label in result.variants:
        trials = result.trials.get(label, [])
        flagged = [t for t in trials if (t.get("sentinel") or {}).get("disturbed")]
        if flagged:
            worst = max((t["sentinel"].get("others_cores") or 0.0) for t in flagged)
            out.append(f"{label}: {len(flagged)} of {len(trials)} trials disturbed: other processes used up to "
                       f"{worst:.1f} core")
        stalls = sum(len(slow_windows([w["sps"] for w in TrialResult.from_dict(t).steady_windows]))
                     for t in trials if t.get("windows"))
        if stalls:
            out.append(f"{label}: {stalls} windows ran below half their trial's median SPS (stalls)")
    return out


def render_trial(trial, fmt: str = "github") -> str:
    """One trial: SPS, first window apart, phase split and learning."""
    steady_steps = trial.steady_agent_steps or trial.agent_steps
    head = [
        ["steady-state", f"{trial.sps:,.0f} agent-steps/s", f"{trial.env_steps_per_second:,.0f} env-steps/s"],
        ["first window (warm-up)", f"{trial.first_window_sps:,.0f} agent-steps/s", ""],
        ["agent-steps / epochs / seconds", f"{trial.agent_steps:,}", f"{trial.epochs} / {trial.seconds:.1f}s"],
    ]
    total = sum(trial.phases.values()) or 1.0
    phases = [[p, f"{1e6 * trial.phases.get(p, 0.0) / steady_steps:.2f}" if steady_steps else "–",
               f"{100 * trial.phases.get(p, 0.0) / total:.1f}%"] for p in PHASES]
    learning = [[h, f"{trial.learning[k]:.3f}"] for k, h in LEARNING_COLUMNS if k in trial.learning]
    parts = [
        tabulate(head, headers=["measure", "value", ""], tablefmt=fmt, disable_numparse=True),
        tabulate(phases, headers=["phase", "ms per 1k agent-steps", "share"], tablefmt=fmt, disable_numparse=True),
    ]
    if learning:
        parts.append(tabulate(learning, headers=["learning (last episodes)", "mean"], tablefmt=fmt,
                              disable_numparse=True))
    return "\n\n".join(parts)


def render_flamediff(rows, label_a: str, label_b: str, fmt: str = "github") -> str:
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
        return "–" if x != x else f"{x:,.0f}"

    rows = [["none (unprofiled)", sps(record.unprofiled_sps()), "1.000 (reference)", "", counts("none"), ""]]
    for tool in record.tools:
        c = record.overhead(tool)
        ratio = "–" if c.ratio != c.ratio else f"{c.ratio:.3f}"
        ci = "–" if c.ci_low != c.ci_low else f"[{c.ci_low:.3f}, {c.ci_high:.3f}]"
        art = record.artifacts.get(tool, {})
        if art.get("sps_outside_profiled_epochs") and record.unprofiled_sps() == record.unprofiled_sps():
            ratio += f" (outside profiled epochs: {art['sps_outside_profiled_epochs'] / record.unprofiled_sps():.3f})"
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


def render_diagnose(outcomes, fmt: str = "github") -> str:
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
