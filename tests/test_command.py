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
    ('{"SPS": 11935.9, "agent_steps": 9216, "uptime": 0.78, "epoch": 18}', 9216),  # PuffeRL's logs as JSON
    ("{'SPS': 11935.9, 'agent_steps': 12_288, 'epoch': 24}", 12_288),  # ... as a Python dict
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
    (["--vary", "wrapper=none,getattr", "--mode", "interleave"], "--mode interleave runs --cmd commands"),
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
                                  "--seconds", "7", "--warmup-seconds", "3", "--trials", "4", "--mode", "process",
                                  "--out", str(tmp_path / "o")])
    assert isinstance(r.exception, Reached), r.output
    assert seen["labels"] == ["a", "b"] and seen["rule"].rounds == 4
    assert (seen["runner"].seconds, seen["runner"].warmup_seconds, seen["runner"].progress) == (7, 3, "steps")


def test_commands_run_in_turns_by_default(tmp_path, monkeypatch):
    import perfkit.commands.compare as compare_cmd

    seen = {}

    class Reached(Exception):
        pass

    def fake_run(variants, rule, run_dir, how, seconds, *a, **k):
        seen.update(labels=[v.label for v in variants], how=how, seconds=seconds, rule=rule)
        raise Reached

    monkeypatch.setattr(compare_cmd, "run_interleaved", fake_run)
    r = CliRunner().invoke(main, ["compare", "--cmd", "a=ls", "--cmd", "b=ls -l", "--block-seconds", "0.5",
                                  "--precision", "0.01", "--max-minutes", "2", "--out", str(tmp_path / "o")])
    assert isinstance(r.exception, Reached), r.output
    assert seen["labels"] == ["a", "b"] and seen["how"].block_seconds == 0.5
    assert (seen["rule"].precision, seen["rule"].max_seconds) == (0.01, 120)


# -- running commands (real processes; short) -----------------------------------------------------

def _compare(tmp_path, *argv, env=None):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "perfkit", "compare", *argv, "--out", str(out)], capture_output=True,
                       text=True, timeout=300, env={**os.environ, **(env or {})})
    return r, out


@pytest.mark.slow
def test_a_hidden_cost_behind_an_environment_variable_is_measured(tmp_path):
    r, out = _compare(tmp_path, "--cmd", f"train={CMD}", "--vary", "env:COST_US=0,100", "--trials", "2",
                      "--seconds", "2", "--warmup-seconds", "0.5", "--metric", "episodic_return", "--mode", "process")
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
                      "1", "--warmup-seconds", "0.2", "--start-timeout", "2", "--reruns", "0", "--mode", "process")
    assert r.returncode == 1
    silent = json.loads((out / "sps.json").read_text())["trials"]["env:SILENT=1"][0]
    assert "no line matched --progress 'auto' within 2 s" in silent["error"]
    assert "starting up" in silent["error"]  # the last thing it printed


@pytest.mark.slow
def test_a_command_that_exits_early_is_recorded_with_its_status(tmp_path):
    r, out = _compare(tmp_path, "--cmd", f"train={CMD}", "--vary", "env:EXIT_AFTER=0,1", "--trials", "1",
                      "--seconds", "30", "--warmup-seconds", "0.2", "--reruns", "0", "--mode", "process")
    assert r.returncode == 1
    early = json.loads((out / "sps.json").read_text())["trials"]["env:EXIT_AFTER=1"][0]
    assert early["exit_status"] == 3 and "exited 3 before its time was up" in early["error"]
    assert early["windows"]  # what it measured before it exited is kept


