import pytest

from perfkit.core.timing import PhaseTimer, WindowedSPS, steady_state
from perfkit.train.cadence import Cadence


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t

    def advance(self, dt):
        self.t += dt


def test_phase_timer_charges_each_interval_to_the_running_phase():
    clock, syncs = FakeClock(), []
    timer = PhaseTimer(clock, sync=lambda: syncs.append(clock()))
    clock.advance(1.0)  # misc (the initial phase)
    timer.switch("env")
    clock.advance(2.0)
    timer.switch("forward")
    clock.advance(0.5)
    timer.switch("env")
    clock.advance(0.25)
    snap = timer.snapshot()
    assert timer.totals["env"] == 2.0 and timer.totals["forward"] == 0.5 and timer.totals["misc"] == 1.0
    assert snap["env"] == 2.25  # includes the running phase
    assert len(syncs) == 3  # one device sync per phase edge


def test_windows_exclude_warmup_from_steady_state():
    clock = FakeClock()
    timer = PhaseTimer(clock)
    win = WindowedSPS(timer, clock)
    timer.switch("env")
    clock.advance(10.0)  # slow first window: 1000 steps in 10 s
    w0 = win.mark(1000)
    for i in range(3):
        clock.advance(1.0)
        win.mark(2000 + 1000 * i)
    assert w0.sps == 100.0 and w0.phases["env"] == 10.0
    sps, secs = steady_state(win.windows, warmup=1)
    assert (sps, secs) == (1000.0, 3.0)
    assert steady_state(win.windows[:1], warmup=1) == (100.0, 10.0)  # nothing else: first window


def test_cadence_epochs_and_seconds():
    c = Cadence.parse("epochs:5")
    assert [e for e in range(1, 16) if c.due(e, 0.0)] == [5, 10, 15]
    s = Cadence.parse("seconds:60")
    s.start(0.0)
    assert [t for t in range(0, 200, 10) if s.due(0, float(t))] == [60, 120, 180]
    assert not Cadence.parse("off").due(5, 1e9)


@pytest.mark.parametrize("bad", ["epochs:0", "epochs:1.5", "minutes:3", "seconds:-1"])
def test_cadence_rejects_bad_text(bad):
    with pytest.raises(ValueError, match="invalid cadence"):
        Cadence.parse(bad)
