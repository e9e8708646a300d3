"""Trainers rebuilt in turns during one in-process compare: the rounds' build tags, warm-up per
build, the interval per build order (an offset that comes with the place a trainer was built in
cancels), and a rebuilt trainer going on from the one it replaced."""

import numpy as np
import pytest
import scipy.stats
import torch

from perfkit.core import stats
from perfkit.core.scenario import Scenario
from perfkit.engine.local import rebuild_seconds
from perfkit.engine.session import SessionSpec, run_rounds, run_session
from tests.test_rounds import FakeTrainer, Tick

SMALL = {"num_steps": 16, "minibatch_size": 512}


def _blocks(ratios_by_build: list[list[float]], warmup: int = 2) -> list[dict]:
    """Rounds of a and b in builds (build order j % 2), b's SPS exp(x) times a's."""
    out, r = [], 0
    for j, xs in enumerate(ratios_by_build):
        for x in [0.0] * warmup + xs:
            out.append({"round": r, "sps": {"a": 1000.0, "b": 1000.0 * float(np.exp(x))}, "build": j,
                        "build_order": j % 2})
            r += 1
    return out


def test_an_offset_that_follows_the_build_order_cancels_however_uneven_the_rounds():
    rng = np.random.default_rng(3)
    # the trainer built second is 0.3% slower, whichever variant it is; build 0 runs three times
    # as long as build 1, so a pooled mean keeps most of the offset
    build0 = list(-0.003 + rng.normal(0, 0.002, 120))  # a built first: b is built second
    build1 = list(+0.003 + rng.normal(0, 0.002, 40))  # b built first
    blocks = _blocks([build0, build1])
    (n, c), = stats.block_comparisons(blocks, ["a", "b"], warmup=2, batch=1).values()
    assert n == 160
    assert c.ci_low < 1.0 < c.ci_high and abs(np.log(c.ratio)) < 0.0008
    pooled = stats.rounds_interval(build0 + build1)
    assert pooled.ci_high < 1.0  # what one pool of the rounds would have said: a false "slower"


def test_strata_average_their_own_trimmed_means_with_welch_degrees_of_freedom():
    s0, s1 = [0.01, 0.02, 0.03, 0.02], [0.0, 0.01, -0.01, 0.0, 0.02, 0.01]
    c = stats.compare_strata({0: s0, 1: s1})
    m0, se0, df0 = stats._trimmed_mean_se(s0)
    m1, se1, df1 = stats._trimmed_mean_se(s1)
    assert np.log(c.ratio) == pytest.approx((m0 + m1) / 2)
    se = np.sqrt(se0**2 + se1**2) / 2
    df = se**4 / ((se0**2 / 4) ** 2 / df0 + (se1**2 / 4) ** 2 / df1)
    half = scipy.stats.t.ppf(0.975, df) * se
    assert np.log(c.ci_high) == pytest.approx((m0 + m1) / 2 + half)
    # a stratum too small to have an interval: every batch mean pooled
    assert stats.compare_strata({0: s0 + s1, 1: [0.5]}) == stats.rounds_interval(s0 + s1 + [0.5])


def test_warm_up_counts_per_build_and_a_batch_never_spans_two_builds():
    blocks = _blocks([[0.01] * 5, [0.02] * 3], warmup=2)
    steady = stats.steady_blocks(blocks, 2)
    assert [b["build"] for b in steady] == [0] * 5 + [1] * 3
    groups = stats.block_log_ratios(blocks, "a", "b", warmup=2, batch=2)
    assert groups == {0: pytest.approx([0.01, 0.01]), 1: pytest.approx([0.02])}  # 5 -> 2 batches, 3 -> 1


