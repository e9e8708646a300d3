"""`perfkit explain`'s statistics on constructed blocks and recorded folded stacks: exact numbers."""

import math

import numpy as np
import pytest

from perfkit.commands import explain as ex
from perfkit.core.markers import call_marked, marker_name, parse_marker
from perfkit.records.blocks import Block, split_by_block
from perfkit.records.explain import ExplainRecord
from perfkit.render.explain import render_explain, summary

LOOP = ("<module> (perfkit/engine/session.py)", "run_session (perfkit/engine/session.py)")


def test_marker_frames_name_the_block_and_parse_back():
    name = marker_name("wrapper=getattr", 7)
    assert name == "perfkit_block__wrapper_getattr__r7"
    assert parse_marker(f"{name} (perfkit/core/markers.py)") == ("wrapper_getattr", 7, False)
    assert parse_marker(marker_name("x", 0, warmup=True)) == ("x", 0, True)
    assert parse_marker("run_epoch (perfkit/train/ppo.py)") is None
    assert call_marked(name, lambda a, b=0: a + b, 2, b=3) == 5


def test_samples_split_by_block_and_warmup_samples_are_dropped():
    stacks = {
        (*LOOP, "perfkit_warmup__a__r0 (perfkit/core/markers.py)", "_compile_bytecode (importlib)"): 50.0,
        (*LOOP, "perfkit_block__a__r2 (perfkit/core/markers.py)", "run_epoch (ppo.py)", "step (env.py)"): 7.0,
        (*LOOP, "perfkit_block__b__r2 (perfkit/core/markers.py)", "run_epoch (ppo.py)"): 3.0,
        ("<module> (perfkit/engine/session.py)", "import torch"): 100.0,  # start-up: in no block
    }
    assert split_by_block(stacks) == {("a", 2): {("run_epoch (ppo.py)", "step (env.py)"): 7.0},
                                         ("b", 2): {("run_epoch (ppo.py)",): 3.0}}


