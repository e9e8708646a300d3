"""Nothing measured is lost: failed trials, killed trial processes, signals, results directories."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from perfkit.cli import options as opts
from perfkit.cli.main import main
from perfkit.core.scenario import Scenario, plan_variants
from perfkit.engine.local import SubprocessRunner, run_compare
from perfkit.records.compare import CompareResult
from perfkit.records.trial import TrialResult
from perfkit.train.ppo import Budget, PPOConfig, train
from tests.fakes import FakeRunner, fake_trial

USERENV = str(Path(__file__).parent / "fixtures" / "userenv")
TINY = ["--ppo", "num_steps=16", "--ppo", "minibatch_size=512"]


@pytest.fixture
def user_env(monkeypatch):
    monkeypatch.syspath_prepend(USERENV)
    monkeypatch.setenv("PYTHONPATH", USERENV)


@pytest.mark.slow
def test_run_keeps_windows_measured_before_the_env_raised(tmp_path, user_env):
    r = CliRunner().invoke(main, ["run", "--env", "flaky_env:make", "--wrapper", "none", "--seconds", "60",
                                  "--out", str(tmp_path / "r"), *TINY])
    assert r.exit_code == 1, r.output
    tr = TrialResult.load(tmp_path / "r" / "trial.json")
    assert tr.status == "failed" and "ledger out of sync" in tr.error
    assert len(tr.windows) == 2 and tr.agent_steps == 2 * 16 * 96  # 40 steps of 4 envs: 2 whole epochs of 16


@pytest.mark.slow
def test_a_killed_trial_process_is_a_recorded_failure_and_the_plan_goes_on(tmp_path):
    suicide = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    killer = SubprocessRunner(launcher=[sys.executable, "-c", suicide])
    good = FakeRunner({"wrapper=getattribute": [100.0, 101.0], "wrapper=getattr": [120.0, 121.0]})

    def runner(v, k, out):
        return killer(v, k, out) if (v.label, k) == ("wrapper=getattr", 0) else good(v, k, out)

    variants = plan_variants(Scenario.build(), [("wrapper", ["getattribute", "getattr"])])
    result = run_compare(variants, 2, runner, tmp_path)
    failed = result.failed("wrapper=getattr")
    assert len(failed) == 1 and failed[0].exit_status == -9 and "SIGKILL" in failed[0].error
    assert result.sps("wrapper=getattr") == [121.0] and result.paired("wrapper=getattr") == ([101.0], [121.0])
    on_disk = json.loads((tmp_path / "sps.json").read_text())
    assert [t["status"] for t in on_disk["trials"]["wrapper=getattr"]] == ["failed", "ok"]


@pytest.mark.slow
def test_compare_records_a_failing_env_and_prints_the_table(tmp_path, user_env):
    out = tmp_path / "c"
    r = CliRunner().invoke(main, ["compare", "--vary", "env=arena,flaky_env:make", "--wrapper", "none", "--trials",
                                  "1", "--steps", str(3 * 1536), "--out", str(out), *TINY])
    assert r.exit_code == 1, r.output
    assert "| env=flaky_env:make" in r.output and "(+1 failed)" in r.output
    assert "ledger out of sync" in r.output  # under Warnings
    result = CompareResult.load(out / "sps.json")
    assert result.sps("env=arena") and result.failed("env=flaky_env:make")
    assert (out / "sps.md").exists() and (out / "sps.png").exists()


def _children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid,ppid,pgid,args"], capture_output=True, text=True, check=False).stdout
    return [int(ln.split()[0]) for ln in out.splitlines()[1:]
            if "perfkit.engine.trial" in ln and str(pid) in ln.split()[1:3]]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_compare_stops_the_trial_keeps_what_finished_and_writes_the_table(tmp_path, sig):
    out = tmp_path / "c"
    proc = subprocess.Popen([sys.executable, "-m", "perfkit", "compare", "--vary", "wrapper=getattr,none",
                             "--trials", "1", "--seconds", "120", "--out", str(out), "--mode", "process", *TINY],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a shell's background job starts with SIGINT ignored, and Python keeps
                            # it so: give the command the terminal's default, as a user's has
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    spec = out / "trials" / "wrapper=getattr" / "trial-0.spec.json"
    deadline = time.time() + 60
    while not spec.exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(4)  # the trial is starting or training
    os.kill(proc.pid, sig)  # the parent alone, as `kill PID` or a CI timeout would
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    assert "## Throughput" in stdout
    result = CompareResult.load(out / "sps.json")
    assert result.interrupted
    partial = result.trials["wrapper=getattr"]
    assert len(partial) == 1 and partial[0].status == "interrupted"  # saved by the trial itself
    assert result.trials["wrapper=none"] == []  # the plan stopped
    time.sleep(0.5)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False).stdout
    assert not [ln for ln in ps.splitlines() if "perfkit.engine.trial" in ln and str(out) in ln]  # no orphaned trial


@pytest.mark.slow
def test_ctrl_c_in_a_sampled_compare_still_writes_the_table(tmp_path, monkeypatch):
    import perfkit.commands.compare as compare_cmd
    from perfkit.engine.profilers import pyspy

    fake = FakeRunner({"wrapper=getattr": [100.0, 101.0], "wrapper=none": [110.0, 111.0]}, stop_at=3)
    monkeypatch.setattr(compare_cmd, "SubprocessRunner", lambda **kw: fake)
    monkeypatch.setattr(compare_cmd, "SamplingRunner", lambda runner, rate: runner)  # no py-spy here
    monkeypatch.setattr(pyspy, "check", lambda: None)
    r = CliRunner().invoke(main, ["compare", "--vary", "wrapper=getattr,none", "--trials", "2", "--flamegraph",
                                  "--mode", "process", "--out", str(tmp_path / "c")])
    assert r.exit_code == 130
    assert "| wrapper=none" in r.output and "interrupted: 3 of 4 trials finished" in r.output
    assert (tmp_path / "c" / "sps.md").exists()
    assert CompareResult.load(tmp_path / "c" / "sps.json").sps("wrapper=none") == [110.0]


def test_results_directories_are_unique_and_out_is_not_overwritten(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = opts.run_dir(None, "compare"), opts.run_dir(None, "compare")
    assert a != b and a.is_dir() and b.is_dir()
    full = tmp_path / "full"
    full.mkdir()
    (full / "sps.json").write_text("{}")
    r = CliRunner().invoke(main, ["run", "--steps", "1536", "--out", str(full), *TINY])
    assert r.exit_code == 2 and "is not empty (holds sps.json)" in r.output and "--force" in r.output
    r = CliRunner().invoke(main, ["run", "--steps", "1536", "--out", str(full), "--force", *TINY])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in full.iterdir()) == ["trial.json"]  # the stale file is gone


def test_force_refuses_to_empty_a_source_tree(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    r = CliRunner().invoke(main, ["run", "--steps", "1536", "--out", str(tmp_path), "--force", *TINY])
    assert r.exit_code == 2 and "will not delete" in r.output and (tmp_path / "pyproject.toml").exists()


class _SlowVec:
    """A vector env whose steps take a fake 1 s each (a clock the test controls)."""

    def __init__(self, clock, interrupt_at=None):
        import gymnasium
        import numpy as np

        self.num_agents, self.clock, self.calls, self.interrupt_at = 2, clock, 0, interrupt_at
        self.single_observation_space = gymnasium.spaces.Box(0, 255, (3,), dtype=np.uint8)
        self.single_action_space = gymnasium.spaces.Discrete(2)
        self.driver_env = self
        self._np = np

    def async_reset(self, seed):
        pass

    def send(self, actions):
        self.calls += 1
        self.clock.t += 1.0
        if self.interrupt_at is not None and self.calls >= self.interrupt_at:
            raise KeyboardInterrupt

    def recv(self):
        np = self._np
        z = np.zeros(2, np.float32)
        return np.zeros((2, 3), np.uint8), z, z.astype(bool), z.astype(bool), None, [], None, None


class _Clock:
    t = 0.0

    def __call__(self):
        return self.t


def test_a_time_budget_is_honoured_inside_a_slow_rollout():
    import torch

    clock = _Clock()
    vec = _SlowVec(clock)
    out = train(vec, PPOConfig(num_steps=1000, minibatch_size=64), torch.device("cpu"), Budget(seconds=5), clock=clock)
    assert vec.calls <= 6 and out.windows == [] and not out.error  # stopped mid-rollout, not after 1000 steps
    from perfkit.engine.trial import trial_result
    from perfkit.train.vecenv import VecPlan

    tr = trial_result(Scenario.build(), out, VecPlan("serial", 0, 1), 2, None, torch.device("cpu"), PPOConfig())
    assert tr.status == "failed" and "no training epoch finished within the budget" in tr.error


def test_ctrl_c_in_the_first_rollout_returns_an_empty_interrupted_trial(tmp_path):
    import torch

    from perfkit.engine.trial import trial_result
    from perfkit.render.table import render_trial
    from perfkit.train.vecenv import VecPlan

    clock = _Clock()
    out = train(_SlowVec(clock, interrupt_at=3), PPOConfig(num_steps=100, minibatch_size=64), torch.device("cpu"),
                Budget(seconds=50), clock=clock)
    assert out.interrupted and out.windows == []
    tr = trial_result(Scenario.build(), out, VecPlan("serial", 0, 1), 2, None, torch.device("cpu"), PPOConfig())
    assert tr.status == "interrupted" and tr.sps == 0.0
    assert "steady-state" in render_trial(tr, "plain")  # no ZeroDivisionError


def test_checkpoints_are_per_trial(tmp_path):
    from perfkit.engine.trial import main as trial_main

    spec = tmp_path / "t.spec.json"
    spec.write_text(json.dumps({"scenario": Scenario.build({"checkpoint": "epochs:1"}).to_dict(), "steps": 1536,
                                "ppo": {"num_steps": 16, "minibatch_size": 512}}))
    assert trial_main([str(spec), str(tmp_path / "trial-0.json")]) == 0
    assert (tmp_path / "trial-0-checkpoints" / "latest.pt").exists()
    assert not (tmp_path / "checkpoints").exists()


def test_fake_trial_status_round_trips(tmp_path):
    tr = fake_trial("x", 10.0)
    tr.error = "boom"
    tr.save(tmp_path / "t.json")
    assert TrialResult.load(tmp_path / "t.json").status == "failed"
