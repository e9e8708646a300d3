"""`perfkit profile`'s rounds, pairs and guard, with fake trials: no profiler runs here."""

import math

import pytest

from perfkit.commands import profiling as pm
from perfkit.core.scenario import Scenario, Variant
from perfkit.records.trial import TrialResult
from perfkit.render.table import render_profiles

SCENARIO = Scenario.build({})
VARIANT = Variant(SCENARIO.label(), SCENARIO)


class FakeRunner:
    """Unprofiled trials at 100, except the ones listed as disturbed (a neighbour: 10)."""

    def __init__(self, disturbed_rounds=()):
        self.disturbed_rounds, self.calls = set(disturbed_rounds), []

    def __call__(self, variant, trial, out):
        self.calls.append(("none", trial))
        busy = trial in self.disturbed_rounds
        tr = TrialResult.failed(variant.scenario.to_dict(), variant.label, None)
        tr.sps = 10.0 if busy else 100.0
        tr.sentinel = {"disturbed": busy, "others_cores": 0.9 if busy else 0.01}
        return tr


def _fake_profilers(monkeypatch, runner, sps=None, fail_round=None):
    sps = sps or {"pyspy": [97.0, 96.0, 98.0, 97.0], "torch": [86.0, 88.0, 87.0, 86.0]}

    def one(tool, runner_, variant, where, options):
        k = sum(1 for c in runner.calls if c[0] == tool)
        runner.calls.append((tool, k))
        if tool == "torch" and k == fail_round:
            raise RuntimeError("torch.profiler wrote nothing")
        return {"sps": sps[tool][k], "files": {"x": str(where / "x")}, "sentinel": {"disturbed": False,
                                                                                      "others_cores": 0.02}}
    monkeypatch.setattr(pm, "_profile_one", one)


def test_rounds_rotate_and_every_trial_is_recorded(monkeypatch, tmp_path):
    runner = FakeRunner()
    _fake_profilers(monkeypatch, runner)
    record = pm.run_profile(runner, VARIANT, ["pyspy", "torch"], pm.ProfileOptions(), tmp_path, repeats=3)
    assert [c[0] for c in runner.calls] == ["none", "pyspy", "torch", "pyspy", "torch", "none", "torch", "none",
                                            "pyspy"]
    assert pm.ProfileRecord.load(tmp_path / "profile.json").to_dict() == record.to_dict()
    c = record.overhead("pyspy")
    assert c.ratio == pytest.approx((0.97 * 0.96 * 0.98) ** (1 / 3))
    assert c.ci_low < c.ratio < c.ci_high and record.warnings == []


def test_a_disturbed_trial_leaves_the_overhead_with_its_pair(monkeypatch, tmp_path):
    # round 2's unprofiled trial ran next to a package install (10 agent-steps/s): with it, py-spy
    # would look ~10x faster than no profiler at all
    runner = FakeRunner(disturbed_rounds={1})
    _fake_profilers(monkeypatch, runner)
    record = pm.run_profile(runner, VARIANT, ["pyspy", "torch"], pm.ProfileOptions(), tmp_path, repeats=4)
    assert record.clean_pairs("pyspy") == ([100.0, 100.0, 100.0], [97.0, 98.0, 97.0])
    assert record.overhead("pyspy").ratio == pytest.approx((0.97 * 0.98 * 0.97) ** (1 / 3))
    assert record.unprofiled_sps() == pytest.approx(100.0)
    assert record.warnings == ["1 of 4 unprofiled trials left out of the overhead: other processes were busy "
                               "during them (others used up to 0.90 core)"]
    assert len(record.trials) == 12  # nothing dropped from the record


def test_a_failed_profiled_trial_is_recorded_and_the_rounds_go_on(monkeypatch, tmp_path):
    runner = FakeRunner()
    _fake_profilers(monkeypatch, runner, fail_round=0)
    record = pm.run_profile(runner, VARIANT, ["pyspy", "torch"], pm.ProfileOptions(), tmp_path, repeats=2)
    assert record.counts("torch") == {"trials": 2, "failed": 1, "disturbed": 0}
    assert "1 of 2 torch trials failed: torch.profiler wrote nothing" in record.warnings
    assert "torch: 1 clean pair(s) with an unprofiled trial: no interval (use --repeats 3 or more)" in record.warnings
    assert math.isnan(record.overhead("torch").ci_low)
    table = render_profiles(record)
    assert ("| torch             | 88                         | 0.880                          | –              "
            "| 2, 1 failed |") in table


def test_interrupt_keeps_the_finished_trials(monkeypatch, tmp_path):
    runner = FakeRunner()

    def one(tool, *a):
        raise KeyboardInterrupt

    monkeypatch.setattr(pm, "_profile_one", one)
    record = pm.run_profile(runner, VARIANT, ["pyspy"], pm.ProfileOptions(), tmp_path, repeats=3)
    assert record.interrupted and [t["tool"] for t in record.trials] == ["none"]
    assert pm.ProfileRecord.load(tmp_path / "profile.json").interrupted
