"""`perfkit explain` as text: the summary paragraph, the gap and its phases, the functions."""

from __future__ import annotations

import math

from tabulate import tabulate

from perfkit.explain import summary
from perfkit.records.explain import Delta, ExplainRecord, Explanation


def _ci(d: Delta) -> str:
    return "–" if math.isnan(d.ci_low) else f"[{d.ci_low:+.3f}, {d.ci_high:+.3f}]"


def _mark(d: Delta) -> str:
    return "yes" if d.significant else ""


def render_explanation(ex: Explanation, fmt: str = "github") -> str:
    parts = [f"### {ex.b} vs {ex.a} ({ex.rounds} paired rounds)", summary(ex)]
    rows = [["all (time per agent-step)", f"{ex.gap.a_us:.3f}", f"{ex.gap.b_us:.3f}", f"{ex.gap.delta_us:+.3f}",
             _ci(ex.gap), _mark(ex.gap)]]
    rows += [[p.name, f"{p.a_us:.3f}", f"{p.b_us:.3f}", f"{p.delta_us:+.3f}", _ci(p), _mark(p)] for p in ex.phases]
    parts.append(tabulate(rows, headers=["phase", f"µs/step {ex.a}", f"µs/step {ex.b}", "Δ µs", "95% CI",
                                         "beyond noise"], tablefmt=fmt, disable_numparse=True))
    closure = ex.closure
    if not math.isnan(closure):
        parts.append(f"The phases beyond noise add up to {closure:.0%} of the gap.")
    if ex.causes:
        rows = [[c.frame[:80], f"{c.self_.delta_us:+.3f}", _ci(c.self_), f"{c.inclusive.delta_us:+.3f}",
                 _ci(c.inclusive), c.by, (c.via or "")[:60]] for c in ex.causes]
        parts.append(tabulate(rows, headers=["function (changed beyond noise)", "self Δ µs/step", "95% CI*",
                                             "inclusive Δ µs/step", "95% CI*", "named by", "called from"],
                              tablefmt=fmt, disable_numparse=True))
        share = ex.explained_by_causes
        what = ("no single frame moved; this caller's inclusive time" if ex.causes[0].by == "inclusive"
                else "these functions' self time")
        parts.append(f"*99% for the family of {ex.frames_tested} tests (Bonferroni). "
                     + (f"{what[0].upper() + what[1:]} accounts for {share:.0%} of the gap; " if not math.isnan(share)
                        else "")
                     + "every other function's change is within noise.")
    elif ex.frames_tested:
        parts.append(f"No function sampled changed beyond noise ({ex.frames_tested} tests of self and inclusive time "
                     f"over {ex.batches} batches of rounds).")
    if len(ex.learning) == 2:
        keys = [k for k in ("episode_return", "heart.get", "episodes") if any(k in v for v in ex.learning.values())]
        rows = [[k, *(f"{ex.learning[label].get(k, math.nan):.3f}" for label in (ex.a, ex.b))] for k in keys]
        parts.append("Learning next to the speed (per episode, last windows):\n" + tabulate(
            rows, headers=["metric", ex.a, ex.b], tablefmt=fmt, disable_numparse=True))
    parts += [f"note: {n}" for n in ex.notes]
    return "\n\n".join(parts)


def render_explain(record: ExplainRecord, fmt: str = "github") -> str:
    parts = [render_explanation(ex, fmt) for ex in record.explanations]
    s = record.sampler
    if s:
        cores = s.get("sampler_cores")
        used = f", using {cores:.3f} core" if isinstance(cores, float) else ""
        parts.append(f"Every block was sampled by {s.get('tool', 'py-spy')} at {s.get('rate')} Hz{used}; "
                     "warm-up blocks are left out of the functions as they are of SPS.")
    for label, files in record.flamegraphs.items():
        parts.append(f"differential flamegraph, {label} (coloured only where the change is beyond noise): "
                     f"{files['on_b']}")
    return "\n\n".join(parts)