@pytest.mark.slow
def test_ctrl_c_stops_the_command_leaves_nothing_running_and_prints_the_table(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "perfkit", "compare", "--cmd", f"train={CMD}", "--vary",
                             "env:COST_US=0,1", "--trials", "3", "--seconds", "60", "--warmup-seconds", "0.2",
                             "--mode", "process", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
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
                      "--seconds", "2", "--warmup-seconds", "0.5", "--reruns", "0", "--mode", "process",
                      env={"PYTHONPATH": str(Path(__file__).parent.parent)})
    assert r.returncode == 0, r.stderr[-3000:]
    t = json.loads((out / "sps.json").read_text())["trials"]["env:COST_US=50"][0]
    assert t["sps"] > 0 and set(t["phases"]) == {"rollout", "learn"}
    assert t["phases"]["rollout"] > t["phases"]["learn"]
    assert "rollout" in r.stdout and "## Where the time goes" in r.stdout


# -- commands in turns (--mode interleave, the default) ----------------------------------------------

def _running(marker: str) -> bool:
    return marker in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout


@pytest.mark.slow
def test_commands_in_turns_pair_their_blocks_and_see_a_hidden_cost(tmp_path):
    # 2 x 6 s per command in blocks of 0.5 s: batch means of 6 rounds (3 s each), three or more of them
    r, out = _compare(tmp_path, "--cmd", f"train={CMD}", "--vary", "env:COST_US=0,100", "--trials", "2",
                      "--seconds", "6", "--block-seconds", "0.5", "--warmup-seconds", "0.3",
                      "--metric", "episodic_return")
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads((out / "sps.json").read_text())
    assert data["mode"] == "interleave"
    blocks = data["blocks"][data["warmup_rounds"]:]
    assert len(blocks) >= 3
    assert all(b["sps"]["env:COST_US=0"] > 0 and b["sps"]["env:COST_US=100"] > 0 for b in blocks)
    # 100 µs per step on top of a few µs: several times slower in every pair, whatever the machine does
    ratios = [b["sps"]["env:COST_US=100"] / b["sps"]["env:COST_US=0"] for b in blocks]
    assert sorted(ratios)[len(ratios) // 2] < 0.5
    t = data["trials"]["env:COST_US=100"][0]
    assert t["error"] is None and "episodic_return" in t["learning"]
    assert (out / "trials" / "env_COST_US=100" / "trial-0.log").read_text().startswith("starting up")
    assert "blocks" in r.stdout and "slower" in r.stdout
    assert not _running(str(TRAINER))


PUFFER = Path(__file__).resolve().parent.parent / "bench" / "userenvs" / "puffer_trainer.py"


@pytest.mark.slow
def test_pufferlibs_own_trainer_is_read_by_the_puffer_recogniser(tmp_path):
    # PuffeRL, unmodified, from a user's short script whose logger prints its log dicts; the env
    # wrapper's 200 µs per step is more than a step takes here (about 80 µs): far slower in every pair
    pythonpath = os.pathsep.join([str(PUFFER.parent), os.environ.get("PYTHONPATH", "")])
    r, out = _compare(tmp_path, "--cmd", f"puffer={sys.executable} {PUFFER} --quiet-dashboard --data-dir "
                      f"{tmp_path / 'exp'}", "--vary", "env:HIDDEN_COST_US=0,200", "--progress", "puffer",
                      "--trials", "2", "--seconds", "6", "--block-seconds", "0.5", "--warmup-seconds", "1",
                      env={"PYTHONPATH": pythonpath})
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads((out / "sps.json").read_text())
    blocks = data["blocks"][data["warmup_rounds"]:]
    assert blocks and all(b["sps"]["env:HIDDEN_COST_US=200"] > 0 for b in blocks), r.stdout + r.stderr[-2000:]
    ratios = sorted(b["sps"]["env:HIDDEN_COST_US=200"] / b["sps"]["env:HIDDEN_COST_US=0"] for b in blocks)
    assert ratios[len(ratios) // 2] < 0.8, (ratios, r.stdout)
    assert '"agent_steps"' in (out / "trials" / "env_HIDDEN_COST_US=0" / "trial-0.log").read_text()
    assert not _running(str(PUFFER))


@pytest.mark.slow
def test_in_turns_a_command_that_exits_is_named_and_the_others_are_stopped(tmp_path):
    r, out = _compare(tmp_path, "--cmd", f"train={CMD}", "--vary", "env:EXIT_AFTER=0,2", "--seconds", "30",
                      "--block-seconds", "0.3", "--warmup-seconds", "0.3")
    assert r.returncode == 1
    data = json.loads((out / "sps.json").read_text())
    early = data["trials"]["env:EXIT_AFTER=2"][0]
    assert "the command exited (3) before the compare ended" in early["error"]
    assert data["stopping"]["reason"] == "a variant failed"
    assert not _running(str(TRAINER))


@pytest.mark.slow
def test_in_turns_a_command_that_prints_no_progress_fails_at_the_start(tmp_path):
    r, out = _compare(tmp_path, "--cmd", f"train={CMD}", "--vary", "env:SILENT=0,1", "--seconds", "5",
                      "--warmup-seconds", "0.2", "--start-timeout", "2")
    assert r.returncode == 1
    silent = json.loads((out / "sps.json").read_text())["trials"]["env:SILENT=1"][0]
    assert "no line matched --progress 'auto' within 2 s" in silent["error"] and "starting up" in silent["error"]
    assert not _running(str(TRAINER))


@pytest.mark.slow
def test_in_turns_ctrl_c_stops_every_command_even_a_paused_one(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "perfkit", "compare", "--cmd", f"train={CMD}", "--vary",
                             "env:COST_US=0,1", "--seconds", "600", "--block-seconds", "0.3",
                             "--warmup-seconds", "0.2", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "sps.json").exists():
        time.sleep(0.2)  # wait for an event (the first rounds saved), not for a clock
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert "| env:COST_US=0" in stdout and "blocks" in stdout
    assert not _running(str(TRAINER))


# -- git revisions (--repo, --rev) ----------------------------------------------------------------

TRAIN_AT_REV = '''import time
COST = {cost}
print("starting up", flush=True)
step = 0
while True:
    for _ in range(200):
        t = time.perf_counter()
        while time.perf_counter() - t < COST:
            pass
        step += 1
    print(f"global_step={{step}}", flush=True)
'''


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)

    def git(*args):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                       env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                            "GIT_COMMITTER_EMAIL": "t@t"})

    git("init", "-q")
    for k, cost in enumerate((0.0, 100e-6)):
        (repo / "sub" / "train.py").write_text(TRAIN_AT_REV.format(cost=cost))
        git("add", "-A")
        git("commit", "-q", "-m", f"release {k}")
    git("tag", "good", "HEAD~1")
    return repo