def _blocks(rounds=8, cost_us=1.0, seed=0, twin=False):
    """A: env 4 µs + forward 6 µs per step; B: the same plus `cost_us` in `_reconcile_ledger` (env)."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(rounds):
        noise = 1 + rng.normal(0, 0.01, 2)
        steps = 1000
        a_env, a_fwd = 4e-3 * noise[0], 6e-3 * noise[0]
        b_env, b_fwd = (4e-3 + (0 if twin else cost_us * 1e-3)) * noise[1], 6e-3 * noise[1]
        a_st = {("run_epoch (ppo.py)", "step (env.py)"): 40.0 + rng.integers(-2, 3),
                ("run_epoch (ppo.py)", "forward (ppo.py)"): 60.0 + rng.integers(-2, 3)}
        extra = 0 if twin else 10.0 + rng.integers(-1, 2)
        b_st = {("run_epoch (ppo.py)", "step (env.py)"): 40.0 + rng.integers(-2, 3),
                ("run_epoch (ppo.py)", "forward (ppo.py)"): 60.0 + rng.integers(-2, 3)}
        if extra:
            b_st[("run_epoch (ppo.py)", "step (env.py)", "_reconcile_ledger (mymod.py)")] = extra
        pairs.append((Block(steps, a_env + a_fwd, {"env": a_env, "forward": a_fwd}, a_st),
                      Block(steps, b_env + b_fwd, {"env": b_env, "forward": b_fwd}, b_st)))
    return pairs


def test_a_hidden_cost_is_found_in_its_phase_and_its_function():
    e = ex.explain("A", "B", _blocks())
    assert e.gap.significant and e.gap.delta_us == pytest.approx(1.0, abs=0.15)
    env, fwd = e.phases
    assert (env.name, env.significant, fwd.name) == ("env", True, "forward")
    assert env.delta_us == pytest.approx(1.0, abs=0.1) and abs(fwd.delta_us) < 0.1
    assert 0.9 < e.closure < 1.1  # the phases beyond noise add up to the gap
    assert [c.frame for c in e.causes][0] == "_reconcile_ledger (mymod.py)"
    # 3 frames tested by self time, and the same 3 inclusively (run_epoch is on every stack: not)
    assert e.frames_tested == 6 and e.batches == 8
    assert 0.8 < e.explained_by_causes < 1.3


def test_rounds_with_few_samples_are_batched_until_each_batch_has_enough():
    pairs = _blocks(rounds=9)
    thin = [(Block(a.agent_steps, a.seconds, a.phases, {k: v / 10 for k, v in a.stacks.items()}),
             Block(b.agent_steps, b.seconds, b.phases, {k: v / 10 for k, v in b.stacks.items()})) for a, b in pairs]
    batches = ex.batch_pairs(thin)  # ~10 samples per round: 4 rounds per batch, the 9th round dropped
    assert len(batches) == 2 and batches[0][0].agent_steps == 4000
    assert batches[0][0].seconds == pytest.approx(sum(a.seconds for a, _ in thin[:4]))
    assert ex.explain("A", "B", thin).batches == 2


def test_paired_delta_is_a_t_interval_on_the_differences():
    d = ex.paired_delta("x", [1.0, 2.0, 3.0, 4.0], [1.5, 2.4, 3.6, 4.5])
    diffs = np.array([0.5, 0.4, 0.6, 0.5])
    half = 3.182446305284263 * diffs.std(ddof=1) / 2
    assert (d.delta_us, d.ci_low, d.ci_high) == pytest.approx((0.5, 0.5 - half, 0.5 + half))
    assert math.isnan(ex.paired_delta("y", [1.0], [2.0]).ci_low)


def test_identical_twins_name_no_function():
    for seed in range(20):
        assert ex.explain("A", "B", _blocks(seed=seed, twin=True)).causes == [], seed


def test_too_few_batches_gives_phases_and_says_why_not_functions():
    pairs = [(Block(a.agent_steps, a.seconds, a.phases), Block(b.agent_steps, b.seconds, b.phases))
             for a, b in _blocks(rounds=4)]
    e = ex.explain("A", "B", pairs)
    assert e.causes == [] and e.frames_tested == 0 and len(e.phases) == 2
    assert e.notes == ["functions: these rounds were not sampled; `perfkit explain --vary ...` (or compare "
                       "--flamegraph) samples every block"]
    few = [(Block(a.agent_steps, a.seconds, a.phases, {("f",): 50.0}),
            Block(b.agent_steps, b.seconds, b.phases, {("f",): 50.0})) for a, b in _blocks(rounds=1)]
    assert ex.explain("A", "B", few).notes == [
        "functions: fewer than 2 batches of rounds with 40 samples each, so no function can be named with an "
        "interval (sample faster with --rate, or run longer)"]


def test_summary_and_record_round_trip(tmp_path):
    e = ex.explain("A", "B", _blocks())
    text = summary(e)
    assert text.startswith(f"B is {(1 / e.ratio - 1) * 100:.1f}% slower than A [")
    assert ", of which env +" in text and "the largest function change is `_reconcile_ledger (mymod.py)` +" in text
    rec = ExplainRecord([e], sampler={"tool": "py-spy", "rate": 25, "sampler_cores": 0.012})
    rec.save(tmp_path / "explain.json")
    back = ExplainRecord.load(tmp_path / "explain.json")
    assert back.to_dict() == rec.to_dict()
    out = render_explain(back)
    assert "| env                       |" in out and "| _reconcile_ledger (mymod.py)" in out
    assert "Every block was sampled by py-spy at 25 Hz, using 0.012 core" in out


def test_a_cost_spread_over_many_callees_is_named_by_its_caller():
    """A checkpoint: 40 serialisation frames of ~0.3 samples each per round, none significant
    alone; their caller's inclusive time moves beyond noise."""
    rng = np.random.default_rng(3)
    pairs = []
    for _ in range(12):
        def loop():
            return {("run_epoch (ppo.py)", "step (env.py)"): float(rng.poisson(40)),
                    ("run_epoch (ppo.py)", "forward (ppo.py)"): float(rng.poisson(60))}
        a_st, b_st = loop(), loop()
        for k in range(40):
            b_st[("run_epoch (ppo.py)", "save_checkpoint (ppo.py)", f"write_{k} (torch/serialization.py)")] = \
                float(rng.poisson(0.3))
        extra = sum(v for k, v in b_st.items() if len(k) == 3)
        pairs.append((Block(1000, 0.010, {"env": 0.004, "forward": 0.006}, a_st),
                      Block(1000, 0.010 * (1 + extra / 100), {"env": 0.004, "forward": 0.006,
                                                                  "checkpoint": 0.010 * extra / 100}, b_st)))
    e = ex.explain("A", "B", pairs)
    assert [(c.frame, c.by) for c in e.causes] == [("save_checkpoint (ppo.py)", "inclusive")]
    assert "the largest function change in and below `save_checkpoint (ppo.py)` +" in summary(e)
    assert "No single frame moved; this caller's inclusive time accounts for" in render_explain(
        ExplainRecord([e]))


