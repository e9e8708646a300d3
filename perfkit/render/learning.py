"""`perfkit learn`'s tables and curves, from a LearnResult only: learn.md and learning.png.

Tables: per asked metric, every variant's final value (IQM across seeds, bootstrap interval), the
difference to the first variant with its interval, the probability of improvement and the verdict;
sample efficiency (agent-steps to the threshold); the other metrics the episodes reported (numbers,
no verdict); speed and how the run stopped. The curve plot: each seed faint, the IQM across seeds
with its bootstrap band, per variant, for each asked metric.
"""

from __future__ import annotations

import math

import numpy as np

from perfkit.core import learning_stats as ls
from perfkit.records.learning import LearnResult, learn_seed
from perfkit.render.plots import figure, png
from perfkit.render.table import LEARNING_COLUMNS

NAMES = {**dict(LEARNING_COLUMNS), "episode_length": "length"}  # the compare table's names


def metric_name(m: str) -> str:
    return f"{NAMES[m]} ({m})" if m in NAMES else m


def _num(x: float) -> str:
    if math.isnan(x):
        return "–"
    if math.isinf(x):
        return "never" if x > 0 else "-inf"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}" if abs(x) < 0.01 and x else f"{x:.3f}"


def _interval(e: ls.Estimate) -> str:
    if math.isnan(e.low):
        return "–"
    return f"[{_num(e.low)}, {_num(e.high)}]"


def _steps(x: float) -> str:
    return "never" if math.isinf(x) else "–" if math.isnan(x) else f"{x:,.0f}"


def headline(result: LearnResult) -> str:
    """One line: how many seeds, at what budget, paired or not, why it stopped."""
    seeds = min((result.seeds_done(v) for v in result.variants), default=0)
    pairing = "paired by seed" if result.paired else "different seeds per variant (not paired)"
    planned = result.stopping.get("planned_seeds")
    reason = {"seeds": "the seeds asked for ran",
              "planned": f"the {planned} seeds planned from the first seeds' spread ran (for ±{result.precision or 0:.0%})",
              "max seeds": f"--max-seeds reached (the first seeds' spread asked for {planned})",
              "time": f"--max-minutes reached (the first seeds' spread asked for {planned})",
              "interrupted": "interrupted (Ctrl-C): the table holds the seeds that finished"}.get(
        result.stopping.get("reason", ""), result.stopping.get("reason", ""))
    return (f"{seeds} seed(s) per variant finished, {result.steps:,} agent-steps each, {pairing}; "
            f"final value = episodes in each seed's last {ls.FINAL_FRACTION:.0%} of steps; "
            f"stopped: {reason} ({result.seconds / 60:.1f} min)")


def verdict_table(result: LearnResult, metric: str, fmt: str = "github") -> str:
    from tabulate import tabulate

    first = result.variants[0]
    rows = []
    ref = ls.iqm_interval(result.finals(first, metric), result.confidence)
    rows.append([first, result.seeds_done(first), _num(ref.value), _interval(ref), "(reference)", "", "", ""])
    for label, c in result.comparisons(metric).items():
        rel = f" ({c.relative:+.0%})" if not math.isnan(c.relative) else ""
        precision = ""
        if c.precision_met is not None:
            precision = "yes" if c.precision_met else "no"
        rows.append([label, c.seeds, _num(c.value.value), _interval(c.value), f"{_num(c.difference.value)}{rel}",
                     _interval(c.difference), f"{_num(c.improvement.value)} {_interval(c.improvement)}",
                     c.verdict + (f" (±{result.precision:.0%} reached: {precision})" if precision else "")])
    conf, verdict_conf = f"{result.confidence:.0%}", f"{result.metric_confidence(metric):.1%}"
    headers = ["variant", "seeds", "final (IQM)", f"{conf} interval", "B − A", f"{verdict_conf.replace('.0%', '%')} interval",
               "P(B better than A)", "verdict"]
    return tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)


