"""`perfkit explain` as text: the summary paragraph, the gap and its phases, the functions."""

from __future__ import annotations

import math

from tabulate import tabulate

from perfkit.records.explain import Delta, ExplainRecord, Explanation, GpuSummary


def summary(ex: Explanation) -> str:
    """One paragraph a person can paste into a PR."""
    pct = (1 / ex.ratio - 1) * 100 if ex.ratio and not math.isnan(ex.ratio) else math.nan
    lo, hi = ex.ratio_ci
    if math.isnan(lo):
        speed = f"{ex.b} runs at {ex.ratio:.3f}x the speed of {ex.a} (too few rounds for an interval)"
    elif hi < 1:
        speed = (f"{ex.b} is {pct:.1f}% slower than {ex.a} [{(1 / hi - 1) * 100:.1f}, {(1 / lo - 1) * 100:.1f}]")
    elif lo > 1:
        speed = (f"{ex.b} is {-pct:.1f}% faster than {ex.a} [{(1 - 1 / lo) * 100:.1f}, {(1 - 1 / hi) * 100:.1f}]")
    else:
        speed = f"{ex.b} and {ex.a} run at the same speed within noise (ratio {ex.ratio:.3f} [{lo:.3f}, {hi:.3f}])"
    parts = [f"{speed}: {_signed(ex.gap.delta_us)} µs per agent-step"]
    moved = sorted((p for p in ex.phases if p.significant), key=lambda p: -abs(p.delta_us))
    if moved:
        parts.append(", of which " + ", ".join(f"{p.name} {_signed(p.delta_us)} [{p.ci_low:.2f}, {p.ci_high:.2f}]"
                                                for p in moved[:3]))
    else:
        parts.append("; no phase changed beyond noise")
    text = "".join(parts)
    if ex.causes:
        top = ex.causes[0]
        d = top.inclusive if top.by == "inclusive" else top.self_
        share = d.delta_us / ex.gap.delta_us if ex.gap.delta_us else math.nan
        where = "in and below" if top.by == "inclusive" else "is"
        via = f" (called from `{top.via}`)" if top.via else ""
        text += (f"; the largest function change {where} `{top.frame}`{via} {_signed(d.delta_us)} µs "
                 f"[{d.ci_low:.2f}, {d.ci_high:.2f}]"
                 + (f" ({share:.0%} of the gap)" if not math.isnan(share) and 0 < share < 10 else ""))
    elif ex.frames_tested:
        text += f"; no function sampled changed beyond noise ({ex.frames_tested} tests)"
    return text + "."


def _signed(x: float) -> str:
    return f"{x:+.2f}"


def _ci(d: Delta) -> str:
    return "–" if math.isnan(d.ci_low) else f"[{d.ci_low:+.3f}, {d.ci_high:+.3f}]"


def _mark(d: Delta) -> str:
    return "yes" if d.significant else ""


def render_gpu(a: GpuSummary, b: GpuSummary, a_label: str, b_label: str, fmt: str = "github") -> str:
    """The GPU rows: one torch.profiler trace per variant, read by Holistic Trace Analysis."""
    rows = [("GPU kernels, µs/agent-step", a.kernel_us, b.kernel_us, 3),
            ("GPU idle, µs/agent-step", a.idle_total_us, b.idle_total_us, 3),
            ("idle: waiting for the host", a.idle_us["host_wait"], b.idle_us["host_wait"], 3),
            ("idle: between kernels", a.idle_us["kernel_wait"], b.idle_us["kernel_wait"], 3),
            ("idle: other", a.idle_us["other"], b.idle_us["other"], 3),
            ("GPU idle share, %", 100 * a.idle_share, 100 * b.idle_share, 1),
            ("time under torch.profiler, µs/agent-step", a.extra.get("profiler_step_us", math.nan),
             b.extra.get("profiler_step_us", math.nan), 3),
            ("CUDA syncs per rollout step", a.syncs_per_rollout_step, b.syncs_per_rollout_step, 2),
            ("kernels per rollout step", a.kernels_per_rollout_step, b.kernels_per_rollout_step, 1)]
    table = tabulate([[name, f"{x:.{d}f}", f"{y:.{d}f}", f"{y - x:+.{d}f}"] for name, x, y, d in rows],
                     headers=[f"GPU, main stream ({a.stream})", a_label, b_label, "Δ"], tablefmt=fmt,
                     disable_numparse=True)
    return (f"{table}\n\nOne torch.profiler trace per variant ({a.epochs} and {b.epochs} profiled epochs), read by "
            "Holistic Trace Analysis: no interval on these rows. The profiler slows every CUDA call, so the GPU "
            "waits longer for the host than it does unprofiled: these rows say where the GPU's time goes, the gap "
            "above says how much.")


def render_explanation(ex: Explanation, fmt: str = "github", gpu: dict[str, GpuSummary] | None = None) -> str:
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
    if gpu and ex.a in gpu and ex.b in gpu:
        parts.append(render_gpu(gpu[ex.a], gpu[ex.b], ex.a, ex.b, fmt))
    parts += [f"note: {n}" for n in ex.notes]
    return "\n\n".join(parts)


def render_explain(record: ExplainRecord, fmt: str = "github") -> str:
    parts = [render_explanation(ex, fmt, record.gpu) for ex in record.explanations]
    parts += [f"note: {n}" for n in record.gpu_notes]
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
