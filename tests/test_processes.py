"""compare --cmd --processes: each command run as several processes, one set after another, and the
interval taken over the sets, so a process's own speed offset is inside it."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from perfkit.cli.main import main
from perfkit.core import stats
from perfkit.records.compare import CompareResult
from perfkit.render.table import render_sps

TRAINER = Path(__file__).parent / "trainers" / "counter.py"
CMD = f"{sys.executable} {TRAINER}"


def _block(r: int, a: float, b: float, process: int | None = None) -> dict:
    blk = {"round": r, "order": ["a", "b"], "sps": {"a": a, "b": b}, "others_cores": {}}
    if process is not None:
        blk["process"] = process
    return blk


# -- statistics (pure) -----------------------------------------------------------------------------

def test_each_process_leaves_out_its_own_warm_up_rounds():
    blocks = [_block(i, 1, 1, process=i // 4) for i in range(12)]
    assert [b["round"] for b in stats.steady_blocks(blocks, 1)] == [1, 2, 3, 5, 6, 7, 9, 10, 11]
    untagged = [_block(i, 1, 1) for i in range(5)]
    assert [b["round"] for b in stats.steady_blocks(untagged, 2)] == [2, 3, 4]


def test_a_batch_never_spans_two_processes():
    # process 0: log ratio 0.0 in every round; process 1: 0.1; batches of 2 over 3 steady rounds each
    blocks = [_block(i, 1.0, 1.0, 0) for i in range(4)] + [_block(4 + i, 1.0, math.exp(0.1), 1) for i in range(4)]
    groups = stats.block_log_ratios(blocks, "a", "b", warmup=1, batch=2)
    assert groups == {0: [0.0], 1: [pytest.approx(0.1)]}  # the third steady round of each: a partial batch


def test_one_process_gives_the_trimmed_interval_of_its_rounds():
    d = [0.01, -0.02, 0.03, 0.0, 0.015, 0.2, -0.01, 0.02, 0.0, 0.01]
    assert stats.compare_processes({0: d}) == stats.rounds_interval(d) == stats.trimmed_log_ratios(d, trim=stats.TRIM)
    assert stats.compare_processes({0: d}) != stats.compare_log_ratios(d)  # the 0.2 stall is cut


def test_several_processes_make_the_process_the_unit():
    # every process is perfectly steady inside, but the processes disagree: the rounds alone would
    # claim a tiny interval; over the processes' means the spread between them is in it
    groups = {0: [0.03] * 20, 1: [-0.01] * 20, 2: [0.01] * 20}
    c = stats.compare_processes(groups)
    means = np.array([0.03, -0.01, 0.01])
    half = float(__import__("scipy").stats.t.ppf(0.975, 2)) * means.std(ddof=1) / math.sqrt(3)
    assert c.ratio == pytest.approx(math.exp(0.01))
    assert (c.ci_low, c.ci_high) == (pytest.approx(math.exp(0.01 - half)), pytest.approx(math.exp(0.01 + half)))
    assert c.verdict == stats.SAME
    pooled = stats.compare_log_ratios([x for v in groups.values() for x in v])
    assert pooled.ci_high - pooled.ci_low < (c.ci_high - c.ci_low) / 3  # what the rounds alone would say
    assert stats.compare_processes({0: [0.01, 0.02], 1: []}) == stats.compare_log_ratios([0.01, 0.02])  # too few to trim


def test_with_a_speed_offset_per_process_the_sets_keep_their_coverage():
    """Seeded simulation of twins: every process gets its own offset (sd 2%, as twins of one trainer
    showed here), rounds inside it add noise. One process per command: its interval covers the truth
    far less than 95% of the time; four sets with the interval over them: about 95%."""
    rng = np.random.default_rng(2026)
    runs, rounds = 400, 60
    one = sets = 0
    for _ in range(runs):
        offsets = rng.normal(0, 0.02, size=4) - rng.normal(0, 0.02, size=4)  # B's process minus A's
        d = {g: list(offsets[g] + rng.normal(0, 0.05, size=rounds // 4)) for g in range(4)}
        single = stats.compare_log_ratios(list(offsets[0] + rng.normal(0, 0.05, size=rounds)))
        one += single.ci_low <= 1.0 <= single.ci_high
        c = stats.compare_processes(d)
        sets += c.ci_low <= 1.0 <= c.ci_high
    assert one / runs < 0.6
    assert 0.92 <= sets / runs <= 0.99


def test_block_comparisons_count_batches_over_every_process():
    blocks = [_block(i, 1.0, 1.0 + 0.01 * (i % 3), i // 10) for i in range(30)]
    n, c = stats.block_comparisons(blocks, ["a", "b"], warmup=1, batch=3)["b"]
    assert n == 9  # 3 processes x 9 steady rounds -> 3 batches of 3 each
    # rounds 1..9 of each set hold ratios 1.01, 1.02, 1.00, ... : a batch of 3 inside a set averages
    # one of each, so every set's mean is the same and the interval has no width
    assert c.ratio == pytest.approx(math.exp(np.mean([math.log(1.0 + 0.01 * (i % 3)) for i in range(3)])))
    assert c.ci_low == pytest.approx(c.ratio) and c.ci_high == pytest.approx(c.ratio)
    # a batch spanning two sets would mix rounds 8-9 of one with round 1 of the next and spread them
    d = stats.block_log_ratios(blocks, "a", "b", warmup=1, batch=3)
    assert sorted(d) == [0, 1, 2] and all(len(v) == 3 and np.ptp(v) < 1e-12 for v in d.values())


# -- record and table --------------------------------------------------------------------------------

def _record(tmp_path, processes: int) -> CompareResult:
    blocks = []
    for g in range(processes):
        for i in range(8):
            blocks.append(_block(len(blocks), 1000.0, 1000.0 * (0.95 + 0.01 * g), g if processes > 1 else None))
    result = CompareResult(variants=["a", "b"], scenarios={"a": {}, "b": {}}, trials={"a": [], "b": []},
                           trials_planned=processes, machine={}, mode="interleave", blocks=blocks, warmup_rounds=1,
                           stopping={"reason": "time", "batch_rounds": 2, "processes": processes})
    path = tmp_path / "sps.json"
    result.save(path)
    return CompareResult.load(path)


def test_the_record_keeps_the_process_of_each_round_and_the_table_says_how_many(tmp_path):
    result = _record(tmp_path, 3)
    assert [b.get("process") for b in result.blocks][::8] == [0, 1, 2]
    c = result.comparison("b")
    logs = [math.log(0.95 + 0.01 * g) for g in range(3)]
    assert c.ratio == pytest.approx(math.exp(np.mean(logs)))
    # every set is steady inside: pooled rounds would give a zero-width interval; over the sets it is
    # the t-interval of three means (2 degrees of freedom)
    half = float(__import__("scipy").stats.t.ppf(0.975, 2)) * np.std(logs, ddof=1) / math.sqrt(3)
    assert c.ci_high == pytest.approx(math.exp(np.mean(logs) + half))
    assert "21 blocks in 3 processes" in render_sps(result)
    assert not any("ran as one process" in w for w in result.warnings())


def test_a_set_that_gave_no_rounds_is_not_counted_and_the_table_says_so(tmp_path):
    from perfkit.engine.local import _sets_measured

    result = _record(tmp_path, 3)
    result.blocks = [b for b in result.blocks if b["process"] != 2] + [
        _block(99, 1000.0, 950.0, 2)]  # set 2: its warm-up round only (its time went to its start)
    assert _sets_measured(result) == 2
    result.stopping["processes"] = 2
    assert any("2 of 3 process sets gave rounds" in w for w in result.warnings())
    one = _record(tmp_path, 3)
    one.blocks = [b for b in one.blocks if b["process"] == 0]
    assert _sets_measured(one) == 1  # the interval then leaves the offset out, and the table must not claim sets
    one.stopping["processes"] = _sets_measured(one)
    assert any("each command ran as one process" in w for w in one.warnings())
    assert "in 3 processes" not in render_sps(one)


def test_one_process_per_command_is_said_in_the_warnings(tmp_path):
    result = _record(tmp_path, 1)
    assert any("each command ran as one process" in w and "--processes" in w for w in result.warnings())


def test_a_record_with_a_bad_process_number_is_refused(tmp_path):
    path = tmp_path / "sps.json"
    _record(tmp_path, 2)
    data = json.loads(path.read_text())
    data["blocks"][0]["process"] = "first"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="process"):
        CompareResult.load(path)


# -- the command line -------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,message", [
    (["--vary", "wrapper=none,getattr", "--processes", "3"], "--processes 3 is for --cmd"),
    (["--cmd", "a=ls", "--cmd", "b=ls", "--mode", "process", "--processes", "2"], "every trial is a fresh process"),
    (["--cmd", "a=ls", "--cmd", "b=ls", "--processes", "4", "--precision", "0.01", "--max-minutes", "1"],
     "each set of 2 commands would get 15 s"),
    (["--cmd", "a=ls", "--cmd", "b=ls", "--processes", "0"], "0 is not in the range x>=1"),
])
def test_bad_processes_are_exit_2_before_any_trial(argv, message, tmp_path):
    r = CliRunner().invoke(main, ["compare", *argv, "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert not (tmp_path / "o" / "trials").exists()


def test_processes_reach_the_run(tmp_path, monkeypatch):
    import perfkit.commands.compare as compare_cmd

    seen = {}

    class Reached(Exception):
        pass

    def fake_run(variants, rule, run_dir, how, seconds, *a, **k):
        seen.update(how=how)
        raise Reached

    monkeypatch.setattr(compare_cmd, "run_interleaved", fake_run)
    r = CliRunner().invoke(main, ["compare", "--cmd", "a=ls", "--cmd", "b=ls -l", "--processes", "3",
                                  "--precision", "0.01", "--max-minutes", "3", "--out", str(tmp_path / "o")])
    assert isinstance(r.exception, Reached), r.output
    assert seen["how"].processes == 3


# -- real processes ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_sets_of_fresh_processes_run_in_turn_and_each_is_recorded(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "perfkit", "compare", "--cmd", f"train={CMD}",
                        "--vary", "env:COST_US=0,100", "--processes", "2", "--trials", "2", "--seconds", "8",
                        "--block-seconds", "0.4", "--warmup-seconds", "0.3", "--out", str(out)],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads((out / "sps.json").read_text())
    assert data["stopping"]["processes"] == 2
    procs = [b.get("process") for b in data["blocks"]]
    assert procs == sorted(procs) and set(procs) == {0, 1}
    assert [b["round"] for b in data["blocks"]] == list(range(len(data["blocks"])))
    for label, slug in (("env:COST_US=0", "env_COST_US=0"), ("env:COST_US=100", "env_COST_US=100")):
        assert [t["round"] for t in data["trials"][label]] == [0, 1]
        assert (out / "trials" / slug / "trial-1.log").exists()
    # the second set starts the other command first
    starts = [line for line in r.stderr.splitlines() if line.startswith("starting ")]
    assert starts[0].startswith("starting env:COST_US=0 ") and starts[2].startswith("starting env:COST_US=100 ")
    assert "slower" in r.stdout and "in 2 processes" in r.stdout
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False).stdout
    assert str(TRAINER) not in ps
