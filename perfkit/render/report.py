"""A record -> what a command prints and writes, and the registry `perfkit report` reads.

`render_compare` turns a CompareResult into sps.md (tables, warnings, flamegraph links,
differential flamegraph tables, plot links) and the plots next to it; `perfkit compare` and
`perfkit report` both call it, so a past run re-renders exactly as it first did. Renderers return
text and file contents; the CLI writes them.

`REPORTS` maps each record kind to the file a results directory holds it in, its record class
(anything with `load(path)`) and its renderer `(record, fmt) -> str | Rendered` (a str is printed
only); a new kind is one line, e.g. `"gate": RecordKind("gate.json", GateRecord, render_gate)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perfkit.records.bisection import BisectRecord
from perfkit.records.compare import CompareResult
from perfkit.records.diagnose import DiagnoseResult
from perfkit.records.explain import ExplainRecord
from perfkit.records.gate import GateRecord
from perfkit.records.learning import LearnResult
from perfkit.records.profiling import ProfileRecord
from perfkit.records.store import ResultsError
from perfkit.records.trial import TrialResult
from perfkit.render.bisection import render_bisect
from perfkit.render.explain import render_explain
from perfkit.render.learning import learn_markdown, render_curves_png
from perfkit.render.table import (
    render_diagnose,
    render_flamediff,
    render_gate,
    render_learning,
    render_nodes,
    render_phases,
    render_profiles,
    render_sps,
    render_top_lines,
    render_trial,
)


@dataclass(frozen=True)
class Rendered:
    text: str  # for stdout
    files: dict[str, str | bytes] = field(default_factory=dict)  # file name -> contents, for the results directory


def compare_markdown(result: CompareResult, fmt: str = "github") -> str:
    """sps.md: tables, warnings, flamegraph links and differential flamegraph tables, plot links."""
    title = ("## Throughput (steps/s of each command's own counter, warm-up left out)" if result.commands else
             "## Throughput (agent-steps/s, steady state, warm-up window excluded)")
    learned = any(v.learning for v in result.summaries())
    parts = [
        title, render_sps(result, fmt),
        *(["## Per node (every round ran on one node; ratios to the first variant, 95% CI)",
            render_nodes(result, fmt)] if result.multi_node else []),
        *(["## Where the time goes", render_phases(result, fmt)] if any(v.phases_ms_per_1k for v in
                                                                          result.summaries()) else []),
        *(["## Learning (per episode, last windows of each trial)", render_learning(result, fmt)]
          if learned or not result.commands else []),
    ]
    warnings = result.warnings()
    if warnings:
        parts += ["## Warnings", "\n".join(f"- {w}" for w in warnings)]
    if result.profiles:
        parts += ["## Flamegraphs (py-spy)", "\n".join(_profile_line(result, label, p)
                                                       for label, p in result.profiles.items())]
        parts += [_flamediff_section(result, label, fmt) for label in result.variants[1:]
                  if "flamediff" in result.profiles.get(label, {})]
    parts += ["## Plots", "![throughput](sps.png)\n\n![learning curves](learning.png)\n\n![phases](phases.png)"]
    return "\n\n".join(parts) + "\n"


def _profile_line(result: CompareResult, label: str, p: dict) -> str:
    if "sps" in p:  # a separate profiled trial
        return (f"- {label}: {p['files']['svg']} (profiled run {p['sps']:,.0f} agent-steps/s, "
                f"{result.profile_overhead(label):.3f}x the unprofiled median)")
    return f"- {label}: {p['files']['svg']} ({p['samples']:,.0f} samples at {p['rate']} Hz from every steady block)"


def _flamediff_section(result: CompareResult, label: str, fmt: str) -> str:
    files, frames, first = result.profiles[label]["flamediff"], result.flamediff_frames(label), result.variants[0]
    table = render_flamediff(frames, "first", "this", fmt) if frames is not None else \
        "(this record is older than the frame tables: open the differential flamegraphs)"
    where = "steady blocks" if "sps" not in result.profiles[label] else "samples inside the training loop"
    return (f"### {label} vs {first} ({where})\n\n{table}\n\n"
            f"differential flamegraphs: {files['on_b']} (this variant's shape), {files['on_a']} (the first's)")


def render_compare(result: CompareResult, fmt: str = "github") -> Rendered:
    from perfkit.render.plots import PLOTS

    text = compare_markdown(result, fmt)
    return Rendered(text, {"sps.md": text, **{name: plot(result) for name, plot in PLOTS.items()}})


def render_learn(result: LearnResult, fmt: str = "github") -> Rendered:
    """learn.md and learning.png: `perfkit learn` and `perfkit report` both call it."""
    text = learn_markdown(result, fmt)
    return Rendered(text, {"learn.md": text, "learning.png": render_curves_png(result)})


def render_diagnose_record(record: DiagnoseResult, fmt: str = "github") -> str:
    return render_diagnose(record.checks, fmt)


def render_gate_record(record: GateRecord, fmt: str = "github") -> str:
    """The gate's tables, then why it stopped, its warnings and failures, as `perfkit gate` prints them."""
    lines = [render_gate(record, fmt), "", f"{record.stop_reason}: {record.measurement.seconds:.1f} s"]
    lines += [f"warning: {w}" for w in record.warnings] + [f"FAILED: {f}" for f in record.failures]
    return "\n".join(lines)


