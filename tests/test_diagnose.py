import json

import pytest
from click.testing import CliRunner

from envs.arena import ArenaEnv, preset
from envs.arena.scripted import scripted_episode_stats
from perfkit.cli.main import main
from perfkit.commands import diagnose as d
from perfkit.core.scenario import Scenario


def test_earliest_heart_per_preset_is_exact():
    assert d.earliest_heart_step(preset("basic_easy_shaped")) == 90  # = tests/test_arena.py's scripted run
    assert d.earliest_heart_step(preset("make_arena")) == 192
    assert d.earliest_heart_step(preset("fixed_recipe")) == 1  # buildings start holding output


@pytest.mark.parametrize("mode,expected", [("off", 0.0), ("max-steps", 89 / 1000), ("early-reset", 89 / 999)])
def test_fraction_of_first_episodes_truncated_before_a_heart(mode, expected):
    assert d.truncated_before(mode, 90, 1000) == pytest.approx(expected)


@pytest.mark.slow
def test_reachability_check_measures_what_it_predicts():
    out = d.check_reachability(Scenario.build({"preset": "make_arena", "desync": "early-reset"}), 0.10, samples=3000)
    rows = out.data["by_desync_mode"]
    assert rows["early-reset"]["analytic"] == pytest.approx(191 / 999)
    assert rows["early-reset"]["measured"] == pytest.approx(191 / 999, abs=0.025)
    assert rows["off"]["measured"] == 0.0
    assert out.verdict == d.FAIL  # 19% of first episodes can never see a heart
    ok = d.check_reachability(Scenario.build({"preset": "make_arena"}), 0.10, samples=100)
    assert ok.verdict == d.OK


def test_shared_rng_check_detects_identical_draws():
    bug = d.check_shared_rng(Scenario.build({"desync": "early-reset", "desync-rng": "shared"}))
    assert bug.verdict == d.FAIL and len(set(bug.data["draws"])) == 1
    fix = d.check_shared_rng(Scenario.build({"desync": "early-reset", "desync-rng": "per-env"}))
    assert fix.verdict == d.OK and len(set(fix.data["draws"])) == 4
    assert d.check_shared_rng(Scenario.build()).verdict == d.NA


def test_scripted_policy_hearts_on_a_fixed_seed():
    stats = scripted_episode_stats(ArenaEnv(preset("basic_easy_shaped"), seed=1), 1)
    assert stats["heart.get"] == pytest.approx(4.833, abs=1e-3)
    assert stats["episode_length"] == 1000.0


def test_config_check_reads_back_the_running_config():
    out = d.check_config(Scenario.build({"preset": "make_arena"}))
    assert out.verdict == d.OK and out.data["hash"] == preset("make_arena").config_hash()
    assert "altar needs 3" in out.detail


@pytest.mark.slow
def test_observation_check_covers_every_variant():
    out = d.check_observations(Scenario.build(), steps=50)
    assert out.verdict == d.OK and out.data["differ"] == []
    assert out.data["channel_ranges"]["wall"] == [0, 1]
    quirk = d.check_observations(Scenario.build({"curriculum": "mixed"}).with_values(**{"env-config": "deferred"}),
                                 steps=2050)
    assert quirk.verdict == d.FAIL  # getattribute + deferred never applies the next task's config
    assert "wrapper=getattribute,env-config=deferred" in quirk.data["differ"]


@pytest.mark.slow
def test_diagnose_cli_tables_json_and_exit_code(tmp_path):
    r = CliRunner().invoke(main, ["diagnose", "--preset", "make_arena", "--desync", "early-reset",
                                  "--desync-rng", "shared", "--out", str(tmp_path)])
    assert r.exit_code == 1, r.output
    assert "earliest heart (step 192)" in r.output
    assert "greedy hearts" in r.output and "Observation channel ranges" in r.output
    rep = json.loads((tmp_path / "diagnose.json").read_text())
    assert set(rep["failed"]) == {"heart reachable in first episodes", "desync draws differ across workers"}


@pytest.mark.parametrize("args,message", [
    (["--device", "cuda"], "--device cuda: no CUDA device is available here; valid: auto, cpu"),
    (["--seed", "-1"], "-1 is not in the range 0<=x<=4294967295"),
    (["--seed", "4294967296"], "4294967296 is not in the range 0<=x<=4294967295"),
])
def test_diagnose_bad_device_or_seed_is_a_usage_error(tmp_path, monkeypatch, args, message):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on a GPU machine
    monkeypatch.setattr(d, "diagnose", lambda *a, **k: pytest.fail("diagnose ran on bad input"))
    r = CliRunner().invoke(main, ["diagnose", *args, "--out", str(tmp_path)])
    assert r.exit_code == 2 and message in r.output
