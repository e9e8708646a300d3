import json

import pytest

from perfkit.compare import CompareResult, Variant, plan_variants, run_compare
from perfkit.render.table import render_learning, render_phases, render_sps, warnings_for
from perfkit.results import SCHEMA_VERSION, ResultsError, TrialResult, atomic_write_text, read_json
from perfkit.scenario import Scenario


def fake_trial(label: str, sps: float, **learning) -> TrialResult:
    windows = [{"index": i, "agent_steps": 1000, "seconds": 1000 / sps, "phases": {"env": 0.5 / sps * 1000,
                "learn": 0.5 / sps * 1000}, "learning": {}, "sps": sps} for i in range(3)]
    return TrialResult(
        scenario=Scenario.build().to_dict(), label=label, sps=sps, first_window_sps=sps / 10, agent_steps=3000,
        seconds=3000 / sps, epochs=3, phases={"env": 1000 / sps, "learn": 1000 / sps}, windows=windows,
        learning={"heart.get": 0.5, "episodes": 4.0, **learning}, env_config=None, env_config_hash="abc",
        vec={"backend": "serial", "num_workers": 0, "num_envs": 4, "agents_per_env": 24, "agents": 96},
        device="cpu", ppo={},
    )


class FakeRunner:
    """Returns scripted SPS per variant; raises KeyboardInterrupt at call `stop_at`."""

    def __init__(self, sps: dict[str, list[float]], stop_at: int | None = None):
        self.sps, self.stop_at, self.calls = sps, stop_at, []

    def __call__(self, variant: Variant, trial: int, out):
        if self.stop_at is not None and len(self.calls) == self.stop_at:
            raise KeyboardInterrupt
        self.calls.append((variant.label, trial))
        tr = fake_trial(variant.label, self.sps[variant.label][trial])
        tr.save(out)
        return tr


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
    rows = result.rows()
    assert rows[1]["vs_first"]["verdict"] == "faster"
    table = render_sps(result, "github")
    assert "wrapper=getattr" in table and "1.20x faster" in table and "120" in table


def test_ctrl_c_keeps_finished_trials_and_reports_them(tmp_path):
    runner = FakeRunner({"wrapper=getattribute": [100.0, 101.0], "wrapper=getattr": [120.0, 121.0]}, stop_at=3)
    result = run_compare(_variants(), 2, runner, tmp_path)
    assert result.interrupted and len(runner.calls) == 3
    on_disk = CompareResult.load(tmp_path / "sps.json")
    assert on_disk.interrupted and on_disk.sps("wrapper=getattribute") == [100.0, 101.0]
    assert on_disk.sps("wrapper=getattr") == [120.0]
    assert any("interrupted: 3 of 4 trials finished" in w for w in warnings_for(on_disk))


def test_tables_render_phases_learning_and_warnings(tmp_path):
    runner = FakeRunner({"wrapper=getattribute": [100.0, 130.0, 80.0], "wrapper=getattr": [100.0, 100.0, 100.0]})
    result = run_compare(_variants(), 3, runner, tmp_path)
    phases = render_phases(result, "plain")
    assert "ms per 1k agent-steps" in phases and "env" in phases
    assert "hearts/ep" in render_learning(result, "plain") and "0.50" in render_learning(result, "plain")
    assert any("unstable measurement" in w and "wrapper=getattribute" in w for w in warnings_for(result))


def test_quirk_warning_when_configs_are_never_applied():
    result = CompareResult(["a"], {}, {"a": [fake_trial("a", 1.0, **{"curriculum.tasks_completed": 5.0,
                                                                        "curriculum.configs_applied": 0.0}).__dict__]}, 1)
    assert any("never applied a new config" in w for w in warnings_for(result))
