"""`perfkit bisect`: the search on recorded verdict sequences, the sequential test on seeded
evidence, bad input, and end to end on tiny generated repositories (a large cost: seconds)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench.bisect_power import make_repo
from perfkit.cli.main import main
from perfkit.commands.bisection.evidence import ALPHA, Evidence, Noise, classify, side
from perfkit.commands.bisection.git import BisectError, Worktrees, commit_range
from perfkit.commands.bisection.search import Search, conclude
from perfkit.records.bisection import BisectRecord, Step
from perfkit.render.bisection import render_bisect

ROOT = Path(__file__).resolve().parent.parent


def oracle(levels: dict[int, str]):
    """Verdicts as a recorded run gave them: index -> verdict; anything not listed by its side of k."""
    return levels.get


def run_search(n: int, verdict_of, lo: int = 0) -> Search:
    s = Search(lo, n)
    while not s.done:
        i = s.next()
        s.record(i, verdict_of(i))
    return s


# -- the search, on recorded verdict sequences

def test_a_single_step_is_found_in_log2_n_tests():
    for k in (1, 2, 31, 42, 63, 64):
        s = run_search(64, lambda i, k=k: "bad" if i >= k else "good")
        assert s.hi == k and len(s.verdicts) <= 6, k
        assert conclude(64, s) == {"outcome": "found", "change_points": [k]}


def test_the_first_midpoint_is_the_middle_and_a_skipped_one_gives_way_to_its_neighbour():
    s = Search(0, 64)
    assert s.next() == 32
    s.record(32, "skip")
    assert s.next() == 31  # nearest the midpoint; ties go to the older commit
    s.record(31, "unclear")
    assert s.next() == 33


def test_skipped_and_unclear_commits_next_to_the_culprit_give_a_range_not_a_guess():
    recorded = {40: "skip", 41: "unclear"}
    s = run_search(64, lambda i: recorded.get(i) or ("bad" if i >= 42 else "good"))
    assert conclude(64, s) == {"outcome": "range", "change_points": [], "candidates": [40, 41, 42],
                               "why": "commits between the last good-like and the first bad-like could not be "
                                      "classified"}


def test_a_skip_away_from_the_culprit_does_not_matter():
    s = run_search(64, lambda i: "skip" if i == 32 else ("bad" if i >= 42 else "good"))
    assert conclude(64, s)["change_points"] == [42]


def test_non_monotonic_history_reports_both_change_points():
    """k = 20 costs 10%, k + 10 = 30 gives half back: levels 0, 2, 1 (bad's level is 1)."""
    level = lambda i: 0 if i < 20 else (2 if i < 30 else 1)  # noqa: E731
    main_search = run_search(64, lambda i: {0: "good", 2: "beyond-bad", 1: "bad"}[level(i)])
    assert main_search.hi == 20 and main_search.verdicts[20] == "beyond-bad"
    # the second search reads each commit against the beyond commit's level: like it is "good"
    second = run_search(64, lambda i: "good" if level(i) == 2 else "bad", lo=20)
    assert conclude(64, main_search, second) == {"outcome": "two-changes", "change_points": [20, 30]}


def test_a_second_change_that_cannot_be_located_is_inconsistent_with_the_commits_involved():
    level = lambda i: 0 if i < 20 else (2 if i < 30 else 1)  # noqa: E731
    main_search = run_search(64, lambda i: {0: "good", 2: "beyond-bad", 1: "bad"}[level(i)])
    second = run_search(64, lambda i: "unclear" if i == 29 else ("good" if level(i) == 2 else "bad"), lo=20)
    got = conclude(64, main_search, second)
    assert got["outcome"] == "inconsistent" and got["change_points"] == [20] and got["candidates"] == [29, 30]


def test_a_commit_faster_than_good_is_inconsistent_evidence():
    s = run_search(64, lambda i: "beyond-good" if i == 32 else ("bad" if i >= 50 else "good"))
    got = conclude(64, s)
    assert got["outcome"] == "inconsistent" and got["change_points"] == [] and 32 in got["commits"]


# -- the sequential test, on seeded evidence

def _evidence(level: float, rounds: int, rng, d: float = -0.05, sigma: float = 0.045) -> Evidence:
    g = rng.normal(0, sigma, rounds)
    b = d + rng.normal(0, sigma, rounds)
    m = level * d + rng.normal(0, sigma, rounds)
    return Evidence(list(g), list(m), list(b))


def _decide(level: float, rng, noise=Noise(-0.05, 0.045), cap: int = 200) -> tuple[str | None, int]:
    ev = _evidence(level, cap, rng)
    for n in range(4, cap + 1):
        part = Evidence(ev.g[:n], ev.m[:n], ev.b[:n])
        v = classify(part, noise)
        if v is not None:
            return v, n
    return None, cap


def test_levels_0_1_and_2_are_told_apart_and_errors_stay_near_alpha_despite_looking_every_round():
    rng = np.random.default_rng(5)
    runs = {lvl: [_decide(lvl, rng) for _ in range(200)] for lvl in (0.0, 1.0, 2.0)}
    wrong = {lvl: sum(v not in want for v, _ in runs[lvl])
             for lvl, want in ((0.0, ("good",)), (1.0, ("bad",)), (2.0, ("beyond-bad",)))}
    assert wrong[0.0] <= 3 and wrong[1.0] <= 3 and wrong[2.0] <= 4, wrong  # 2% at most: ALPHA is 0.5% a test
    median_rounds = {lvl: float(np.median([n for _, n in runs[lvl]])) for lvl in runs}
    assert median_rounds[0.0] < 30 and median_rounds[1.0] < 40, median_rounds


def test_a_level_halfway_keeps_the_test_going_and_one_stalled_block_cannot_decide():
    noise = Noise(-0.05, 0.045)
    halfway = Evidence([0.0] * 6, [-0.025] * 6, [-0.05] * 6)
    assert side(halfway, noise, 0.0, 1.0) == 0
    stalled = Evidence([0.0] * 4, [0.0, 0.0, 0.0, -3.0], [-0.05] * 4)  # one block 20x slower
    assert side(stalled, noise, 0.0, 1.0) == 0
    assert ALPHA == 0.005


# -- bad input and the user's checkout

def _repo(tmp_path, n=8, costs=None, broken=()):
    repo = tmp_path / "repo"
    return repo, make_repo(repo, n, costs if costs is not None else {0: 0.0, 5: 400.0}, broken)


def _state(repo: Path) -> tuple[str, str]:
    status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True).stdout
    trees = subprocess.run(["git", "-C", str(repo), "worktree", "list"], capture_output=True, text=True).stdout
    return status, trees


