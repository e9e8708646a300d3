import json

import pytest

from perfkit.core.files import atomic_write_text
from perfkit.core.scenario import Scenario, plan_variants
from perfkit.engine.local import run_compare
from perfkit.engine.rounds import StopRule
from perfkit.records.compare import CompareResult
from perfkit.records.store import SCHEMA_VERSION, ResultsError, read_json
from perfkit.records.trial import TrialResult
from perfkit.render.table import render_learning, render_phases, render_sps
from tests.fakes import FakeRunner, fake_trial


def _variants():
    return plan_variants(Scenario.build(), [("wrapper", ["getattribute", "getattr"])])


def test_trial_result_round_trips(tmp_path):
    tr = fake_trial("x", 1234.0)
    tr.save(tmp_path / "t.json")
    assert TrialResult.load(tmp_path / "t.json") == tr


def test_unknown_schema_version_is_rejected(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1, "kind": "trial"}))
    with pytest.raises(ResultsError, match=f"schema_version {SCHEMA_VERSION + 1} is not supported"):
        read_json(p, "trial")
    with pytest.raises(ResultsError, match="no such file"):
        read_json(tmp_path / "missing.json", "trial")


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_text(tmp_path / "a" / "f.txt", "hello")
    assert (tmp_path / "a" / "f.txt").read_text() == "hello"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["f.txt"]


def test_compare_runs_interleaved_and_saves_after_every_trial(tmp_path):
    runner = FakeRunner({"wrapper=getattribute": [100.0, 101.0, 99.0], "wrapper=getattr": [120.0, 121.0, 119.0]})
    result = run_compare(_variants(), 3, runner, tmp_path)
    assert [c[0][8:] for c in runner.calls] == ["getattribute", "getattr"] * 3
    loaded = CompareResult.load(tmp_path / "sps.json")
    assert loaded.sps("wrapper=getattr") == [120.0, 121.0, 119.0]
    assert loaded == result and [t.round for t in loaded.trials["wrapper=getattr"]] == [0, 1, 2]
    summaries = result.summaries()
    assert summaries[0].vs_reference is None and summaries[1].vs_reference.verdict == "faster"
    table = render_sps(result, "github")
    assert "wrapper=getattr" in table and "1.20x faster" in table and "120" in table


def test_ctrl_c_keeps_finished_trials_and_reports_them(tmp_path):
    runner = FakeRunner({"wrapper=getattribute": [100.0, 101.0], "wrapper=getattr": [120.0, 121.0]}, stop_at=3)
    result = run_compare(_variants(), 2, runner, tmp_path)
    assert result.interrupted and len(runner.calls) == 3
    on_disk = CompareResult.load(tmp_path / "sps.json")
    assert on_disk.interrupted and on_disk.sps("wrapper=getattribute") == [100.0, 101.0]
    assert on_disk.sps("wrapper=getattr") == [120.0]
    assert any("interrupted: 3 of 4 trials finished" in w for w in on_disk.warnings())


def test_tables_render_phases_learning_and_warnings(tmp_path):
    runner = FakeRunner({"wrapper=getattribute": [100.0, 130.0, 80.0], "wrapper=getattr": [100.0, 100.0, 100.0]})
    result = run_compare(_variants(), 3, runner, tmp_path)
    phases = render_phases(result, "plain")
    assert "ms per 1k agent-steps" in phases and "env" in phases
    assert "hearts/ep" in render_learning(result, "plain") and "0.50" in render_learning(result, "plain")
    assert any("unstable measurement" in w and "wrapper=getattribute" in w for w in result.warnings())


def test_quirk_warning_when_configs_are_never_applied():
    result = CompareResult(["a"], {}, {"a": [fake_trial("a", 1.0, **{"curriculum.tasks_completed": 5.0,
                                                                        "curriculum.configs_applied": 0.0})]}, 1)
    assert any("never applied a new config" in w for w in result.warnings())


class _BusyRunner(FakeRunner):
    """Trials of round 1 are disturbed (a neighbour) the first `busy_times` times they run, and slow."""

    def __init__(self, busy_times: int):
        super().__init__({})
        self.busy_times, self.runs = busy_times, {}

    def __call__(self, variant, trial, out):
        n = self.runs[(variant.label, trial)] = self.runs.get((variant.label, trial), 0) + 1
        self.calls.append((variant.label, trial))
        busy = trial == 1 and n <= self.busy_times
        base = 100.0 if variant.label.endswith("getattribute") else 120.0
        tr = fake_trial(variant.label, base / 10 if busy else base + trial)
        tr.sentinel = {"disturbed": busy, "others_cores": 0.9 if busy else 0.01}
        tr.save(out)
        return tr


def test_a_disturbed_round_is_run_again_and_the_first_run_kept_as_replaced(tmp_path):
    result = run_compare(_variants(), StopRule(3, reruns=1), _BusyRunner(busy_times=1), tmp_path)
    getattr_trials = result.trials["wrapper=getattr"]
    assert [(t.round, t.status) for t in getattr_trials] == [(0, "ok"), (1, "replaced"), (1, "ok"), (2, "ok")]
    assert result.sps("wrapper=getattr") == [120.0, 121.0, 122.0]  # the disturbed 12.0 is not counted
    assert len([p for p in (tmp_path / "trials").rglob("trial-1-rerun1.json")]) == 2  # both variants' re-runs
    loaded = CompareResult.load(tmp_path / "sps.json")
    assert [t.status for t in loaded.trials["wrapper=getattr"]] == ["ok", "replaced", "ok", "ok"]
    assert ("wrapper=getattr: 1 of 4 trials re-run (their round was disturbed: other processes used up to 0.9 "
            "core); the re-runs count, the first runs are kept in sps.json") in loaded.sentinel_warnings()
    assert "| 3 (+1 re-run) |" in render_sps(loaded, "github").replace("  ", " ").replace("  ", " ")


def test_reruns_are_bounded_and_a_still_disturbed_round_is_flagged(tmp_path):
    runner = _BusyRunner(busy_times=5)
    result = run_compare(_variants(), StopRule(3, reruns=1), runner, tmp_path)
    assert len(runner.calls) == 8  # 3 rounds of 2, plus one re-run of round 1
    assert [t.status for t in result.trials["wrapper=getattr"]] == ["ok", "replaced", "ok", "ok"]
    assert ("wrapper=getattr: 1 of 3 counted trials disturbed: other processes used up to 0.9 core"
            in result.sentinel_warnings())
    assert len(run_compare(_variants(), StopRule(3, reruns=0), _BusyRunner(1), tmp_path / "b").trials[
        "wrapper=getattr"]) == 3