def efficiency_table(result: LearnResult, metric: str, fmt: str = "github") -> str:
    from tabulate import tabulate

    thr = result.threshold(metric)
    rows = []
    for label in result.variants:
        est, reached, n = result.steps_to_threshold(label, metric)
        rows.append([label, _steps(est.value), f"[{_steps(est.low)}, {_steps(est.high)}]" if not math.isnan(est.low)
                     else "–", f"{reached} of {n}"])
    headers = ["variant", f"agent-steps to {_num(thr)} (median)", f"{result.confidence:.0%} interval",
               "seeds that got there"]
    return tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)


def others_table(result: LearnResult, metrics: list[str], fmt: str = "github") -> str:
    from tabulate import tabulate

    rows = []
    for m in metrics:
        cells = [metric_name(m)]
        first = result.variants[0]
        cells.append(_num(ls.iqm_interval(result.finals(first, m)).value))
        for label, c in result.comparisons(m).items():
            cells.append(f"{_num(c.value.value)} (B − A {_num(c.difference.value)} {_interval(c.difference)})")
        rows.append(cells)
    return tabulate(rows, headers=["metric", *result.variants], tablefmt=fmt, disable_numparse=True)


def _varies(result: LearnResult, metric: str) -> bool:
    values = {x for v in result.variants for x in result.finals(v, metric) if not math.isnan(x)}
    return len(values) > 1


def speed_table(result: LearnResult, fmt: str = "github") -> str:
    from tabulate import tabulate

    rows = []
    for label in result.variants:
        done = [t for t in result.by_seed(label) if t is not None]
        failed = [t for t in result.trials.get(label, []) if t.status == "failed"]
        sps = float(np.median([t.sps for t in done])) if done else math.nan
        minutes = float(np.median([(t.process_s or t.seconds) / 60 for t in done])) if done else math.nan
        rows.append([label, len(done), len(failed), _num(sps), f"{minutes:.1f}" if not math.isnan(minutes) else "–"])
    return tabulate(rows, headers=["variant", "seeds finished", "failed", "agent-steps/s (median)",
                                   "minutes per seed (median)"], tablefmt=fmt, disable_numparse=True)


def nodes_table(result: LearnResult, fmt: str = "github") -> str:
    """--backend ray: what each node ran (a seed's numbers do not depend on where it trained)."""
    from tabulate import tabulate

    rows = []
    for nid, info in result.nodes.items():
        ran = [t for ts in result.trials.values() for t in ts if t.node.get("id") == nid]
        rows.append([f"{info.get('host', '?')}/{nid[:8]}", f"{info.get('ray_cpus', 0):g}", info.get("slots", "–"),
                     info.get("cores_per_seed", "–"), sum(result.complete(t) for t in ran),
                     "lost" if info.get("lost") else "ok"])
    return tabulate(rows, headers=["node", "CPUs", "seeds at once", "cores per seed", "seeds finished", "state"],
                    tablefmt=fmt, disable_numparse=True)


def warnings(result: LearnResult) -> list[str]:
    out = []
    for nid, info in result.nodes.items():
        if info.get("lost"):
            out.append(f"node {info.get('host', '?')}/{nid[:8]} left the run ({info.get('why', 'lost')}); its seeds "
                       "ran on the other nodes")
    again = sum(t.requeued > 0 for ts in result.trials.values() for t in ts)
    if again:
        out.append(f"{again} seed(s) ran again on another node after theirs was lost (the lost attempt is not counted)")
    for label in result.variants:
        for t in result.trials.get(label, []):
            seed = learn_seed(int(t.scenario.get("seed", 0)))
            if t.status == "failed":
                out.append(f"{label}, seed {seed}: failed: {(t.error or '').splitlines()[0]}")
            elif not result.complete(t):
                out.append(f"{label}, seed {seed}: stopped at {t.agent_steps:,} of {result.steps:,} agent-steps "
                           f"({t.status}): left out")
    for m in result.metrics:
        for label in result.variants:
            finals = result.finals(label, m)
            missing = sum(math.isnan(x) for x, t in zip(finals, result.by_seed(label), strict=True) if t is not None)
            if missing:
                out.append(f"{label}: {missing} finished seed(s) reported no {m!r} in their last "
                           f"{ls.FINAL_FRACTION:.0%} of steps (no episode ended there: a longer --steps, or the env "
                           "does not report it)")
    tests = len(result.metrics) * (len(result.variants) - 1)
    if tests > 1:
        out.append(f"{tests} verdicts asked ({len(result.metrics)} metric(s) x {len(result.variants) - 1} variant(s) "
                   f"against the first): each verdict's interval is at {result.metric_confidence(result.metrics[0]):.1%} "
                   f"(Bonferroni), so together they make at most a {1 - result.confidence:.0%} chance of any false "
                   "verdict")
    if min((result.seeds_done(v) for v in result.variants), default=0) < 10:
        out.append("the intervals of the final values and of P(B better than A) are percentile bootstraps: with under "
                   f"10 seeds they are narrower than {result.confidence:.0%} intervals should be; the verdict rests on "
                   "the t-interval of B − A")
    if result.precision and not result.precision_reached():
        out.append(f"the asked precision (±{result.precision:.0%} of the reference's value) was not reached: "
                   "more seeds (--max-seeds, --max-minutes) narrow the interval")
    return out


