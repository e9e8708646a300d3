"""perfkit learn --cmd: a user's own training command under the seeds-and-intervals verdict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from perfkit.cli.main import main
from perfkit.commands.learning import CommandLearning, LearnJob, _trial_job
from perfkit.core.command import plan_commands
from perfkit.records.learning import LearnResult

LEARNER = Path(__file__).parent / "trainers" / "learner.py"
CMD = f"{sys.executable} {LEARNER} --seed {{seed}}"


def _job(cmds, paired=True) -> LearnJob:
    variants = plan_commands(cmds, [])
    return LearnJob(variants, steps=20_000, seeds=3, max_seeds=3, metrics=["episodic_return"], paired=paired,
                    command=CommandLearning("cleanrl", ("episodic_return",), 30.0))


def test_each_seed_of_a_command_gets_its_seed_in_the_text_and_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")  # the user's own setting is kept
    job = _job([f"a={CMD}", f"b={CMD} --lr 0.5"])
    job.parallel = 2
    tj = _trial_job(job, job.variants[1], 1, 4, tmp_path)
    assert tj.module == "perfkit.engine.command"
    assert tj.spec["command"]["command"].endswith("--seed 4 --lr 0.5")
    assert tj.spec["command"]["env"]["PERFKIT_SEED"] == "4"
    assert tj.spec["command"]["env"]["OMP_NUM_THREADS"] == str(job.cores_per_trial)  # its share of the cores
    assert "MKL_NUM_THREADS" not in tj.spec["command"]["env"]
    assert (tj.spec["steps"], tj.spec["progress"], tj.spec["metrics"]) == (20_000, "cleanrl", ["episodic_return"])
    assert tj.out == tmp_path / "trials" / "b" / "seed-4.json"
    # paired: seed 4 of every variant is the same trial seed; unpaired: each variant its own
    assert _trial_job(job, job.variants[0], 0, 4, tmp_path).spec["seed"] == tj.spec["seed"]
    unpaired = _job([f"a={CMD}", f"b={CMD}"], paired=False)
    texts = {_trial_job(unpaired, v, i, 4, tmp_path).spec["command"]["command"] for i, v in enumerate(unpaired.variants)}
    assert texts == {f"{sys.executable} {LEARNER} --seed 4", f"{sys.executable} {LEARNER} --seed 100004"}


@pytest.mark.parametrize("argv,message", [
    (["--progress", "cleanrl"], "--progress reads your own command's output"),
    (["--cmd", f"a={CMD}"], "nothing to compare"),
    (["--cmd", f"a={CMD}", "--vary", "preset=make_arena"], "is an axis of the built-in trainer"),
    (["--cmd", f"a={CMD}", "--num-envs", "4"], "--num-envs is for the built-in trainer"),
    (["--cmd", f"a={CMD}", "--metric", "r=(unclosed"], "is not a regular expression"),
    (["--cmd", "a=nosuchprogram_xyz --seed {seed}", "--cmd", f"b={CMD}"], "'nosuchprogram_xyz' is not a program on PATH"),
    (["--cmd", f"a={CMD}", "--wrapper", "none"], "do not apply to it"),
])
def test_bad_command_input_is_exit_2_before_any_seed(argv, message, tmp_path):
    r = CliRunner().invoke(main, ["learn", *argv, "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert not (tmp_path / "o").exists()


def _learn(tmp_path, *argv):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "perfkit", "learn", *argv, "--out", str(out)], capture_output=True,
                       text=True, timeout=300, check=False)
    return r, out


@pytest.mark.slow
def test_a_command_that_learns_slower_is_called_learns_worse(tmp_path):
    r, out = _learn(tmp_path, "--cmd", f"base={CMD}", "--cmd", f"slow={CMD} --lr 0.15", "--steps", "40000",
                    "--seeds", "4", "--progress", "cleanrl", "--metric", "episodic_return", "--parallel", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    result = LearnResult.load(out / "learn.json")
    assert result.seeds == [1, 2, 3, 4]
    assert all(result.complete(t) for ts in result.trials.values() for t in ts)
    c = result.compare("slow", "episodic_return")
    assert c.verdict == "learns worse"
    assert c.difference.value < -20  # base ends near 100, slow near 26
    assert "learns worse" in r.stdout
    assert (out / "trials" / "slow" / "seed-3.log").read_text().startswith("learner: starting")
    spec = json.loads((out / "trials" / "slow" / "seed-3.spec.json").read_text())
    assert spec["command"]["command"].endswith("--seed 3 --lr 0.15")


@pytest.mark.slow
def test_a_command_that_ends_by_itself_counts_only_when_it_ran_its_steps(tmp_path):
    full = f"{CMD} --total-timesteps 20000"
    short = f"{CMD} --total-timesteps 5000"
    r, out = _learn(tmp_path, "--cmd", f"full={full}", "--cmd", f"short={short}", "--steps", "20000", "--seeds", "2",
                    "--progress", "cleanrl")
    assert r.returncode == 1, r.stderr[-3000:]  # a seed failed
    result = LearnResult.load(out / "learn.json")
    assert all(result.complete(t) for t in result.trials["full"])
    errors = [t.error for t in result.trials["short"]]
    assert all("ended by itself at step 5,000, short of --steps 20,000" in e for e in errors)


@pytest.mark.slow
def test_a_command_that_ends_a_little_short_of_the_steps_finished_its_own_run(tmp_path):
    # CleanRL's last global_step is a little under its --total-timesteps: 97.5% counts
    r, out = _learn(tmp_path, "--cmd", f"a={CMD} --total-timesteps 19500", "--cmd", f"b={CMD} --total-timesteps 19500",
                    "--steps", "20000", "--seeds", "2", "--progress", "cleanrl")
    assert r.returncode == 0, r.stderr[-3000:]
    result = LearnResult.load(out / "learn.json")
    assert all(result.complete(t) and t.exit_status == 0 and t.agent_steps == 19500
               for ts in result.trials.values() for t in ts)
    assert result.seeds_done("b") == 2


@pytest.mark.slow
def test_a_counter_that_starts_past_the_steps_is_refused_naming_it(tmp_path):
    r, out = _learn(tmp_path, "--cmd", f"a={CMD} --first-step 50000", "--cmd", f"b={CMD}", "--steps", "20000",
                    "--seeds", "2", "--progress", "cleanrl")
    assert r.returncode == 1
    result = LearnResult.load(out / "learn.json")
    assert all("the step counter started at 50,500, at or past --steps 20,000" in t.error for t in result.trials["a"])


@pytest.mark.slow
def test_a_metric_the_command_never_prints_fails_the_seed_naming_it(tmp_path):
    r, out = _learn(tmp_path, "--cmd", f"a={CMD}", "--cmd", f"b={CMD}", "--steps", "10000", "--seeds", "2",
                    "--metric", "score=score=([0-9.]+)")
    assert r.returncode == 1
    result = LearnResult.load(out / "learn.json")
    assert all("--metric score: no value in the last 20% of the seed's" in t.error and "global_step=" in t.error
               for ts in result.trials.values() for t in ts)


# -- a seed's windows (pure: timestamps are given) ------------------------------------------------

def test_a_seeds_windows_start_with_the_command_and_keep_every_value_it_printed():
    from perfkit.core.progress import Progress, compile_metric, compile_progress

    prog = Progress(compile_progress("cleanrl"), dict([compile_metric("episodic_return")]))
    prog.feed(0.5, "episodic_return=1.0")  # before the first count
    for i, t in enumerate((1.0, 2.0, 3.0, 4.0)):
        prog.feed(t, f"global_step={(i + 1) * 100}, episodic_return={10.0 * (i + 1)}")
    prog.feed(4.5, "eval done, episodic_return=99.0")  # after the last count, before the stop
    windows = prog.windows_by_steps(200, start=(0.0, 0), until=5.0)
    assert [w.agent_steps for w in windows] == [200, 200]
    assert windows[0].learning == {"episodic_return": pytest.approx((1 + 10 + 20) / 3), "episodes": 3.0}
    assert windows[1].learning == {"episodic_return": pytest.approx((30 + 40 + 99) / 3), "episodes": 3.0}
    assert windows[-1].seconds == pytest.approx(3.0)  # from the count at 2.0 s to the stop at 5.0 s
