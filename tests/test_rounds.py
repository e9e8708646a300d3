"""The round loop every backend shares (perfkit/engine/rounds.py), and the one-process session's stop
rules driven through it with fake trainers and a fake clock: no training, no wall clock."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from perfkit.engine.rounds import PRECISION, ROUNDS, TIME, Rounds, StopRule, rotation
from perfkit.engine.session import SessionSpec, run_rounds


class Tick:
    """A clock that moves `step` seconds each time it is read."""

    def __init__(self, step: float = 1.0):
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def test_rotation_gives_every_variant_every_position():
    assert [rotation("ABC", r) for r in range(4)] == [list("ABC"), list("BCA"), list("CAB"), list("ABC")]
    assert rotation([], 3) == []


def test_rounds_stop_after_the_planned_number():
    rounds = Rounds(StopRule(3), clock=Tick())
    seen = []
    while rounds.more():
        seen.append(rounds.order(["a", "b"]))
        rounds.finished()
    assert seen == [["a", "b"], ["b", "a"], ["a", "b"]] and rounds.reason == ROUNDS


def test_precision_is_asked_only_after_the_minimum_of_rounds_and_seconds():
    asked = []
    rule = StopRule(100, precision=0.02, min_rounds=4, min_seconds=10.0)
    rounds = Rounds(rule, clock=Tick(1.0))  # every read moves 1 s: start at 1, then 2, 3, ...
    while rounds.more():
        rounds.finished(lambda: asked.append(rounds.done) or True)
    # 4 rounds are there after 4 calls, but 10 s only once the clock has been read often enough
    assert asked and asked[0] >= 4 and rounds.reason == PRECISION
    assert rounds.elapsed >= 10.0


def test_time_stops_the_rounds_but_a_finished_plan_says_rounds():
    rounds = Rounds(StopRule(100, max_seconds=5.0), clock=Tick(2.0))
    while rounds.more():
        rounds.finished()
    assert rounds.reason == TIME and rounds.done < 100
    last = Rounds(StopRule(1, max_seconds=0.5), clock=Tick(2.0))
    last.finished()
    assert last.reason == ROUNDS  # the plan was done: its time running out with it is not why it stopped


def test_no_round_limit_runs_until_told():
    rounds = Rounds(StopRule(None), clock=Tick())
    for _ in range(50):
        assert rounds.more()
        rounds.finished()
    rounds.stop("a variant failed")
    assert not rounds.more() and rounds.reason == "a variant failed"


# -- the one-process session ---------------------------------------------------------------------

@dataclass
class FakeWindow:
    sps: float
    agent_steps: int
    seconds: float
    phases: dict = field(default_factory=dict)


class FakeTrainer:
    """An epoch of `steps` agent-steps at SPS drawn from `speeds` (cycled); raises at `fail_at`."""

    def __init__(self, speeds, steps=1000, fail_at=None, interrupt_at=None):
        self.speeds, self.steps, self.fail_at, self.interrupt_at = speeds, steps, fail_at, interrupt_at
        self.agent_steps, self.num_agents, self.epochs = 0, 10, 0

    def run_epoch(self):
        if self.epochs == self.fail_at:
            raise RuntimeError("env exploded")
        if self.epochs == self.interrupt_at:
            raise KeyboardInterrupt
        sps = self.speeds[self.epochs % len(self.speeds)]
        self.epochs += 1
        self.agent_steps += self.steps
        return FakeWindow(sps, self.steps, self.steps / sps, {"env": 0.5 * self.steps / sps})


def _spec(**kw) -> SessionSpec:
    return SessionSpec(variants=[], **kw)


def test_session_stops_on_precision_with_steady_blocks():
    trainers = {"a": FakeTrainer([1000.0, 1010.0]), "b": FakeTrainer([950.0, 960.0])}
    s = run_rounds(trainers, _spec(precision=0.02, min_rounds=3, seconds=1e9), clock=Tick(0.001))
    assert s.stop_reason == "precision"
    # warm-up (2 rounds) plus at least min_rounds batch means of a full rotation (2 rounds each)
    assert len(s.blocks) >= 2 + 3 * 2
    assert [b["order"] for b in s.blocks[:3]] == [["a", "b"], ["b", "a"], ["a", "b"]]


def test_session_with_noisy_blocks_runs_to_its_time_budget():
    noisy = [1000.0, 600.0, 1500.0, 800.0, 1300.0]
    trainers = {"a": FakeTrainer(noisy), "b": FakeTrainer(noisy[::-1])}
    s = run_rounds(trainers, _spec(precision=0.001, seconds=3.0), clock=Tick(0.1))
    assert s.stop_reason == "time" and not s.interrupted


def test_session_stops_on_its_agent_step_budget_after_warm_up():
    trainers = {"a": FakeTrainer([1000.0]), "b": FakeTrainer([900.0])}
    s = run_rounds(trainers, _spec(agent_steps=5000, warmup_rounds=2), clock=Tick(), steps_per_epoch=100)
    # warm-up counts 2 x 100 steps x 10 agents = 2000 steps on top of the budget: 7 epochs each
    assert s.stop_reason == ROUNDS and len(s.blocks) == 7
    assert all(t.agent_steps >= 7000 for t in trainers.values())


def test_a_failing_variant_is_recorded_and_a_pair_cannot_go_on():
    trainers = {"a": FakeTrainer([1000.0]), "b": FakeTrainer([900.0], fail_at=3)}
    s = run_rounds(trainers, _spec(seconds=1e9), clock=Tick())
    assert s.stop_reason == "a variant failed" and "env exploded" in s.errors["b"]
    assert s.blocks[-1]["sps"]["b"] == 0.0 and "b" not in s.blocks[-1]["agent_steps"]


def test_with_three_variants_the_others_go_on_without_the_failed_one():
    trainers = {k: FakeTrainer([1000.0]) for k in "abc"}
    trainers["b"].fail_at = 1
    s = run_rounds(trainers, _spec(seconds=20.0), clock=Tick())
    assert s.stop_reason == "time" and set(s.errors) == {"b"}
    assert all(set(b["order"]) == {"a", "c"} for b in s.blocks[2:])


def test_ctrl_c_in_a_block_keeps_the_rounds_before_it():
    trainers = {"a": FakeTrainer([1000.0]), "b": FakeTrainer([900.0], interrupt_at=4)}
    s = run_rounds(trainers, _spec(seconds=1e9), clock=Tick())
    assert s.interrupted and s.stop_reason == "interrupted" and len(s.blocks) == 4


def test_the_session_saves_while_it_runs():
    saved = []
    trainers = {"a": FakeTrainer([1000.0]), "b": FakeTrainer([900.0])}
    run_rounds(trainers, _spec(seconds=100.0), save=lambda s: saved.append(len(s.blocks)), clock=Tick(1.0))
    assert saved and saved == sorted(saved) and saved[0] >= 1


@pytest.mark.parametrize("precision", [None, 0.05])
def test_every_block_records_each_active_variant(precision):
    trainers = {"a": FakeTrainer([1000.0, 990.0]), "b": FakeTrainer([900.0, 905.0])}
    s = run_rounds(trainers, _spec(precision=precision, seconds=30.0), clock=Tick())
    for b in s.blocks:
        assert set(b["sps"]) == {"a", "b"} and set(b["others_cores"]) == {"a", "b"}
        assert b["seconds"]["a"] == pytest.approx(1000 / b["sps"]["a"])


def test_a_record_measured_in_turns_takes_its_batch_means_over_its_batch_rounds():
    """Blocks that tile a run carry errors that cancel between neighbours: +e, -e, +e, ... The
    per-rotation batches (2 rounds) of such a record see only that error; batches of the record's
    `batch_rounds` average it away and leave the true ratio."""
    import math

    from perfkit.core.stats import block_comparisons
    from perfkit.records.compare import CompareResult

    truth = math.log(0.95)
    blocks = [{"round": r, "sps": {"a": 1000.0, "b": 1000.0 * math.exp(truth + (0.3 if r % 4 < 2 else -0.3))}}
              for r in range(1 + 64)]
    n2, _ = block_comparisons(blocks, ["a", "b"], 1)["b"]
    n8, c8 = block_comparisons(blocks, ["a", "b"], 1, batch=8)["b"]
    assert (n2, n8) == (32, 8)
    assert c8.ratio == pytest.approx(0.95)
    rec = CompareResult(variants=["a", "b"], scenarios={}, trials={"a": [], "b": []}, trials_planned=1, mode="interleave",
                        blocks=blocks, warmup_rounds=1, stopping={"batch_rounds": 8})
    c = rec.comparisons()["b"]
    assert c.ratio == pytest.approx(0.95) and c.ci_high - c.ci_low < 1e-9
