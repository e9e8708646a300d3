"""A user's own training command under compare (--cmd): progress read from its output, variants
by environment variable, bad input refused before any trial, nothing left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from perfkit.cli.main import main
from perfkit.core.command import CommandError, plan_commands
from perfkit.core.progress import Progress, ProgressError, compile_metric, compile_progress, last_values

TRAINER = Path(__file__).parent / "trainers" / "counter.py"
CMD = f"{sys.executable} {TRAINER}"


def _progress(spec="auto", metrics=()) -> Progress:
    return Progress(compile_progress(spec), dict(compile_metric(m) for m in metrics))


# -- reading progress (pure: timestamps are given) ------------------------------------------------

@pytest.mark.parametrize("line,steps", [
    ("global_step=1200, episodic_return=[3.5]", 1200),  # CleanRL
    ("| total_timesteps    | 4096         |", 4096),  # Stable-Baselines3
    ("epoch 3: steps: 1_000_000 loss 0.3", 1_000_000),
])
def test_the_built_in_recognisers_read_common_trainers(line, steps):
    p = _progress()
    p.feed(1.0, line)
    assert p.points == [(1.0, steps)]


def test_a_custom_regex_needs_a_group_and_must_compile():
    with pytest.raises(ProgressError, match="has no group"):
        compile_progress(r"frames \d+")
    with pytest.raises(ProgressError, match="is not a regular expression"):
        compile_progress(r"frames (\d+")
    p = _progress(r"frames=(\d+)")
    p.feed(0.5, "frames=77 fps=1000")
    assert p.points == [(0.5, 77)]


def test_windows_leave_the_warm_up_out_by_time_and_merge_close_lines():
    p = _progress("steps", ["loss=loss=([0-9.]+)"])
    for i in range(101):  # 10 lines a second, 1000 steps each: 10k steps/s; a slow start
        t = i * 0.1
        p.feed(t, f"steps: {1000 * i + (0 if i < 20 else 5000)} loss={1.0 / (1 + i):.4f}")
    w = p.windows(warmup_s=2.0, min_window_s=1.0)
    assert w[0].seconds == pytest.approx(2.0) and w[0].agent_steps == 25_000  # the warm-up, with its jump
    steady = w[1:]
    assert all(x.seconds >= 1.0 - 1e-9 for x in steady) and len(steady) == 8
    assert all(x.sps == pytest.approx(10_000) for x in steady)
    assert steady[-1].learning["loss"] < steady[0].learning["loss"]


def test_a_counter_that_goes_back_is_not_progress():
    p = _progress("cleanrl")
    for t, s in ((0.0, 100), (1.0, 200), (2.0, 50), (3.0, 300)):
        p.feed(t, f"global_step={s}")
    assert [s for _, s in p.points] == [100, 200, 300]


def test_metric_names_and_values():
    assert compile_metric("episodic_return")[0] == "episodic_return"
    with pytest.raises(ProgressError, match="expected NAME=REGEX"):
        compile_metric("nosuchmetric")
    p = _progress("cleanrl", ["episodic_return"])
    for t, r in enumerate([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]):
        p.feed(float(t), f"global_step={t}, episodic_return=[{r}]")
    assert last_values(p, last=2) == {"episodic_return": 5.5}


# -- planning variants ----------------------------------------------------------------------------

def test_commands_cross_environment_variables_and_the_first_is_the_reference():
    vs = plan_commands(["base=python a.py", "fast=python a.py --fast"], ["env:FLAG=0,1"])
    assert [v.label for v in vs] == ["base,env:FLAG=0", "base,env:FLAG=1", "fast,env:FLAG=0", "fast,env:FLAG=1"]
    assert vs[1].scenario.to_dict()["env"] == {"FLAG": "1"}
    one = plan_commands(["base=python a.py"], ["env:FLAG=0,1"])
    assert [v.label for v in one] == ["env:FLAG=0", "env:FLAG=1"]


@pytest.mark.parametrize("cmds,axes,message", [
    (["a=x", "a=y"], [], "--cmd names repeat: a"),
    (["a x"], [], "expected NAME=COMMAND"),
    (["a="], [], "expected NAME=COMMAND"),
    (["a=x"], [], "nothing to compare"),
    (["a=x"], ["env:1X=0,1"], "is not an environment variable name"),
    (["a=x"], ["env:X"], "give the values"),
    (["a=x"], ["env:X=0,0"], "a value repeats"),
    (["a='unclosed"], [], "cannot split"),
])
def test_bad_commands_and_axes_are_named(cmds, axes, message):
    with pytest.raises(CommandError, match=message):
        plan_commands(cmds, axes)


@pytest.mark.parametrize("argv,message", [
    (["--cmd", "a=nosuchprogram_xyz", "--cmd", "b=ls"], "'nosuchprogram_xyz' is not a program on PATH"),
    (["--cmd", "a=ls", "--cmd", "b=ls", "--progress", "x("], "is not a regular expression"),
    (["--cmd", "a=ls", "--vary", "wrapper=none,getattr"], "is an axis of the built-in trainer"),
    (["--cmd", "a=ls", "--cmd", "b=ls", "--wrapper", "none"], "do not apply to it"),
    (["--cmd", "a=ls", "--cmd", "b=ls", "--mode", "inprocess"], "--mode inprocess is for the built-in trainer"),
    (["--cmd", "a=ls", "--cmd", "b=ls", "--metric", "x=("], "is not a regular expression"),
    (["--cmd", "a=ls", "--vary", "env:X="], "give the values"),
])
def test_bad_input_is_exit_2_before_any_trial(argv, message, tmp_path):
    r = CliRunner().invoke(main, ["compare", *argv, "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert not (tmp_path / "o" / "trials").exists()


def test_good_input_reaches_the_run_with_the_commands_as_variants(tmp_path, monkeypatch):
    import perfkit.commands.compare as compare_cmd

    seen = {}

    class Reached(Exception):
        pass

    def fake_run(variants, rule, runner, run_dir, *a, **k):
        seen.update(labels=[v.label for v in variants], rule=rule, runner=runner)
        raise Reached

    monkeypatch.setattr(compare_cmd, "run_compare", fake_run)
    r = CliRunner().invoke(main, ["compare", "--cmd", "a=ls", "--cmd", "b=ls -l", "--progress", "steps",
                                  "--seconds", "7", "--warmup-seconds", "3", "--trials", "4",
                                  "--out", str(tmp_path / "o")])
    assert isinstance(r.exception, Reached), r.output
    assert seen["labels"] == ["a", "b"] and seen["rule"].rounds == 4
    assert (seen["runner"].seconds, seen["runner"].warmup_seconds, seen["runner"].progress) == (7, 3, "steps")


# -- running commands (real processes; short) -----------------------------------------------------

def _compare(tmp_path, *argv, env=None):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "perfkit", "compare", *argv, "--out", str(out)], capture_output=True,
                       text=True, timeout=300, env={**os.environ, **(env or {})})
    return r, out


@pytest.mark.slow
def test_a_hidden_cost_behind_an_environment_variable_is_measured(tmp_path):
    r, out = _compare(tmp_path, "--cmd", f"train={CMD}", "--vary", "env:COST_US=0,100", "--trials", "2",
                      "--seconds", "2", "--warmup-seconds", "0.5", "--metric", "episodic_return")
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads((out / "sps.json").read_text())
    assert data["variants"] == ["env:COST_US=0", "env:COST_US=100"]
    trials = data["trials"]["env:COST_US=100"]
    assert all(t["scenario"]["env"] == {"COST_US": "100"} and t["sps"] > 0 for t in trials)
    assert all("episodic_return" in t["learning"] for t in trials)
    assert (out / "trials" / "env_COST_US=100" / "trial-0.log").read_text().startswith("starting up")
    # 100 µs per step on top of a few µs: several times slower, whatever the machine is doing
    fast = sum(t["sps"] for t in data["trials"]["env:COST_US=0"])
    slow = sum(t["sps"] for t in trials)
    assert slow < fast / 2
    assert "| env:COST_US=100" in r.stdout and "episodic_return" in r.stdout


@pytest.mark.slow
def test_a_command_that_prints_no_progress_fails_naming_the_regex_and_its_last_lines(tmp_path):
    r, out = _compare(tmp_path, "--cmd", f"train={CMD}", "--vary", "env:SILENT=1,0", "--trials", "1", "--seconds",
                      "1", "--warmup-seconds", "0.2", "--start-timeout", "2", "--reruns", "0")
    assert r.returncode == 1
    silent = json.loads((out / "sps.json").read_text())["trials"]["env:SILENT=1"][0]
    assert "no line matched --progress 'auto' within 2 s" in silent["error"]
    assert "starting up" in silent["error"]  # the last thing it printed


@pytest.mark.slow
def test_a_command_that_exits_early_is_recorded_with_its_status(tmp_path):
    r, out = _compare(tmp_path, "--cmd", f"train={CMD}", "--vary", "env:EXIT_AFTER=0,1", "--trials", "1",
                      "--seconds", "30", "--warmup-seconds", "0.2", "--reruns", "0")
    assert r.returncode == 1
    early = json.loads((out / "sps.json").read_text())["trials"]["env:EXIT_AFTER=1"][0]
    assert early["exit_status"] == 3 and "exited 3 before its time was up" in early["error"]
    assert early["windows"]  # what it measured before it exited is kept


@pytest.mark.slow
def test_ctrl_c_stops_the_command_leaves_nothing_running_and_prints_the_table(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "perfkit", "compare", "--cmd", f"train={CMD}", "--vary",
                             "env:COST_US=0,1", "--trials", "3", "--seconds", "60", "--warmup-seconds", "0.2",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    first_log = out / "trials" / "env_COST_US=0" / "trial-0.log"
    while time.monotonic() < deadline and not (first_log.exists() and "global_step" in first_log.read_text()):
        time.sleep(0.2)  # wait for an event (the trial's first step count), not for a clock
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert "| env:COST_US=0" in stdout
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(TRAINER) not in ps
    tr = json.loads((out / "trials" / "env_COST_US=0" / "trial-0.json").read_text())
    assert tr["interrupted"] is True


# -- perfkit.probe --------------------------------------------------------------------------------

def test_the_probe_imports_nothing_heavy_and_is_silent_outside_perfkit():
    code = "import perfkit.probe as p, sys; p.steps(5); p.flush(); print(p.active(), 'numpy' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != "PERFKIT_PROBE_FD"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert r.stdout.split() == ["False", "False"], r.stderr
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", "import perfkit.probe"], capture_output=True,
                       text=True, env=env, timeout=60)
    loaded = {ln.rsplit("|", 1)[-1].strip().split(".")[0] for ln in r.stderr.splitlines() if "import time:" in ln}
    assert not loaded & {"torch", "numpy", "pufferlib"}


def test_the_probe_reports_cumulative_steps_and_phase_seconds(monkeypatch):
    import importlib

    import perfkit.probe as probe

    r, w = os.pipe()
    monkeypatch.setenv("PERFKIT_PROBE_FD", str(w))
    try:
        importlib.reload(probe)
        assert probe.active()
        probe.steps(10)
        with probe.phase("env"):
            pass
        probe.steps(5)
        probe.flush()
        lines = os.read(r, 65536).decode().splitlines()
        last = json.loads(lines[-1])
        assert last["steps"] == 15 and set(last["phases"]) == {"env"} and last["phases"]["env"] >= 0
    finally:
        monkeypatch.delenv("PERFKIT_PROBE_FD")
        importlib.reload(probe)
        os.close(r)
        os.close(w)
    assert not probe.active()


def test_probe_reports_replace_the_regex_and_carry_phases():
    p = _progress("steps")
    p.feed(0.0, "steps: 999999")  # before the probe spoke: dropped once it does
    for i in range(31):
        p.feed_probe(i * 0.1, 100 * i, {"rollout": 0.07 * i, "learn": 0.03 * i})
        p.feed(i * 0.1, "steps: 5")  # the regex no longer counts
    w = p.windows(warmup_s=1.0, min_window_s=1.0)
    assert [x.agent_steps for x in w] == [1000, 1000, 1000]
    assert w[1].phases == pytest.approx({"rollout": 0.7, "learn": 0.3})


@pytest.mark.slow
def test_a_probed_trainer_needs_no_regex_and_shows_its_phases(tmp_path):
    probed = f"{sys.executable} {Path(__file__).parent / 'trainers' / 'probed.py'}"
    r, out = _compare(tmp_path, "--cmd", f"train={probed}", "--vary", "env:COST_US=0,50", "--trials", "1",
                      "--seconds", "2", "--warmup-seconds", "0.5", "--reruns", "0",
                      env={"PYTHONPATH": str(Path(__file__).parent.parent)})
    assert r.returncode == 0, r.stderr[-3000:]
    t = json.loads((out / "sps.json").read_text())["trials"]["env:COST_US=50"][0]
    assert t["sps"] > 0 and set(t["phases"]) == {"rollout", "learn"}
    assert t["phases"]["rollout"] > t["phases"]["learn"]
    assert "rollout" in r.stdout and "## Where the time goes" in r.stdout