def test_bad_revisions_and_repositories_are_usage_errors_naming_the_problem(tmp_path):
    repo, shas = _repo(tmp_path, n=3)
    cases = [
        ([str(tmp_path / "nowhere"), "a", "b"], "not a git repository"),
        ([str(repo), "nope", shas[-1]], "--good 'nope': unknown revision"),
        ([str(repo), shas[0], "v9"], "--bad 'v9': unknown revision"),
        ([str(repo), shas[1], shas[1]], "are the same commit"),
        ([str(repo), shas[2], shas[0]], "is not an ancestor of --bad"),
    ]
    for (where, good, bad), message in cases:
        with pytest.raises(BisectError, match=message):
            commit_range(where, good, bad)
        r = CliRunner().invoke(main, ["bisect", "--repo", where, "--good", good, "--bad", bad, "--env", "userenv:make",
                                      "--out", str(tmp_path / "out"), "--force"])
        assert r.exit_code == 2 and message.split("'")[0] in r.output, r.output
    r = CliRunner().invoke(main, ["bisect", "--repo", str(repo), "--good", shas[0], "--bad", shas[-1]])
    assert r.exit_code == 2 and "name your env as pkg.module:factory" in r.output
    assert [c.sha for c in commit_range(repo, shas[0], shas[-1])] == shas


def test_worktrees_leave_the_checkout_and_its_worktree_list_as_they_were(tmp_path):
    repo, shas = _repo(tmp_path, n=3)
    before = _state(repo)
    commits = commit_range(repo, shas[0], shas[-1])
    with Worktrees(repo, tmp_path / "run" / "worktrees") as wt:
        paths = [wt.add(c) for c in commits[:2]]
        assert all((p / "userenv.py").exists() for p in paths)
        assert "RELEASE = 0" in (paths[0] / "userenv.py").read_text()
        assert _state(repo) != before
    assert _state(repo) == before and not (tmp_path / "run" / "worktrees").exists()


@pytest.mark.slow
def test_an_env_failing_at_both_ends_is_a_usage_error(tmp_path):
    repo, shas = _repo(tmp_path, n=3)
    r = CliRunner().invoke(main, ["bisect", "--repo", str(repo), "--good", shas[0], "--bad", shas[-1],
                                  "--env", "nomodule:make", "--out", str(tmp_path / "out"), "--force"])
    assert r.exit_code == 2 and "the scenario fails at the good end" in r.output and "nomodule" in r.output
    assert _state(repo)[1].count("\n") == 1  # the main worktree only


# -- end to end

FAST = ["--num-envs", "1", "--ppo", "num_steps=16", "--block-seconds", "0.1"]
# A bisect that cannot end soon after it starts, however loaded the machine: the ends alone train
# for at least 12 rounds x 2 blocks x 0.3 s of wall time, then each step 6 rounds x 3 blocks.
LONG = ["--num-envs", "1", "--ppo", "num_steps=16", "--block-seconds", "0.3", "--max-minutes", "30",
        "--step-minutes", "10"]