@pytest.mark.parametrize("argv,message", [
    (["--rev", "good", "--rev", "nosuchrev"], "--rev 'nosuchrev' is not a revision of"),
    (["--rev", "good", "--rev", "good"], "--rev repeats: good"),
])
def test_bad_revisions_are_exit_2_before_any_trial(tmp_path, argv, message, monkeypatch):
    repo = _repo(tmp_path)
    monkeypatch.chdir(repo)
    r = CliRunner().invoke(main, ["compare", "--cmd", "t=python sub/train.py", "--repo", str(repo), *argv,
                                  "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    assert message in r.output


def test_rev_needs_a_repository_and_a_command(tmp_path):
    r = CliRunner().invoke(main, ["compare", "--cmd", "t=ls", "--repo", str(tmp_path), "--rev", "a", "--rev", "b"])
    assert r.exit_code == 2 and "is not a git repository" in r.output
    r = CliRunner().invoke(main, ["compare", "--vary", "wrapper=none,getattr", "--rev", "HEAD"])
    assert r.exit_code == 2 and "--rev runs your command (--cmd)" in r.output


@pytest.mark.slow
def test_revisions_run_in_worktrees_from_the_same_subfolder(tmp_path):
    repo = _repo(tmp_path)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "perfkit", "compare", "--cmd", "t=python train.py", "--rev", "good",
                        "--rev", "HEAD", "--trials", "2", "--seconds", "2", "--block-seconds", "0.3",
                        "--warmup-seconds", "0.3", "--out", str(out)], capture_output=True, text=True, timeout=300,
                       cwd=repo / "sub")
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads((out / "sps.json").read_text())
    assert data["variants"] == ["rev=good", "rev=HEAD"]
    head = data["scenarios"]["rev=HEAD"]
    assert head["rev"] == "HEAD" and len(head["sha"]) == 40 and head["cwd"].endswith("/sub")
    blocks = data["blocks"][data["warmup_rounds"]:]
    # HEAD's train.py burns 100 µs per step, good's none: slower in most pairs, whatever the machine does
    slower = sum(b["sps"]["rev=HEAD"] < b["sps"]["rev=good"] for b in blocks)
    assert slower > len(blocks) / 2
    assert not (out / "worktrees").exists()  # removed at the end
    listed = subprocess.run(["git", "-C", str(repo), "worktree", "list"], capture_output=True, text=True).stdout
    assert len(listed.strip().splitlines()) == 1


