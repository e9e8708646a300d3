import os

import numpy as np
import pytest
import torch

from perfkit.core.scenario import Scenario
from perfkit.engine.trial import run_trial
from perfkit.train.cadence import Cadence
from perfkit.train.ppo import Budget, Policy, PPOConfig, PPOConfigError, sample_actions, save_checkpoint

SMALL = {"num_steps": 16, "minibatch_size": 512}


def test_trial_smoke_reports_windows_phases_and_learning(tmp_path):
    tr = run_trial(Scenario.build({"preset": "basic_easy_shaped"}, seed=2), steps=96 * 16 * 4, out_dir=str(tmp_path),
                   ppo=SMALL)
    assert tr.epochs == 4 and tr.agent_steps == 96 * 16 * 4 and len(tr.windows) == 4
    assert tr.sps > 0 and tr.first_window_sps > 0
    assert set(tr.phases) == {"env", "forward", "copy", "learn", "checkpoint", "eval", "misc"}
    assert tr.phases["env"] > 0 and tr.phases["learn"] > 0
    assert tr.env_config["name"] == "basic_easy_shaped" and len(tr.env_config_hash) == 12
    assert tr.vec["agents"] == 96 and tr.device == "cpu"
    assert {"entropy", "approx_kl"} <= set(tr.learning)
    assert tr.machine["logical_cores"] >= 1


def test_same_seed_same_training(tmp_path):
    a = run_trial(Scenario.build(seed=5), steps=96 * 16 * 2, ppo=SMALL)
    b = run_trial(Scenario.build(seed=5), steps=96 * 16 * 2, ppo=SMALL)
    assert [w["learning"]["pg_loss"] for w in a.windows] == [w["learning"]["pg_loss"] for w in b.windows]


def test_checkpoint_and_blocking_eval_cadence(tmp_path):
    tr = run_trial(Scenario.build({"checkpoint": "epochs:2", "eval": "epochs:3"}), steps=96 * 16 * 6,
                   out_dir=str(tmp_path), ppo={**SMALL, "eval_steps": 50})
    assert tr.checkpoints == 3
    assert [e["epoch"] for e in tr.evals] == [3, 6]
    ck = torch.load(tmp_path / "checkpoints" / "latest.pt")
    assert ck["epoch"] == 6
    assert tr.phases["checkpoint"] > 0 and tr.phases["eval"] > 0
    assert not [p for p in os.listdir(tmp_path / "checkpoints") if ".tmp" in p]


@pytest.mark.slow
def test_multiprocessing_workers_run(tmp_path):
    tr = run_trial(Scenario.build({"workers": "2"}), steps=96 * 16 * 2, ppo=SMALL)
    assert tr.vec["backend"] == "multiprocessing" and tr.vec["num_workers"] == 2 and tr.agent_steps > 0


def test_budget_in_steps_or_seconds():
    assert Budget(agent_steps=10).spent(10, 0.0) and not Budget(agent_steps=10).spent(9, 1e9)
    assert Budget(seconds=1.0).spent(0, 1.0) and not Budget(seconds=1.0).spent(10**9, 0.5)


def test_sampled_actions_follow_the_logits():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1, 0.0, 0.0]]).clamp_min(1e-12)).repeat(20000, 1)
    action, logprob = sample_actions(logits, torch.Generator().manual_seed(0))
    freq = np.bincount(action.numpy(), minlength=5) / 20000
    assert freq == pytest.approx([0.7, 0.2, 0.1, 0, 0], abs=0.02)
    assert torch.allclose(logprob, logits.log_softmax(-1).gather(-1, action[:, None]).squeeze(-1))


def test_checkpoint_is_replaced_atomically(tmp_path):
    pol = Policy((2, 3, 3), 5, 8)
    opt = torch.optim.Adam(pol.parameters())
    save_checkpoint(str(tmp_path), pol, opt, 1, 10)
    save_checkpoint(str(tmp_path), pol, opt, 2, 20)
    assert os.listdir(tmp_path) == ["latest.pt"] and torch.load(tmp_path / "latest.pt")["epoch"] == 2
    assert PPOConfig().update_epochs == 1 and Cadence.parse("off").unit == "off"


def custom_env(buf=None, seed=0):
    """A user's own env factory, as `--env tests.test_train:custom_env` names it."""
    from envs.arena import ArenaEnv, preset

    return ArenaEnv(preset("fixed_recipe").replace(max_steps=50), buf=buf, seed=seed)


def test_a_users_env_factory_runs_under_every_axis_that_applies():
    tr = run_trial(Scenario.build({"env": "tests.test_train:custom_env", "wrapper": "getattribute"}),
                   steps=96 * 16 * 4, ppo=SMALL)
    assert tr.env_config["max_steps"] == 50 and tr.agent_steps == 96 * 16 * 4
    assert tr.learning["curriculum.tasks_completed"] >= 1  # the wrapper drove the user's env