STARTED = "measuring the ends"  # on stderr once both ends' worktrees and trainers are up
WAIT_S = 600  # upper bounds only, for a slow, loaded machine: every wait ends at its event


class Lines:
    """A process's stderr, read line by line in a thread: `wait_for(text)` returns when a line
    containing it arrives (an event, not a clock), False if the stream ends or `timeout` passes."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._new = threading.Condition()
        self._done = False
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._new:
                self.lines.append(line)
                self._new.notify_all()
        with self._new:
            self._done = True
            self._new.notify_all()

    def wait_for(self, text: str, timeout: float = WAIT_S) -> bool:
        with self._new:
            return self._new.wait_for(lambda: self._done or any(text in ln for ln in self.lines), timeout) and \
                any(text in ln for ln in self.lines)

    def text(self, timeout: float = 10) -> str:
        self._thread.join(timeout)
        with self._new:
            return "".join(self.lines)


def start_bisect(repo: Path, shas: list[str], out: Path, *args: str) -> tuple[subprocess.Popen, Lines]:
    """`perfkit bisect` in a process of its own, as a user runs it, its stderr read as it comes."""
    p = subprocess.Popen([sys.executable, "-m", "perfkit", "bisect", "--repo", str(repo), "--good", shas[0],
                          "--bad", shas[-1], "--env", "userenv:make", "--out", str(out), "--force", *args],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    return p, Lines(p.stderr)


@pytest.mark.slow
def test_bisect_finds_a_large_cost_and_skips_a_commit_that_does_not_import(tmp_path):
    repo, shas = _repo(tmp_path, n=8, costs={0: 0.0, 6: 400.0}, broken=(4,))
    before = _state(repo)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["bisect", "--repo", str(repo), "--good", shas[0], "--bad", shas[-1],
                                  "--env", "userenv:make", "--out", str(out), "--force", *FAST])
    assert r.exit_code == 0, r.output
    rec = BisectRecord.load(out / "bisect.json")
    assert rec.outcome["outcome"] == "found" and rec.outcome["change_points"] == [6]
    assert rec.commits[6]["sha"] == shas[6] and "userenv.py | 4 ++--" in rec.outcome["diffstat"][shas[6]]
    skipped = [s for s in rec.steps if s.verdict == "skip"]
    assert [s.index for s in skipped] == [4] and "Missing" in skipped[0].error
    assert len(rec.steps) <= 6
    first = next(ln for ln in r.output.splitlines() if ln.startswith("First bad commit"))
    assert first.startswith(f"First bad commit (SPS): {shas[6][:10]} 'release 6: reconcile the ledger every step' "
                            "(6/8);")
    assert _state(repo) == before
    again = CliRunner().invoke(main, ["report", str(out)])
    assert again.exit_code == 0 and again.output.splitlines()[0] == first


@pytest.mark.slow
def test_ctrl_c_leaves_the_checkout_as_it_was_and_the_record_on_disk(tmp_path):
    repo, shas = _repo(tmp_path, n=8)
    before = _state(repo)
    out = tmp_path / "out"
    p, err = start_bisect(repo, shas, out, *LONG)
    try:
        # The event, not a clock: both ends are up and training; the bisect has 20 s and more to go.
        assert err.wait_for(STARTED), err.text()
        assert (out / "worktrees").is_dir()
        p.send_signal(signal.SIGINT)
        p.wait(timeout=WAIT_S)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err.text()
    assert _state(repo) == before
    rec = json.loads((out / "bisect.json").read_text())
    assert rec["interrupted"] and rec["outcome"]["outcome"] == "interrupted"
    assert not (out / "worktrees").exists()


def test_the_record_renders_its_evidence_table_exactly():
    commits = [{"sha": f"{i:040x}", "subject": f"release {i}"} for i in range(5)]
    steps = [Step(2, commits[2]["sha"], "release 2", "main", "good", 0.02, (-0.1, 0.14), 0.999, (0.99, 1.008), 12, 9.0),
             Step(3, commits[3]["sha"], "release 3", "main", "bad", 0.97, (0.85, 1.09), 0.952, (0.94, 0.964), 9, 7.0)]
    rec = BisectRecord("/r", "userenv:make", "sps", commits, {}, {}, ends={"delta": -0.05, "ci": (-0.06, -0.04),
                       "rounds": 16}, steps=steps, outcome={"outcome": "found", "change_points": [3],
                                                             "diffstat": {commits[3]["sha"]: " userenv.py | 2 +-"}},
                       seconds=90.0)
    lines = render_bisect(BisectRecord.from_dict(json.loads(json.dumps(rec.to_dict()))), "github").splitlines()
    assert lines[0] == ("First bad commit (SPS): 0000000000 'release 3' (3/4); 2 commits tested in 1.5 min.")
    assert "The ends: bad against good 0.951 [0.942, 0.961], 16 rounds (SPS ratio)." in lines
    assert "| 2      | 0000000000 | release 3 | 3/4     | 0.952         | [0.940, 0.964] | 0.97                    " \
           "| [0.85, 1.09]  | 9        | 7   | bad       |" in lines


@pytest.mark.slow
def test_the_trainer_process_holds_two_commits_code_apart(tmp_path):
    """perfkit.engine.bisect_trainer, in this process: two commits' env modules (same name, different code)
    imported in isolation, a block of training each, a fresh seeded learning run, a broken commit
    and a bad command answered as errors, not the end."""
    import io

    from perfkit.core.scenario import Scenario
    from perfkit.engine.bisect_trainer import serve

    repo, shas = _repo(tmp_path, n=2, costs={0: 0.0, 2: 5000.0}, broken=(1,))
    commits = commit_range(repo, shas[0], shas[-1])
    values = dict(Scenario.build({"env": "userenv:make", "wrapper": "none"}).values)
    spec = {"values": values, "ppo": {"num_steps": 16}, "num_envs": 1, "seed": 3}
    with Worktrees(repo, tmp_path / "wt") as wt:
        paths = [str(wt.add(c).resolve()) for c in commits]
        commands = [{"cmd": "load", "key": "good", "paths": [paths[0]]},
                    {"cmd": "load", "key": "broken", "paths": [paths[1]]},
                    {"cmd": "load", "key": "bad", "paths": [paths[2]]},
                    {"cmd": "block", "key": "good", "seconds": 0.0}, {"cmd": "block", "key": "bad", "seconds": 0.0},
                    {"cmd": "learn", "key": "good", "epochs": 100, "seed": 4}, {"cmd": "drop", "key": "bad"},
                    {"cmd": "nope"}, {"cmd": "quit"}]
        out = io.StringIO()
        assert serve(spec, io.StringIO("".join(json.dumps(c) + "\n" for c in commands)), out) == 0
    good, broken, bad, block_good, block_bad, learn, dropped, nope = map(json.loads, out.getvalue().splitlines())
    assert good["ready"] and good["module"] == os.path.join(paths[0], "userenv.py")
    assert bad["module"] == os.path.join(paths[2], "userenv.py")
    assert "Missing" in broken["error"]
    assert block_good["epochs"] == 1 and block_good["agent_steps"] == 16 * 16
    # the bad commit burns 5 ms per env step: 16 steps take 80 ms more than the good one's
    assert block_bad["seconds"] > block_good["seconds"] + 0.06
    assert set(learn["learning"]) >= {"episode_return", "food_per_agent"}
    assert dropped == {"dropped": "bad"} and nope == {"error": "unknown command 'nope'"}
    assert "userenv" not in sys.modules


def test_a_recorded_non_monotonic_bisect_re_renders_exactly():
    """tests/fixtures/records/bisect: a real run of bench/bisect_power.py (commit 36 costs ~10%,
    commit 46 gives half back), re-rendered by `perfkit report` from its record."""
    r = CliRunner().invoke(main, ["report", str(ROOT / "tests" / "fixtures" / "records" / "bisect")])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == ("Two change points (SPS), not one: b5b1eb04bd 'release 36: reconcile the ledger every "
                        "step' (36/64) made it worse than the bad end, and d228be6086 'release 46: reconcile the "
                        "ledger every step' (46/64) gave part of it back; 9 commits tested in 4.1 min.")
    rec = BisectRecord.load(ROOT / "tests" / "fixtures" / "records" / "bisect" / "bisect.json")
    assert [s.verdict for s in rec.steps if s.search == "second"] and rec.outcome["change_points"] == [36, 46]
    assert sum(ln.endswith("| beyond-bad            |") for ln in lines) == \
        sum(s.verdict == "beyond-bad" for s in rec.steps) >= 1


def test_a_learning_bisect_takes_each_seeds_final_value_as_learn_does():
    """The trainer process's learning answer is perfkit learn's final value of a seed: episode-
    weighted over the windows ending in its last 20% of agent-steps, not a mean of late windows."""
    from types import SimpleNamespace

    from perfkit.engine.bisect_trainer import final_values

    def w(eps, ret):
        return SimpleNamespace(agent_steps=100, learning={"episodes": eps, "episode_return": ret} if eps else {})

    windows = [w(5, 1.0)] * 8 + [w(1, 10.0), w(3, 30.0)]  # 1000 steps: the last 200 are the last two windows
    got = final_values(windows)
    assert got == {"episode_return": pytest.approx((10.0 + 90.0) / 4)}
    assert final_values([w(5, 1.0)] * 8 + [w(0, 0.0)] * 2) == {}  # nothing ended late: no final value
