import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from perfkit.core import sentinel
from perfkit.core.sentinel import Sentinel, Usage, disturbed, slow_windows, snapshot, usage

FIX = Path(__file__).parent / "fixtures" / "proc_stat"
START, QUIET, NEIGHBOUR = ((FIX / f).read_text() for f in ("0_start.txt", "1_quiet.txt", "2_neighbour.txt"))
LOAD = (1.0, 0.5, 0.25)


def snap(text, wall, own):
    return snapshot(proc_stat_text=text, own_cpu=own, clock=lambda: wall, tick_hz=100, load_avg=LOAD)


def test_parse_reads_the_aggregate_line_and_counts_cpus():
    ticks, ncpu = sentinel.parse_proc_stat(START)
    assert ticks == {"user": 7592, "nice": 0, "system": 5518, "idle": 21917, "iowait": 484, "irq": 0,
                     "softirq": 130, "steal": 7}
    assert ncpu == 2


def test_a_spinning_neighbour_is_others_not_own():
    # 204 busy of 401 ticks on 2 cores; this process tree used 0.5 s of CPU in the 2 s window.
    u = usage(snap(QUIET, 102.0, 10.0), snap(NEIGHBOUR, 104.0, 10.5))
    assert u.wall_s == 2.0 and u.cores == 2 and u.load_avg == LOAD and u.reason is None
    assert u.machine_busy_cores == pytest.approx(204 / 401 * 2, abs=1e-12)
    assert u.own_cores == 0.25
    assert u.others_cores == pytest.approx(204 / 401 * 2 - 0.25, abs=1e-12)
    assert u.steal_fraction == 0.0
    assert disturbed(u) == "others used 0.8 core"


def test_a_quiet_window_is_not_disturbed():
    u = usage(snap(START, 100.0, 10.0), snap(QUIET, 102.0, 10.0))
    assert u.machine_busy_cores == pytest.approx(2 / 399 * 2, abs=1e-12)
    assert u.own_cores == 0.0 and u.others_cores == pytest.approx(4 / 399, abs=1e-12)
    assert disturbed(u) is None


def test_own_cpu_above_the_machine_total_clamps_others_at_zero():
    u = usage(snap(START, 100.0, 10.0), snap(QUIET, 102.0, 11.0))
    assert u.own_cores == 0.5 and u.others_cores == 0.0


def test_steal_is_a_share_of_all_ticks_and_flags():
    a = "cpu  100 0 100 1000 0 0 0 0 0 0\ncpu0 1 0 1 1 0 0 0 0 0 0\n"
    b = "cpu  150 0 110 1230 0 5 5 100 0 0\ncpu0 1 0 1 1 0 0 0 0 0 0\n"  # 400 ticks: 70 busy, 100 stolen
    u = usage(snap(a, 0.0, 0.0), snap(b, 4.0, 0.0))
    assert u.cores == 1 and u.machine_busy_cores == pytest.approx(70 / 400)
    assert u.steal_fraction == 0.25
    assert disturbed(u) == "steal 25% of CPU time"
    assert disturbed(u, max_steal=0.3) is None


def test_disturbed_joins_reasons_and_names_cores():
    u = Usage(1.0, 2.0, 0.5, 1.5, 0.1, 2, None)
    assert disturbed(u) == "others used 1.5 cores; steal 10% of CPU time"
    assert disturbed(u, max_other_cores=2.0, max_steal=0.2) is None


def test_missing_proc_stat_degrades_with_a_reason(monkeypatch):
    monkeypatch.setattr(sentinel, "PROC_STAT", "/nonexistent/proc/stat")
    a = snapshot(own_cpu=1.0, clock=lambda: 0.0)
    b = snapshot(own_cpu=1.5, clock=lambda: 1.0)
    assert a.ticks is None and "other processes' CPU is unknown" in a.reason
    u = usage(a, b)
    assert u.own_cores == 0.5
    assert u.machine_busy_cores is None and u.others_cores is None and u.steal_fraction is None
    assert "/nonexistent/proc/stat" in u.reason
    assert disturbed(u) is None
    assert u.to_dict()["others_cores"] is None