def test_rounds_rebuild_in_the_next_order_and_tag_every_round():
    trainers = {"a": FakeTrainer([1000.0]), "b": FakeTrainer([900.0])}
    orders = []
    s = run_rounds(trainers, SessionSpec(variants=[], seconds=40.0, rebuild_seconds=10.0), clock=Tick(1.0),
                   rebuild=orders.append)
    assert orders[:3] == [["b", "a"], ["a", "b"], ["b", "a"]]
    builds = [b["build"] for b in s.blocks]
    assert builds == sorted(builds) and builds[-1] == len(orders)
    assert all(b["build_order"] == b["build"] % 2 for b in s.blocks)
    starts = [i for i, b in enumerate(s.blocks) if i == 0 or b["build"] != s.blocks[i - 1]["build"]]
    assert len(starts) == len(orders) + 1


def test_precision_waits_for_every_build_order():
    without = run_rounds({"a": FakeTrainer([1000.0]), "b": FakeTrainer([1000.0])},
                         SessionSpec(variants=[], precision=0.02, seconds=1e9), clock=Tick(0.01))
    with_rebuilds = run_rounds({"a": FakeTrainer([1000.0]), "b": FakeTrainer([1000.0])},
                               SessionSpec(variants=[], precision=0.02, seconds=1e9, rebuild_seconds=1.0),
                               clock=Tick(0.01), rebuild=lambda order: None)
    assert without.stop_reason == with_rebuilds.stop_reason == "precision"
    assert "build" not in without.blocks[0]
    orders = {b["build_order"] for b in stats.steady_blocks(with_rebuilds.blocks, 2)}
    assert orders == {0, 1} and len(with_rebuilds.blocks) > len(without.blocks)


def test_a_rebuild_that_fails_ends_the_rounds_with_the_reason():
    def rebuild(order):
        raise RuntimeError("out of memory")

    s = run_rounds({"a": FakeTrainer([1000.0]), "b": FakeTrainer([900.0])},
                   SessionSpec(variants=[], seconds=100.0, rebuild_seconds=5.0), clock=Tick(1.0), rebuild=rebuild)
    assert s.stop_reason == "every variant failed"
    assert all("rebuilding the trainers failed" in e and "out of memory" in e for e in s.errors.values())


def test_rebuild_cadence_fits_a_short_budget():
    assert rebuild_seconds(None, 2) == rebuild_seconds(600.0, 2) == 15.0
    assert rebuild_seconds(36.0, 2) == 9.0  # every build order twice in the budget


def test_a_real_session_rebuilds_and_its_trainers_go_on_from_the_ones_they_replaced():
    sc = Scenario.build({"env": "tests.test_train:custom_env"}).to_dict()
    spec = SessionSpec(variants=[{"label": "a", "scenario": sc}, {"label": "b", "scenario": sc}], seconds=30.0,
                       ppo=SMALL, num_envs=2, rebuild_seconds=8.0)
    s = run_session(spec, clock=Tick(1.0))
    assert len({b["build"] for b in s.blocks}) >= 3
    for label in "ab":
        tr = s.trials[label]
        epochs = sum(1 for b in s.blocks if label in b["agent_steps"])
        assert len(tr.windows) == epochs  # every build's windows, one per epoch
        assert tr.agent_steps == sum(b["agent_steps"][label] for b in s.blocks)
        assert [w["index"] for w in tr.windows] == list(range(epochs))


def test_continue_from_carries_weights_optimizer_and_counts():
    from perfkit.train import vecenv as vec
    from perfkit.train.ppo import PPOConfig, Trainer
    from tests.test_train import custom_env

    def build():
        env = vec.make(custom_env, vec.plan("serial", 2), seed=1)
        return Trainer(env, PPOConfig(**SMALL), torch.device("cpu"), seed=1)

    old = build()
    for _ in range(2):
        old.run_epoch()
    new = build()
    new.continue_from(old)
    for p, q in zip(old.policy.parameters(), new.policy.parameters(), strict=True):
        assert torch.equal(p, q) and p.data_ptr() != q.data_ptr()
    assert new.optimizer.state_dict()["state"][0]["step"] == old.optimizer.state_dict()["state"][0]["step"]
    assert (new.agent_steps, new.epoch) == (old.agent_steps, 2)
    w = new.run_epoch()
    assert w.index == 2 and w.agent_steps == 16 * new.num_agents and new.epoch == 3
    old.vecenv.close()
    new.vecenv.close()
