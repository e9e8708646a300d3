import os
import sys
import types

import pytest

from perfkit.core import threads
from perfkit.core.threads import apply_threads, available_cores, choose_threads, parse_threads


def test_two_cores_serial_gets_one_thread():
    n, why = choose_threads(2, 0, "cpu")
    assert n == 1 and why.startswith("cpu: 2 cores, serial: 2 left")


def test_sixteen_cores_eight_workers_gets_four():
    n, why = choose_threads(16, 8, "cpu")
    assert n == 4 and "8 rollout workers: 8 left" in why


@pytest.mark.parametrize(("cores", "workers", "expected"), [
    (1, 0, 1), (4, 0, 2), (6, 0, 3), (8, 0, 4), (64, 0, 4), (4, 2, 1), (2, 4, 1), (12, 4, 4)])
def test_cpu_rule_takes_half_of_what_workers_leave_capped_at_four(cores, workers, expected):
    assert choose_threads(cores, workers, "cpu")[0] == expected


def test_cuda_needs_one_host_thread():
    assert choose_threads(16, 0, "cuda")[0] == 1
    assert choose_threads(16, 4, "cuda:1") == (1, "cuda: the host only launches kernels, 1 intra-op thread")


def test_bad_inputs_name_the_value():
    with pytest.raises(ValueError, match=r"device 'auto' is not valid here; valid: cpu, cuda"):
        choose_threads(2, 0, "auto")
    with pytest.raises(ValueError, match="cores 0 must be >= 1"):
        choose_threads(0, 0, "cpu")
    with pytest.raises(ValueError, match="workers -1 must be >= 0"):
        choose_threads(2, -1, "cpu")


def test_available_cores_follows_the_affinity_mask():
    n = available_cores()
    assert 1 <= n <= (os.cpu_count() or n)
    if hasattr(os, "sched_getaffinity"):
        assert n == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("value", "expected"), [("auto", "auto"), (" AUTO ", "auto"), ("1", "1"), ("256", "256"),
                                                 ("08", "8")])
def test_parse_threads_accepts_auto_and_1_to_256(value, expected):
    assert parse_threads(value) == expected


@pytest.mark.parametrize("value", ["0", "257", "-1", "two", "", "1.5"])
def test_parse_threads_rejects_with_the_value_and_the_choices(value):
    with pytest.raises(ValueError) as e:
        parse_threads(value)
    assert str(e.value) == f"threads={value!r} is not valid; valid: auto or an integer 1..256"


class FakeTorch(types.SimpleNamespace):
    def __init__(self, interop_locked: bool):
        super().__init__(threads=8, interop=8, locked=interop_locked)

    def set_num_threads(self, n):
        self.threads = n

    def get_num_threads(self):
        return self.threads

    def set_num_interop_threads(self, n):
        if self.locked:
            raise RuntimeError("Error: cannot set number of interop threads after parallel work has started")
        self.interop, self.locked = n, True

    def get_num_interop_threads(self):
        return self.interop


def test_apply_threads_sets_both_pools_once(monkeypatch):
    fake = FakeTorch(interop_locked=False)
    monkeypatch.setitem(sys.modules, "torch", fake)
    first = apply_threads(1)
    assert (first.threads, first.interop_threads, first.interop_applied, first.note) == (1, 1, True, None)
    again = apply_threads(2)  # torch allows inter-op threads to be set only once
    assert (again.threads, again.interop_threads, again.interop_applied) == (2, 1, False)
    assert again.note.startswith("inter-op threads left at 1: Error: cannot set")
    assert again.to_dict()["interop_applied"] is False
    with pytest.raises(ValueError, match="threads 0 must be >= 1"):
        apply_threads(0)


def test_apply_threads_on_real_torch(monkeypatch):
    import torch

    # Inter-op threads can be set once per process and this one must stay as it is: stand in for
    # that call, but check that torch has it.
    assert callable(torch.set_num_interop_threads) and callable(torch.get_num_interop_threads)
    calls = []
    monkeypatch.setattr(torch, "set_num_interop_threads", calls.append)
    before = torch.get_num_threads()
    try:
        r = apply_threads(1)
        assert r.threads == torch.get_num_threads() == 1 and r.interop_applied and calls == [1]
    finally:
        torch.set_num_threads(before)


def test_module_constants():
    assert threads.MAX_THREADS == 256 and threads.MAX_AUTO_THREADS == 4