def test_garbage_proc_stat_and_a_zero_window_degrade():
    u = usage(snap("intr 1 2 3\n", 0.0, 0.0), snap(START, 1.0, 0.0))
    assert u.machine_busy_cores is None and "no aggregate 'cpu' line" in u.reason
    u = usage(snap(START, 5.0, 0.0), snap(START, 5.0, 0.0))
    assert u.machine_busy_cores is None and u.own_cores is None and "shorter than a clock tick" in u.reason


def test_sentinel_marks_windows_and_keeps_the_total():
    readings = iter([(START, 100.0, 10.0), (QUIET, 102.0, 10.2), (NEIGHBOUR, 104.0, 10.6), (NEIGHBOUR, 104.0, 10.6)])
    s = Sentinel(snap=lambda: snap(*next(readings)))
    s.start()
    w0, w1 = s.mark(), s.mark()
    assert w0.own_cores == pytest.approx(0.1) and w1.own_cores == pytest.approx(0.2)
    assert disturbed(w0) is None and disturbed(w1) == "others used 0.8 core"
    total = s.total()
    assert total.wall_s == 4.0 and total.machine_busy_cores == pytest.approx(206 / 800 * 2)
    assert total.own_cores == pytest.approx(0.15)


def test_usage_round_trips_to_a_dict():
    d = usage(snap(QUIET, 102.0, 10.0), snap(NEIGHBOUR, 104.0, 10.5)).to_dict()
    assert d["load_avg"] == [1.0, 0.5, 0.25] and d["cores"] == 2 and set(d) == {
        "wall_s", "machine_busy_cores", "own_cores", "others_cores", "steal_fraction", "cores", "load_avg", "reason"}


def test_slow_windows_are_below_half_the_median():
    assert slow_windows([100.0, 98.0, 3.0, 102.0, 49.0, 101.0, 99.0]) == [2, 4]
    assert slow_windows([100.0, 98.0, 80.0], median_factor=0.9) == [2]
    assert slow_windows([]) == []


def test_live_sentinel_is_sane():
    s = Sentinel()
    s.start()
    sum(i * i for i in range(200_000))  # a few ms of our own CPU
    u = s.total()
    assert u.wall_s > 0 and u.cores >= 1
    if u.reason is None:  # Linux with psutil
        assert 0.0 <= u.others_cores <= u.cores
        assert 0.0 <= u.machine_busy_cores <= u.cores and 0.0 <= u.steal_fraction <= 1.0
        assert u.own_cores >= 0.0


def test_own_cpu_counts_live_children():
    before = sentinel.own_cpu_seconds()
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.2: pass\ninput()"
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE)
    try:
        for _ in range(1000):  # wait until the child has burnt its 0.2 s (at most 10 s)
            t = psutil.Process(child.pid).cpu_times()
            if t.user + t.system >= 0.2:
                break
            time.sleep(0.01)
        live = sentinel.own_cpu_seconds()
    finally:
        child.communicate(b"\n")
    reaped = sentinel.own_cpu_seconds()
    assert live - before >= 0.2 - 0.011  # the child's 0.2 s, less one clock tick and float rounding
    assert reaped >= live - 0.011  # reaping moves the child into children_user: not lost, not doubled
    assert reaped - live < 0.2


def test_psutil_failure_degrades_with_a_reason(monkeypatch):
    def refuse():
        raise psutil.AccessDenied(pid=1)

    monkeypatch.setattr(sentinel, "own_cpu_seconds", refuse)
    a = snapshot(proc_stat_text=QUIET, clock=lambda: 0.0)
    u = usage(a, snapshot(proc_stat_text=NEIGHBOUR, clock=lambda: 2.0))
    assert a.own_cpu_s is None and a.reason.startswith("own CPU unknown (AccessDenied")
    assert u.machine_busy_cores == pytest.approx(204 / 401 * 2) and u.own_cores is None and u.others_cores is None
