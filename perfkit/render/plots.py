"""PNG plots of a comparison (matplotlib's object API: no pyplot, no global backend switch).

render_*(result) -> PNG bytes. The numbers come from the record (CompareResult.summaries): the
throughput plot shows the same geometric mean as the table's headline.
"""

from __future__ import annotations

import io

import numpy as np

from perfkit.core import stats
from perfkit.core.timing import PHASES
from perfkit.records.compare import CompareResult


def figure(width: float = 8, height: float = 4.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def render_sps_png(result: CompareResult) -> bytes:
    """Geometric-mean agent-steps/s per variant (the table's headline) with its 95% t-interval,
    every sample as a dot."""
    fig = figure(max(6, 1.6 * len(result.variants) + 2), 4.5)
    ax = fig.add_subplot()
    for i, v in enumerate(result.summaries()):
        if v.sps is None:
            continue
        xs = result.sps(v.label)
        lo, hi = stats.geomean_interval(xs)
        ax.bar(i, v.sps.geomean, color="#4c72b0", alpha=0.8)
        # max(0, ...): with one sample the interval is the point, and np.exp and math.exp of the same
        # log can differ in the last bit, which matplotlib refuses as a negative error bar.
        ax.errorbar(i, v.sps.geomean, yerr=[[max(0.0, v.sps.geomean - lo)], [max(0.0, hi - v.sps.geomean)]],
                    color="black", capsize=6)
        ax.scatter([i] * len(xs), xs, color="#dd8452", zorder=3, s=14)
    ax.set_xticks(range(len(result.variants)), [v.replace(",", "\n") for v in result.variants], fontsize=8)
    ax.set_ylabel("agent-steps/s (steady state, geo-mean)")
    samples = {"inprocess": "epochs", "interleave": "blocks"}.get(result.mode, "trials")
    ax.set_title(f"Throughput per variant: geometric mean with 95% CI, {samples} as dots")
    return png(fig)


def render_learning_png(result: CompareResult) -> bytes:
    """Hearts per episode and episode return against agent-steps, one line per trial."""
    fig = figure(10, 4.2)
    axes = fig.subplots(1, 2)
    colours = [f"C{i}" for i in range(10)]
    for i, label in enumerate(result.variants):
        for k, t in enumerate(tr for tr in result.trials.get(label, []) if not tr.interrupted):
            steps, hearts, returns = 0, [], []
            for w in t.windows:
                steps += w["agent_steps"]
                if "heart.get" in w["learning"]:
                    hearts.append((steps, w["learning"]["heart.get"]))
                    # a window without a return (an edited record) is a gap in the line
                    returns.append((steps, w["learning"].get("episode_return", float("nan"))))
            for ax, pts in zip(axes, (hearts, returns), strict=True):
                if pts:
                    ax.plot(*zip(*pts, strict=True), color=colours[i % 10], alpha=0.8, lw=1.2,
                            label=label if k == 0 else None)
    axes[0].set_ylabel("hearts per agent per episode")
    axes[1].set_ylabel("episode return")
    for ax in axes:
        ax.set_xlabel("agent-steps")
        ax.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7)
    else:
        axes[0].text(0.5, 0.5, "no episode finished in these trials", ha="center", transform=axes[0].transAxes)
    fig.suptitle("Learning curves (episodes finished in each SPS window)")
    return png(fig)


def render_phases_png(result: CompareResult) -> bytes:
    """Stacked bars: milliseconds per 1,000 agent-steps in each phase."""
    rows = [v for v in result.summaries() if v.phases_ms_per_1k]
    fig = figure(max(6, 1.6 * len(rows) + 2), 4.5)
    ax = fig.add_subplot()
    bottom = np.zeros(len(rows))
    for j, phase in enumerate(PHASES):
        vals = np.array([v.phases_ms_per_1k.get(phase, 0.0) for v in rows])
        ax.bar(range(len(rows)), vals, bottom=bottom, label=phase, color=f"C{j}")
        bottom += vals
    ax.set_xticks(range(len(rows)), [v.label.replace(",", "\n") for v in rows], fontsize=8)
    ax.set_ylabel("ms per 1,000 agent-steps")
    ax.set_title("Where the time goes")
    ax.legend(fontsize=8, ncols=4)
    return png(fig)


PLOTS = {"sps.png": render_sps_png, "learning.png": render_learning_png, "phases.png": render_phases_png}
