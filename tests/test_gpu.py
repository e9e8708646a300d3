"""The GPU rows of `perfkit explain`: torch.profiler traces read by Holistic Trace Analysis.

tests/fixtures/records/explain-gpu holds two real traces taken on an H100 (`perfkit explain --vary
fault=none,host-sync --device cuda --ppo num_steps=16 --num-envs 2`, bench/device_gpu_rows.sh) with
their trials: the host-sync fault adds one `.item()` per rollout step, so one CUDA sync more."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from perfkit.engine import gpu
from perfkit.records.explain import ExplainRecord
from perfkit.render.explain import render_gpu

FIXTURES = Path(__file__).parent / "fixtures" / "records"
LABELS = ["fault=none", "fault=host-sync"]


def test_a_recorded_cuda_trace_pair_is_read_exactly():
    got, notes = gpu.summarise_dir(FIXTURES / "explain-gpu", LABELS)
    assert notes == []
    a, b = got["fault=none"], got["fault=host-sync"]
    assert (a.epochs, a.agent_steps_per_epoch, a.rollout_steps_per_epoch, a.stream) == (2, 768, 16, 7)
    # the fault's .item() per rollout step: exactly one synchronisation more, and two kernels
    assert (a.syncs_per_rollout_step, b.syncs_per_rollout_step) == (6.46875, 7.46875)
    assert (a.kernels_per_rollout_step, b.kernels_per_rollout_step) == (49.1875, 51.1875)
    assert a.idle_us["host_wait"] == pytest.approx(44.501953125)
    assert b.idle_us["host_wait"] - a.idle_us["host_wait"] == pytest.approx(12.791015625)
    assert b.kernel_us - a.kernel_us == pytest.approx(0.030598958)
    # HTA's units are the trace's (µs): the profiled steps' length agrees with the trial's own clock
    assert a.extra["profiler_step_us"] == pytest.approx(44.9, rel=0.15)
    assert a.trace == "gpu/fault_none/torch-trace-0.json.gz"


def test_gpu_rows_render_exactly():
    got, _ = gpu.summarise_dir(FIXTURES / "explain-gpu", LABELS)
    lines = render_gpu(got["fault=none"], got["fault=host-sync"], *LABELS).splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:5]] == ["GPU, main stream (7)", "fault=none", "fault=host-sync",
                                                             "Δ"]
    assert "| idle: waiting for the host               | 44.502       | 57.293            | +12.791 |" in lines
    assert "| time under torch.profiler, µs/agent-step | 49.303       | 62.091            | +12.788 |" in lines
    assert "| CUDA syncs per rollout step              | 6.47         | 7.47              | +1.00   |" in lines
    assert "| kernels per rollout step                 | 49.2         | 51.2              | +2.0    |" in lines
    assert lines[-1].startswith("One torch.profiler trace per variant (2 and 2 profiled epochs)")


def test_explain_on_a_compare_with_gpu_traces_adds_the_rows(tmp_path):
    """The traces beside a finished compare are read by `perfkit explain RESULTS_DIR` and kept in
    explain.json; `perfkit report` re-renders them without HTA running again."""
    from click.testing import CliRunner

    from perfkit.cli.main import main
    from perfkit.engine.gpu import trace_dir

    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "explain", run)
    # the recorded CPU compare's variants, given the recorded GPU traces
    for label, src in (("env=forage:make", "fault_none"), ("env=forage:make_slow", "fault_host_sync")):
        shutil.copytree(FIXTURES / "explain-gpu" / "gpu" / src, trace_dir(run, label))
    r = CliRunner().invoke(main, ["explain", str(run)])
    assert r.exit_code == 0, r.output
    assert "| CUDA syncs per rollout step              | 6.47              | 7.47                   | +1.00   |" \
        in r.output.splitlines()
    rec = ExplainRecord.load(run / "explain.json")
    assert rec.gpu["env=forage:make_slow"].syncs_per_rollout_step == 7.46875
    shutil.rmtree(run / "gpu")
    again = CliRunner().invoke(main, ["report", str(run)])
    assert again.exit_code == 0 and "| CUDA syncs per rollout step              | 6.47" in again.output


def test_without_hta_the_rows_are_absent_and_a_note_says_how_to_get_them(monkeypatch):
    def missing():
        raise gpu.HtaUnavailable(f"the GPU rows need Holistic Trace Analysis: {gpu.HTA_HINT}")

    monkeypatch.setattr(gpu, "require_hta", missing)
    got, notes = gpu.summarise_dir(FIXTURES / "explain-gpu", LABELS)
    assert got == {} and notes == [f"the GPU rows need Holistic Trace Analysis: {gpu.HTA_HINT}"]


def test_without_traces_there_are_no_rows_and_no_notes(tmp_path):
    assert gpu.summarise_dir(tmp_path, LABELS) == ({}, [])


@pytest.mark.slow
def test_a_cpu_trace_is_named_as_one(tmp_path):
    """A trace without GPU kernels (a CPU trial) is a clear error, not rows of zeros."""
    import torch
    import torch.profiler as tp

    with tp.profile(activities=[tp.ProfilerActivity.CPU], schedule=tp.schedule(wait=0, warmup=0, active=1)) as prof:
        torch.ones(8).sum()
        prof.step()
    path = tmp_path / "cpu.json"
    prof.export_chrome_trace(str(path))
    with pytest.raises(ValueError, match="no GPU kernels in this trace"):
        gpu.analyse_trace(path, 768, 16)