@pytest.mark.slow
def test_explain_cmd_names_the_function_a_hidden_cost_lives_in(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "perfkit", "explain", "--cmd", f"train={CMD}", "--vary",
                        "env:COST_US=0,40", "--block-seconds", "0.5", "--warmup-seconds", "0.3", "--max-minutes", "0.5",
                        "--min-seconds", "5", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    record = json.loads((out / "explain.json").read_text())
    causes = record["explanations"][0]["causes"]
    # 40 µs per step against a few µs of work: most of B's time, whatever the machine is doing
    assert causes and causes[0]["frame"].startswith("_hidden_cost")
    assert "_hidden_cost" in r.stdout
    assert not _running(str(TRAINER))


# -- profile --cmd --------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,message", [
    (["--with", "torch", "--cmd", "t=ls"], "--with torch profiles the built-in trainer"),
    (["--with", "pyspy", "--cmd", "a=ls", "--cmd", "b=ls"], "profile --cmd takes one command (got 2)"),
    (["--with", "pyspy", "--cmd", "t=ls", "--wrapper", "none"], "is for the built-in trainer"),
    (["--with", "pyspy", "--cmd", "t=nosuchprogram_xyz"], "'nosuchprogram_xyz' is not a program on PATH"),
    (["--with", "pyspy", "--cmd", "t=ls", "--progress", "x("], "is not a regular expression"),
])
def test_profile_cmd_bad_input_is_exit_2(argv, message, tmp_path):
    r = CliRunner().invoke(main, ["profile", *argv, "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_profile_cmd_runs_the_command_with_and_without_pyspy(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "perfkit", "profile", "--with", "pyspy", "--cmd", f"train={CMD}",
                        "--repeats", "1", "--seconds", "2", "--warmup-seconds", "0.3", "--out", str(out)],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "COST_US": "20"})
    assert r.returncode == 0, r.stderr[-3000:]
    record = json.loads((out / "profile.json").read_text())
    assert [t["tool"] for t in record["trials"]] == ["none", "pyspy"]
    assert all(t["status"] == "ok" and t["sps"] > 0 for t in record["trials"])
    folded = (out / "pyspy" / "pyspy.folded").read_text()
    assert "_hidden_cost" in folded  # the command's own frames, sampled through its process
    assert (out / "pyspy" / "pyspy.svg").exists()
    assert not _running(str(TRAINER))


# -- bisect --cmd -----------------------------------------------------------------------------------

def _history(tmp_path: Path, costs) -> Path:
    repo = tmp_path / "hist"
    (repo / "sub").mkdir(parents=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "-C", str(repo), "init", "-q"], check=True, env=env)
    for k, cost in enumerate(costs):
        (repo / "sub" / "train.py").write_text(TRAIN_AT_REV.format(cost=cost))
        (repo / "sub" / "notes.txt").write_text(f"release {k}\n")
        subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True, env=env)
        subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", f"release {k}"], check=True, env=env)
    return repo