def test_explain_a_recorded_compare_exactly(tmp_path):
    """A real sampled run (tests/fixtures/records/explain: its compare record and py-spy's stacks,
    recorded elsewhere: the stacks are found beside the record by the tail of their path)."""
    import shutil
    from pathlib import Path

    from click.testing import CliRunner

    from perfkit.cli.main import main

    run = tmp_path / "run"
    shutil.copytree(Path(__file__).parent / "fixtures" / "records" / "explain", run)
    r = CliRunner().invoke(main, ["explain", str(run)])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert ("env=forage:make_slow is 24.5% slower than env=forage:make [23.4, 25.6]: +2.06 µs per agent-step, of "
            "which env +1.99 [1.98, 2.01], forward +0.04 [0.02, 0.06], copy +0.02 [0.01, 0.02]; the largest "
            "function change is `_reconcile_ledger (forage.py)` +2.26 µs [1.26, 3.26] (110% of the gap).") in lines
    assert "| env                       | 1.984                     | 3.978                          | +1.994 " \
           "| [+1.982, +2.005] | yes            |" in lines
    assert "The phases beyond noise add up to 100% of the gap." in lines
    assert [ln.split("|")[1].strip() for ln in lines if ln.startswith("| _")] == ["_reconcile_ledger (forage.py)"]
    assert (run / "explain.json").exists() and (run / "explain-env_forage_make_slow.svg").exists()
    again = CliRunner().invoke(main, ["report", str(run)])  # the explain record, re-rendered
    assert again.exit_code == 0 and again.output.splitlines()[:3] == lines[:3]
    r = CliRunner().invoke(main, ["explain", str(run), "--b", "env=nope"])
    assert r.exit_code == 2
    assert "--b 'env=nope' is not a variant of this compare; choose from env=forage:make" in r.output


def test_explain_needs_a_results_dir_or_vary(tmp_path):
    from click.testing import CliRunner

    from perfkit.cli.main import main

    r = CliRunner().invoke(main, ["explain"])
    assert r.exit_code == 2 and "give RESULTS_DIR (a finished compare) or --vary AXIS=A,B (run one)" in r.output
    r = CliRunner().invoke(main, ["explain", str(tmp_path), "--vary", "wrapper=getattr,none"])
    assert r.exit_code == 2 and "not both" in r.output
    r = CliRunner().invoke(main, ["explain", str(tmp_path)])
    assert r.exit_code == 2 and f"{tmp_path}" in r.output and "sps.json" in r.output


@pytest.mark.slow
def test_explain_runs_a_sampled_compare_end_to_end(tmp_path):
    """The real path: one process with py-spy sampling every block, then the explanation."""
    from click.testing import CliRunner

    from perfkit.cli.main import main
    from perfkit.engine.profilers import ProfilerUnavailable, pyspy
    from perfkit.records.compare import CompareResult

    try:
        pyspy.check()
    except ProfilerUnavailable as e:
        pytest.skip(f"py-spy cannot run here: {e}")
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["explain", "--vary", "inject-cost-us=0,200", "--min-seconds", "4", "--max-minutes",
                                  "0.15", "--ppo", "num_steps=16", "--ppo", "minibatch_size=512", "--out", str(out)])
    assert r.exit_code == 0, r.output
    result = CompareResult.load(out / "sps.json")
    assert result.mode == "inprocess" and result.sampler["rate"] == 200
    assert (out / "session" / "session.folded").stat().st_size > 0
    record = ExplainRecord.load(out / "explain.json")
    ex_ = record.explanations[0]
    assert ex_.b == "inject-cost-us=200" and ex_.gap.delta_us > 0  # 200 µs per env step: far slower
    assert max(ex_.phases, key=lambda p: p.delta_us).name == "env"
    assert "slower than inject-cost-us=0" in r.output


def test_a_cause_in_library_code_names_the_caller_that_pulls_it_in():
    loop = ("run_epoch (perfkit/train/ppo.py)", "_CurriculumLogic.step (envs/curriculum.py)")
    blocks = [Block(1000, 0.01, {}, {(*loop, "_all (numpy/_core/_methods.py)"): 9.0,
                                        ("run_epoch (perfkit/train/ppo.py)", "_all (numpy/_core/_methods.py)"): 1.0})]
    assert ex.caller_outside_libraries("_all (numpy/_core/_methods.py)", blocks) == loop[1]
    assert ex.caller_outside_libraries("_reconcile_ledger (forage.py)", blocks) is None  # not library code
    # the trainer calls np.all more often than the wrapper, in A and B alike: the wrapper's calls grew
    trainer = ("run_epoch (perfkit/train/ppo.py)", "_all (numpy/_core/_methods.py)")
    a = [Block(1000, 0.01, {}, {trainer: 20.0, (*loop, "_all (numpy/_core/_methods.py)"): 1.0, ("x",): 79.0})]
    b = [Block(1000, 0.01, {}, {trainer: 20.0, (*loop, "_all (numpy/_core/_methods.py)"): 6.0, ("x",): 74.0})]
    assert ex.caller_outside_libraries("_all (numpy/_core/_methods.py)", b, a) == loop[1]
