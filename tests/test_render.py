"""Renderers and `perfkit report` on committed records (tests/fixtures/records/: real runs of
`perfkit compare`, `run` and `diagnose` with tiny budgets, per-window detail trimmed)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from perfkit.cli.main import main
from perfkit.records.compare import CompareResult
from perfkit.records.diagnose import DiagnoseResult
from perfkit.records.store import SCHEMA_VERSION
from perfkit.records.trial import TrialResult
from perfkit.render.plots import PLOTS, render_sps_png
from perfkit.render.report import REPORTS, compare_markdown

RECORDS = Path(__file__).parent / "fixtures" / "records"


@pytest.fixture
def compare_process() -> CompareResult:
    """Two variants, two trials each in fresh processes, profiled with py-spy (--flamegraph)."""
    return CompareResult.load(RECORDS / "compare-process" / "sps.json")


@pytest.fixture
def compare_inprocess() -> CompareResult:
    """Two variants in one process, epochs interleaved."""
    return CompareResult.load(RECORDS / "compare-inprocess" / "sps.json")


def test_sps_md_has_every_table_warning_and_link(compare_process):
    lines = compare_markdown(compare_process, "github").splitlines()
    for line in [
        "## Throughput (agent-steps/s, steady state, warm-up window excluded)",
        ("| wrapper=getattr | 2        | 50,147                     | 49,333–50,975 (±2.3%)   | 2,089         "
         "| 1.00 (reference)                    |                |                           |"),
        ("| wrapper=none    | 2        | 50,702                     | 49,517–51,915 (±3.3%)   | 2,113         "
         "| 1.011                               | [0.608, 1.681] | no significant difference |"),
        ("| wrapper=getattr                   | 0.90  | 5.43      | 0.35   | 13.21   | 0.00         | 0.00   "
         "| 0.06   | 19.94   |"),
        ("| wrapper=getattr | 0.59        | 3.49     | 1.57           | 1.55        | 4.00       | 1.61      "
         "| 1/1                     | 3bea410486a6  |"),
        ("| wrapper=none    | 0.59        | 3.49     | 1.57           | 1.55        | 4.00       | 1.61      "
         "| –                       | 3bea410486a6  |"),
        "- wrapper=none: 2 of 2 counted trials disturbed: other processes used up to 1.0 core",
        ("- wrapper=none: compare-process/profiles/wrapper=none/pyspy.svg (profiled run 43,432 agent-steps/s, "
         "0.856x the unprofiled median)"),
        "### wrapper=none vs wrapper=getattr (samples inside the training loop)",
        ("| _create_fn (dataclasses.py)                                 | 9.69           | 4.95          | -4.74    "
         "| 9.69           | 4.95          | -4.74    |"),
        ("differential flamegraphs: compare-process/flamediff-wrapper=none.svg (this variant's shape), "
         "compare-process/flamediff-wrapper=none-on-A.svg (the first's)"),
        "![throughput](sps.png)",
    ]:
        assert line in lines, line


def test_sps_md_of_variants_in_one_process(compare_inprocess):
    lines = compare_markdown(compare_inprocess, "plain").splitlines()
    assert "wrapper=none     15 epochs  51,895                      48,369–54,792 (±3.6%)    2,162          " \
           "1.026                                [0.982, 1.072]  no significant difference" in lines
    assert "- wrapper=getattr: 15 of 15 epochs ran while other processes used 1.0 core on average" in lines
    assert not any("trimmed mean" in ln for ln in lines)  # 6 batch means: too few to cut any
    assert "## Flamegraphs (py-spy)" not in lines


def test_a_contended_record_is_judged_by_its_trimmed_rounds():
    """Twins recorded on a 2-core machine with a process spinning on one core and short commands
    coming and going (bench/verdict_power.py, condition churn), cut to its first 202 rounds."""
    import math

    from perfkit.core import stats

    r = CompareResult.load(RECORDS / "compare-contended" / "sps.json")
    first, twin = r.variants
    d = [math.log(b["sps"][twin] / b["sps"][first]) for b in r.blocks[r.warmup_rounds:]]
    batches = stats.batch_means(d, 2)
    assert r.comparison(twin) == stats.rounds_interval(batches) != stats.compare_log_ratios(batches)
    assert r.comparison(twin).verdict == stats.SAME
    lines = compare_markdown(r, "plain").splitlines()
    assert (f"- {twin} vs {first}: the interval is a trimmed mean; it cut 20 of 100 rotations (the 10% most "
            "extreme at each end), 20 of the 100 with a disturbed epoch: a stall of one side weighs no more than "
            "any rotation kept") in lines
    assert f"- {first}: 200 of 200 epochs ran while other processes used 1.0 core on average" in lines
    # the rounds carry their time (62.7 s at round 202), so the table says what the asked precision would take:
    # ±2.1% after 63 s -> ±0.1% in 63 s x (2.1 / 0.1)^2
    w = stats.half_width(r.comparison(twin))
    minutes = r.blocks[-1]["t"] / 60 * (w / 0.001) ** 2
    assert 400 < minutes < 500
    assert (f"- precision ±0.1% not reached: stopped by time after 202 rounds; the widest interval is ±{w:.1%}, and at "
            f"this spread ±0.1% needs about {minutes:.0f} minutes of rounds (an interval narrows as one over the square "
            "root of the time)") in lines


def test_derived_numbers_come_from_the_record(compare_process):
    ref, other = compare_process.summaries()
    assert ref.vs_reference is None and ref.n == 2 and ref.failed == 0
    assert other.vs_reference == compare_process.comparison("wrapper=none")
    assert other.sps.geomean == pytest.approx(float(np.exp(np.mean(np.log(compare_process.sps("wrapper=none"))))))
    assert compare_process.profile_overhead("wrapper=none") == pytest.approx(43432 / 50716, abs=1e-3)
    assert compare_process.flamediff_frames("wrapper=none")[0].frame == "_create_fn (dataclasses.py)"
    assert compare_process.flamediff_frames("wrapper=getattr") is None  # the reference has no diff


@pytest.mark.parametrize("record", ["compare_process", "compare_inprocess"])
def test_plots_are_readable_pngs(tmp_path, request, record):
    from PIL import Image

    result = request.getfixturevalue(record)
    for name, render in PLOTS.items():
        (tmp_path / name).write_bytes(render(result))
        img = Image.open(tmp_path / name)
        assert img.format == "PNG" and img.size[0] > 400
        assert np.asarray(img.convert("L")).std() > 5  # something was drawn


def test_sps_plot_shows_the_tables_geomean(compare_process, monkeypatch):
    from matplotlib.axes import Axes

    drawn = {}
    real_bar, real_title = Axes.bar, Axes.set_title
    monkeypatch.setattr(Axes, "bar", lambda ax, x, h, *a, **k: drawn.setdefault("bars", []).append(h)
                        or real_bar(ax, x, h, *a, **k))
    monkeypatch.setattr(Axes, "set_title", lambda ax, t, *a, **k: drawn.update(title=t) or real_title(ax, t, *a, **k))
    render_sps_png(compare_process)
    assert drawn["bars"] == [s.sps.geomean for s in compare_process.summaries()]
    assert drawn["title"] == "Throughput per variant: geometric mean with 95% CI, trials as dots"


def test_records_round_trip_and_older_versions_are_converted(tmp_path, compare_process):
    compare_process.save(tmp_path / "sps.json")
    assert CompareResult.load(tmp_path / "sps.json") == compare_process
    old = CompareResult.load(RECORDS / "v2-compare" / "sps.json")  # written by schema version 2
    raw = json.loads((RECORDS / "v2-compare" / "sps.json").read_text())
    assert raw["schema_version"] == 2 and "rows" in raw and "overhead_ratio" in raw["profiles"]["wrapper=none"]
    assert [t.round for t in old.trials["wrapper=none"]] == [0, 1]
    old.save(tmp_path / "v3.json")
    saved = json.loads((tmp_path / "v3.json").read_text())
    assert saved["schema_version"] == SCHEMA_VERSION and "rows" not in saved
    assert "overhead_ratio" not in saved["profiles"]["wrapper=none"]
    assert old.profile_overhead("wrapper=none") == pytest.approx(raw["profiles"]["wrapper=none"]["overhead_ratio"])
    trial = TrialResult.load(RECORDS / "run" / "trial.json")
    trial.save(tmp_path / "trial.json")
    assert TrialResult.load(tmp_path / "trial.json") == trial
    diag = DiagnoseResult.load(RECORDS / "diagnose" / "diagnose.json")
    assert diag.failed == [] and [c.verdict for c in diag.checks] == ["ok", "ok", "n/a", "ok", "ok"]


def test_every_report_kind_matches_its_record_class():
    for kind, entry in REPORTS.items():
        assert getattr(entry.record, "kind", kind) == kind  # the kind its files are written with


def test_report_rewrites_sps_md_and_plots_from_a_compare_record(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RECORDS / "compare-process", run)
    r = CliRunner().invoke(main, ["report", str(run)])
    assert r.exit_code == 0, r.output
    assert "| wrapper=none    | 2        | 50,702  " in r.output
    assert (run / "sps.md").read_text() == compare_markdown(CompareResult.load(run / "sps.json"))
    assert sorted(p.name for p in run.iterdir()) == ["learning.png", "phases.png", "sps.json", "sps.md", "sps.png"]


def test_report_writes_elsewhere_with_out(tmp_path):
    r = CliRunner().invoke(main, ["report", str(RECORDS / "compare-inprocess"), "--out", str(tmp_path / "o"),
                                  "--format", "plain"])
    assert r.exit_code == 0, r.output
    assert "wrapper=getattr  15 epochs  50,415   " in r.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["learning.png", "phases.png", "sps.md", "sps.png"]


def test_report_prints_a_run_table():
    r = CliRunner().invoke(main, ["report", str(RECORDS / "run")])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert "| steady-state                   | 47,489 agent-steps/s | 1,979 env-steps/s |" in lines
    assert "| learn      | 14.07                   | 66.8%   |" in lines
    assert "| hearts/ep                  | 0.594  |" in lines


def test_report_prints_a_diagnose_table():
    r = CliRunner().invoke(main, ["report", str(RECORDS / "diagnose" / "diagnose.json")])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert "First episodes ending before the earliest heart (step 90):" in lines
    assert "| basic_easy_shaped | 4.83            | 6.36            | 0.77            | 1.81            |" in lines


def test_report_prints_a_gate_record():
    r = CliRunner().invoke(main, ["report", str(RECORDS / "gate")])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert ("| sps(wrapper=getattr) >= 0.90 * baseline          | 0.987   | [0.954, 1.021] | 0.900       | ok        "
            "| 0.875            |") in lines
    assert "| wrapper=none                               | 170,147                  |" in lines
    assert "every check known to +-2.0% after 12 rounds: 1.5 s" in lines


def test_report_prints_a_profile_record():
    r = CliRunner().invoke(main, ["report", str(RECORDS / "profile")])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert ("| pyspy             | 38,190                     | 0.982                          | [0.578, 1.669] "
            "| 2        | folded, speedscope, svg |") in lines
    assert "| none (unprofiled) | 38,874                     | 1.000 (reference)              |                " \
           "| 2        |                         |" in lines


def test_report_without_a_record_is_a_usage_error_naming_what_it_looked_for(tmp_path):
    r = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert r.exit_code == 2
    looked_for = ", ".join(k.filename for k in REPORTS.values())  # sps.json, trial.json, diagnose.json, ...
    assert looked_for == ("explain.json, sps.json, trial.json, diagnose.json, gate.json, profile.json, bisect.json, "
                          "learn.json")
    assert f"{tmp_path}: no perfkit record here (looked for {looked_for})" in r.output
    r = CliRunner().invoke(main, ["report", str(tmp_path / "missing")])
    assert r.exit_code == 2 and f"{tmp_path / 'missing'}: no such results directory" in r.output
    (tmp_path / "sps.json").write_text(json.dumps({"schema_version": 99, "kind": "compare"}))
    r = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert r.exit_code == 2 and "schema_version 99 is not supported" in r.output


def test_a_variant_with_one_sample_draws_its_bar_without_an_error(compare_process):
    """One sample: the interval is the point, and np.exp / math.exp of its log differ in the last
    bit for this value (about 4% of values do), which matplotlib refused as a negative error bar."""
    result = compare_process
    for label in result.variants:
        result.trials[label] = result.trials[label][:1]
        result.trials[label][0].sps = 15271.123132467492
    assert render_sps_png(result).startswith(b"\x89PNG")