def render_profile_record(record: ProfileRecord, fmt: str = "github") -> str:
    """The profilers' table, Scalene's top lines when it ran, and the warnings."""
    parts = [render_profiles(record, fmt)]
    if "scalene" in record.artifacts:
        parts.append("Scalene: top lines by CPU %\n" + render_top_lines(record.artifacts["scalene"]["top_lines"], fmt))
    if record.warnings:
        parts.append("\n".join(f"warning: {w}" for w in record.warnings))
    return "\n\n".join(parts)


@dataclass(frozen=True)
class RecordKind:
    filename: str  # what the record is called in a results directory
    record: Any  # the record class: `record.load(path)` reads it (ResultsError when it cannot)
    render: Callable[[Any, str], str | Rendered]  # (record, table format) -> what to print (and write)


REPORTS: dict[str, RecordKind] = {
    # explain first: an explain directory holds the compare it explained (sps.json) too
    "explain": RecordKind("explain.json", ExplainRecord, render_explain),
    "compare": RecordKind("sps.json", CompareResult, render_compare),
    "trial": RecordKind("trial.json", TrialResult, render_trial),
    "diagnose": RecordKind("diagnose.json", DiagnoseResult, render_diagnose_record),
    "gate": RecordKind("gate.json", GateRecord, render_gate_record),
    "profile": RecordKind("profile.json", ProfileRecord, render_profile_record),
    "bisect": RecordKind("bisect.json", BisectRecord, render_bisect),
    "learn": RecordKind("learn.json", LearnResult, render_learn),
}


def find_record(path: Path) -> tuple[RecordKind, Path]:
    """The record in a results directory (the first of REPORTS' files it holds), or a record file
    named like one of them. ResultsError naming the path and the files looked for."""
    names = [k.filename for k in REPORTS.values()]
    if path.is_file():
        kind = next((k for k in REPORTS.values() if k.filename == path.name), None)
        if kind is None:
            raise ResultsError(f"{path}: not a perfkit record file (expected one named {', '.join(names)})")
        return kind, path
    if not path.is_dir():
        raise ResultsError(f"{path}: no such results directory")
    for kind in REPORTS.values():
        if (path / kind.filename).is_file():
            return kind, path / kind.filename
    raise ResultsError(f"{path}: no perfkit record here (looked for {', '.join(names)})")


def rerender(path: Path, fmt: str = "github") -> Rendered:
    """Load the record found at `path` and render it, measuring nothing."""
    kind, file = find_record(path)
    out = kind.render(kind.record.load(file), fmt)
    return out if isinstance(out, Rendered) else Rendered(out)