def test_bisect_cmd_bad_input_is_exit_2(tmp_path):
    repo = _history(tmp_path, [0.0, 0.0])
    for argv, message in ((["--metric", "hearts"], "bisect --cmd measures SPS"),
                          (["--progress", "x("], "is not a regular expression"),
                          (["--wrapper", "none"], "the built-in trainer's options do not apply to --cmd")):
        r = CliRunner().invoke(main, ["bisect", "--repo", str(repo), "--good", "HEAD~1", "--bad", "HEAD", "--cmd",
                                      "python train.py", *argv, "--out", str(tmp_path / "o")])
        assert r.exit_code == 2, r.output
        assert message in r.output
    r = CliRunner().invoke(main, ["bisect", "--repo", str(repo), "--good", "nosuch", "--bad", "HEAD", "--cmd",
                                  "python train.py", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "nosuch" in r.output


@pytest.mark.slow
def test_bisect_cmd_finds_the_commit_that_slowed_the_users_trainer(tmp_path):
    repo = _history(tmp_path, [0.0, 0.0, 100e-6, 100e-6, 100e-6])
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "perfkit", "bisect", "--repo", str(repo), "--good", "HEAD~4", "--bad",
                        "HEAD", "--cmd", "python train.py", "--warmup-seconds", "0.3", "--block-seconds", "0.3",
                        "--max-minutes", "4", "--out", str(out)], capture_output=True, text=True, timeout=400,
                       cwd=repo / "sub")
    assert r.returncode == 0, r.stderr[-3000:]
    # 100 µs per step against a few µs: the regression is several-fold, whatever the machine does
    assert "release 2" in r.stdout.split("\n\n")[0], r.stdout[:2000]
    assert not (out / "worktrees").exists()
    assert not _running("train.py")


# -- the windows of commands run in turns (fake clock, no process) ------------------------------------

class _FakeRun:
    """Stands in for a command's process: lines queued with their arrival times, no signals."""

    def __init__(self, progress):
        import queue

        self.lines, self.progress, self.proc, self.recent, self.exited_early = queue.Queue(), progress, None, [], False

    def _take(self, item, until=None):
        t, line = item
        if until is None or t <= until:
            self.progress.feed(t, line)


def test_blocks_tile_the_run_so_no_step_or_second_is_lost():
    from perfkit.engine.command import PausedCommand

    now = [0.0]

    def clock():
        return now[0]

    cmd = plan_commands([f"t={CMD}"], ["env:X=1,2"])[0]
    pc = PausedCommand(cmd, Path("unused.log"), "cleanrl", (), block_seconds=1.0, start_timeout=30.0, clock=clock,
                       settle_s=0.0)
    pc.run = _FakeRun(_progress("cleanrl"))
    # the warm-up ended with a count of 1000 at t=9.8; paused at t=10.0
    pc.run.progress.feed(9.8, "global_step=1000")
    pc._mark, pc._carry = (9.8, 1000), 0.2
    queued = pc._next
    block_end = [0.0]

    def next_item(timeout):  # what arrived, else the clock moves on (at most to the block's end)
        item = queued(0.0)
        if not item:
            now[0] = min(now[0] + 0.25, block_end[0])
        return item

    pc._next = next_item
    # block 1 runs t=20..21 (its counts at 20.3 and 20.9); block 2 runs t=30..31 (a count at 30.5)
    for t0, counts in ((20.0, [(20.3, 1600), (20.9, 2800)]), (30.0, [(30.5, 3900)])):
        now[0], block_end[0] = t0, t0 + 1.0
        for t, n in counts:
            pc.run.lines.put((t, f"global_step={n}"))
        w = pc.run_epoch()
        if t0 == 20.0:
            # from the last count before it (1000 at 9.8, 0.2 s of running after it) to 2800 at 20.9
            assert (w.agent_steps, w.seconds) == (1800, pytest.approx(0.2 + 0.9))
        else:
            # from 2800 (0.1 s of running after it in block 1) to 3900 at 30.5
            assert (w.agent_steps, w.seconds) == (1100, pytest.approx(0.1 + 0.5))
    assert sum(b.agent_steps for b in pc.blocks) == 3900 - 1000