def test_a_bad_factory_is_a_usage_error():
    from click.testing import CliRunner

    from perfkit.cli.main import main

    r = CliRunner().invoke(main, ["run", "--env", "tests.nowhere:make", "--steps", "10"])
    assert r.exit_code == 2 and "cannot load the factory" in r.output


@pytest.mark.parametrize("field,value,message", [
    ("num_steps", 0, "num_steps 0 must be an integer >= 1"),
    ("minibatch_size", 0, "minibatch_size 0 must be an integer >= 1"),
    ("minibatch_size", -1, "minibatch_size -1 must be an integer >= 1"),
    ("update_epochs", 0, "update_epochs 0 must be an integer >= 1"),
    ("hidden", 0, "hidden 0 must be an integer >= 1"),
    ("eval_steps", 0, "eval_steps 0 must be an integer >= 1"),
    ("num_steps", 2.5, "num_steps 2.5 must be an integer >= 1"),
    ("learning_rate", -1.0, "learning_rate -1.0 must be a finite number > 0"),
    ("learning_rate", float("nan"), "learning_rate nan must be a finite number > 0"),
    ("learning_rate", 0.0, "learning_rate 0.0 must be a finite number > 0"),
    ("gamma", float("inf"), "gamma inf must be a finite number in [0, 1]"),
    ("gamma", 1.5, "gamma 1.5 must be a finite number in [0, 1]"),
    ("gae_lambda", -0.1, "gae_lambda -0.1 must be a finite number in [0, 1]"),
    ("clip_coef", 0.0, "clip_coef 0.0 must be a finite number > 0"),
    ("ent_coef", -0.01, "ent_coef -0.01 must be a finite number >= 0"),
    ("vf_coef", float("nan"), "vf_coef nan must be a finite number >= 0"),
    ("max_grad_norm", 0.0, "max_grad_norm 0.0 must be a finite number > 0"),
])
def test_ppo_config_rejects_out_of_range_settings(field, value, message):
    with pytest.raises(PPOConfigError) as e:
        PPOConfig(**{field: value})
    assert str(e.value) == message


def test_ppo_config_accepts_the_edges_of_its_ranges():
    cfg = PPOConfig(gamma=0.0, gae_lambda=1.0, ent_coef=0.0, vf_coef=0.0, learning_rate=1, num_steps=1,
                    minibatch_size=1, update_epochs=1, hidden=1, eval_steps=1)
    assert (cfg.gamma, cfg.learning_rate, cfg.minibatch_size) == (0.0, 1, 1)


@pytest.mark.parametrize("setting,message", [
    ("minibatch_size=-1", "minibatch_size -1 must be an integer >= 1"),
    ("update_epochs=0", "update_epochs 0 must be an integer >= 1"),
    ("gamma=inf", "gamma inf must be a finite number in [0, 1]"),
    ("num_steps=0", "num_steps 0 must be an integer >= 1"),
    ("learning_rate=nan", "learning_rate nan must be a finite number > 0"),
])
def test_bad_ppo_settings_are_usage_errors(setting, message):
    from click.testing import CliRunner

    from perfkit.cli.main import main

    r = CliRunner().invoke(main, ["run", "--ppo", setting, "--steps", "10"])
    assert r.exit_code == 2 and message in r.output


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit, OSError])
def test_checkpoint_interrupted_mid_save_leaves_no_temp_file(tmp_path, monkeypatch, interrupt):
    pol = Policy((2, 3, 3), 5, 8)
    opt = torch.optim.Adam(pol.parameters())
    save_checkpoint(str(tmp_path), pol, opt, 1, 10)

    def killed_mid_save(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise interrupt()

    monkeypatch.setattr(torch, "save", killed_mid_save)
    with pytest.raises(interrupt):
        save_checkpoint(str(tmp_path), pol, opt, 2, 20)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["latest.pt"] and torch.load(tmp_path / "latest.pt")["epoch"] == 1


@pytest.mark.parametrize("fault", ["host-sync", "obs-copy", "half-minibatch", "quarter-lr"])
def test_seeded_faults_run_and_leave_the_trajectory_where_they_should(fault, monkeypatch):
    from perfkit.train import ppo

    called = []
    for name in ("_fault_host_sync", "_fault_obs_copy"):
        real = getattr(ppo, name)
        monkeypatch.setattr(ppo, name, lambda x, real=real, name=name: called.append(name) or real(x))
    clean = run_trial(Scenario.build(seed=5), steps=96 * 16 * 2, ppo=SMALL)
    tr = run_trial(Scenario.build({"fault": fault}, seed=5), steps=96 * 16 * 2, ppo=SMALL)
    assert tr.error is None and tr.epochs == 2
    losses = [w["learning"]["pg_loss"] for w in tr.windows]
    if fault in ("half-minibatch", "quarter-lr"):  # a different update: more, smaller steps, or shorter ones
        assert losses != [w["learning"]["pg_loss"] for w in clean.windows] and called == []
    else:  # the same computation plus the fault's extra work, 16 rollout steps x 2 epochs
        assert losses == [w["learning"]["pg_loss"] for w in clean.windows]
        assert called == [f"_fault_{fault.replace('-', '_')}"] * 32
