"""`perfkit bisect` against what users' code and users' hands do: an env that prints (at import, in
its factory, from C) cannot break the trainer process's answers, and Ctrl-C pressed again and
again (or SIGTERM, then Ctrl-C) cannot cut the cleanup short: exit 130, the record on disk says
interrupted, no worktree is left."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.bisect_power import FORAGE, _git
from perfkit.cli.main import main
from perfkit.commands.bisection.git import commit_range
from perfkit.commands.bisection.signals import Interrupts
from perfkit.commands.bisection.trainers import CommitBroken, TrainerProcess
from perfkit.records.bisection import BisectRecord
from tests.test_bisect import FAST, LONG, STARTED, WAIT_S, _repo, _state, start_bisect

TALKATIVE = '''"""A user's env that talks, as code being debugged does."""

import os

from forage_core import Forage

print("userenv: importing release {release}")
os.write(1, b"userenv: straight to fd 1, as C code writes\\n")

RELEASE = {release}
COST_US = {cost}


def make(buf=None, seed=0):
    print("userenv: make, release {release}")
    return Forage(buf=buf, seed=seed, cost_us=COST_US)
'''


def talkative_repo(path: Path, n: int, costs: dict[int, float]) -> list[str]:
    """As bench.bisect_power.make_repo, but every commit's env prints at import and in make()."""
    path.mkdir(parents=True)
    _git(path, "init", "-q", "-b", "main")
    shutil.copy(FORAGE, path / "forage_core.py")
    shas, cost = [], 0.0
    for i in range(n + 1):
        cost = costs.get(i, cost)
        (path / "userenv.py").write_text(TALKATIVE.format(release=i, cost=cost))
        _git(path, "add", "-A")
        _git(path, "commit", "-q", "-m", f"release {i}")
        shas.append(_git(path, "rev-parse", "HEAD").strip())
    return shas


def _spec() -> dict:
    from perfkit.core.scenario import Scenario

    values = dict(Scenario.build({"env": "userenv:make", "wrapper": "none"}).values)
    return {"values": values, "ppo": {"num_steps": 16}, "num_envs": 1, "seed": 3}


# -- stdout is not the protocol

@pytest.mark.slow
def test_an_env_that_prints_is_answered_in_json_and_its_prints_go_to_the_log(tmp_path):
    repo = tmp_path / "repo"
    talkative_repo(repo, 0, {})
    log = tmp_path / "trainers.log"
    trainers = TrainerProcess(_spec(), log)
    try:
        got = trainers.ask(cmd="load", key="k", paths=[str(repo)])
        assert got["ready"] and got["module"] == str(repo / "userenv.py")
        assert trainers.ask(cmd="block", key="k", seconds=0.0)["epochs"] == 1
        assert trainers.ask(cmd="drop", key="k") == {"dropped": "k"}
    finally:
        trainers.close()
    text = log.read_text()
    for said in ("userenv: importing release 0", "userenv: straight to fd 1", "userenv: make, release 0"):
        assert said in text, text


@pytest.mark.slow
def test_a_line_that_is_not_an_answer_is_a_broken_commit_naming_it(tmp_path):
    class Chatty(TrainerProcess):  # a process that answers its first command with a stray print
        def _start(self):
            import subprocess

            self._err = open(self.log, "a")  # noqa: SIM115 -- closed in close()
            script = "import sys, time; sys.stdin.readline(); print('loading weights: 3/7', flush=True); time.sleep(60)"
            self.proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self._err, text=True, start_new_session=True)

    trainers = Chatty({}, tmp_path / "log")
    with pytest.raises(CommitBroken, match=r"answered load with a line that is not a JSON answer: "
                                           r"'loading weights: 3/7'"):
        trainers.ask(cmd="load", key="k", paths=[])
    assert trainers.proc is None  # out of step: ended, and started afresh at the next command


@pytest.mark.slow
def test_bisect_of_an_env_that_prints_finds_its_commit(tmp_path):
    repo = tmp_path / "repo"
    shas = talkative_repo(repo, 4, {0: 0.0, 3: 400.0})
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["bisect", "--repo", str(repo), "--good", shas[0], "--bad", shas[-1],
                                  "--env", "userenv:make", "--out", str(out), "--force", *FAST])
    assert r.exit_code == 0, r.output
    rec = BisectRecord.load(out / "bisect.json")
    assert rec.outcome["outcome"] == "found" and rec.outcome["change_points"] == [3], rec.outcome
    assert "userenv: importing release 3" in (out / "logs" / "trainers.log").read_text()
    assert [c.sha for c in commit_range(repo, shas[0], shas[-1])] == shas


# -- signals

def test_only_the_first_signal_interrupts_and_the_handlers_come_back():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with Interrupts() as stop:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at once; this is never reached in full
        os.kill(os.getpid(), signal.SIGINT)  # the cleanup: counted, not raised
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert stop.received == 3
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    with Interrupts() as stop:
        stop.hold()  # held from the start: nothing raised at all
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        assert stop.received == 1


SEQUENCES = {
    "ctrl-c twice, 0.5 s apart": [(0.0, signal.SIGINT), (0.5, signal.SIGINT)],
    "sigterm, then ctrl-c and sigterm every 50 ms until it exits": [(0.0, signal.SIGTERM)]
    + [(0.05, signal.SIGINT), (0.05, signal.SIGTERM)] * 200,
}


@pytest.mark.slow
@pytest.mark.parametrize("sequence", list(SEQUENCES.values()), ids=list(SEQUENCES))
def test_more_signals_cannot_cut_the_cleanup_short(tmp_path, sequence):
    repo, shas = _repo(tmp_path, n=8)
    before = _state(repo)
    out = tmp_path / "out"
    p, err = start_bisect(repo, shas, out, *LONG)
    try:
        assert err.wait_for(STARTED), err.text()  # the ends are up: worktrees and a trainer to clean up
        assert (out / "worktrees").is_dir()
        for delay, sig in sequence:
            time.sleep(delay)
            if p.poll() is not None:
                break
            p.send_signal(sig)
        p.wait(timeout=WAIT_S)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err.text()
    assert "Aborted" not in err.text() and "Traceback" not in err.text(), err.text()
    rec = json.loads((out / "bisect.json").read_text())
    assert rec["interrupted"] and rec["outcome"]["outcome"] == "interrupted"
    assert not (out / "worktrees").exists()
    assert _state(repo) == before