def learn_markdown(result: LearnResult, fmt: str = "github") -> str:
    parts = [headline(result)]
    for m in result.metrics:
        parts += [f"## {metric_name(m)}: final value and verdict", verdict_table(result, m, fmt),
                  f"### {metric_name(m)}: sample efficiency (agent-steps until half way from where "
                  f"{result.variants[0]} started to where it ended)"]
        parts.append(efficiency_table(result, m, fmt) if result.improved(m) else
                     f"{result.variants[0]} ended no better than it started on {m}: there is no improvement to "
                     "reach half of")
    others = [m for m in result.available_metrics() if m not in result.metrics]
    varying = [m for m in others if _varies(result, m)]
    if varying:
        constant = len(others) - len(varying)
        note = f" ({constant} that were the same in every seed left out)" if constant else ""
        parts += [f"## Other episode metrics (not tested: numbers only){note}", others_table(result, varying, fmt)]
    parts += ["## Speed", speed_table(result, fmt)]
    if result.nodes:
        parts += [f"## Nodes (--backend ray: {len(result.nodes)})", nodes_table(result, fmt)]
    w = warnings(result)
    if w:
        parts += ["## Warnings", "\n".join(f"- {x}" for x in w)]
    parts += ["## Curves", "![learning curves](learning.png)"]
    return "\n\n".join(parts) + "\n"


def render_curves_png(result: LearnResult) -> bytes:
    """Per asked metric: each seed faint, the IQM across seeds with its bootstrap band, against
    agent-steps."""

    metrics = result.metrics or ["episode_return"]
    fig = figure(max(8, 6 * len(metrics)), 4.5)
    axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    edges = result.curve_edges()
    mid = (edges[:-1] + edges[1:]) / 2
    for ax, m in zip(axes, metrics, strict=True):
        for i, label in enumerate(result.variants):
            curves = result.curves(label, m)
            colour = f"C{i % 10}"
            for c in curves:  # a bin in which no episode ended is skipped, not a gap in the line
                ok = ~np.isnan(c)
                ax.plot(mid[ok], c[ok], color=colour, alpha=0.2, lw=0.8)
            if not curves:
                continue
            band = [ls.iqm_interval([c[j] for c in curves], result.confidence) for j in range(len(mid))]
            centre = np.array([b.value for b in band])
            ok = ~np.isnan(centre)
            ax.plot(mid[ok], centre[ok], color=colour, lw=2, label=f"{label} (IQM of {len(curves)} seeds)")
            low, high = np.array([b.low for b in band]), np.array([b.high for b in band])
            ok &= ~np.isnan(low)
            ax.fill_between(mid[ok], low[ok], high[ok], color=colour, alpha=0.2)
        ax.set_xlabel("agent-steps")
        ax.set_ylabel(metric_name(m))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no seed finished with episodes", ha="center", transform=ax.transAxes)
    fig.suptitle(f"Learning against agent-steps: each seed faint, IQM across seeds with its {result.confidence:.0%} "
                 "band", fontsize=10)
    return png(fig)
