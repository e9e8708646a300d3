"""Profilers on real (short) trials. These launch processes; each skips, with the reason, only
when its tool cannot run on this machine."""

import gzip
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from perfkit.cli.main import main
from perfkit.core.folded import read_folded
from perfkit.engine.profilers import ProfilerUnavailable, pyspy, scalene
from perfkit.records.profiling import ProfileRecord

FIX = Path(__file__).parent / "fixtures"
SMALL = ["--ppo", "num_steps=16", "--ppo", "minibatch_size=512", "--steps", str(96 * 16 * 8)]


def _pyspy_or_skip():
    try:
        pyspy.check()
    except ProfilerUnavailable as e:
        pytest.skip(f"py-spy cannot run here: {e}")


@pytest.mark.slow
def test_profile_with_all_three_profilers(tmp_path):
    _pyspy_or_skip()
    if shutil.which("scalene") is None:
        pytest.skip("scalene is not installed")
    r = CliRunner().invoke(main, ["profile", "--with", "pyspy", "--with", "torch", "--with", "scalene",
                                  "--repeats", "1", "--out", str(tmp_path), *SMALL], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "ratio to unprofiled (paired)" in r.output
    assert "Scalene: top lines by CPU %" in r.output and "perfkit/train/ppo.py" in r.output
    record = ProfileRecord.load(tmp_path / "profile.json")
    assert set(record.artifacts) == {"pyspy", "torch", "scalene"}
    if math.isnan(record.unprofiled_sps()):  # a busy machine: the one unprofiled trial was left out, and says so
        assert "left out (disturbed)" in r.output
    else:
        assert record.unprofiled_sps() > 0 and "outside profiled epochs" in r.output
    # every trial recorded with the sentinel's reading (py-spy's own CPU counts as the trial's)
    assert sorted(t["tool"] for t in record.trials) == ["none", "pyspy", "scalene", "torch"]
    assert all(t["sentinel"].get("others_cores") is not None for t in record.trials)
    assert "no interval (use --repeats 3 or more)" in r.output

    # py-spy: perfkit's phase functions are in the stacks; svg and speedscope rendered from them
    frames = {f for s in read_folded(tmp_path / "pyspy" / "pyspy.folded", torn_ok=True).stacks for f in s}
    assert {"train (perfkit/train/ppo.py)", "_update (perfkit/train/ppo.py)"} <= frames
    assert (tmp_path / "pyspy" / "pyspy.svg").read_text().startswith("<?xml")
    assert json.loads((tmp_path / "pyspy" / "pyspy.speedscope.json").read_text())["profiles"]

    # torch.profiler: the gzipped Chrome trace parses and holds perfkit's phase ranges
    trace = json.loads(gzip.open(tmp_path / "torch" / "torch-trace-0.json.gz").read())
    names = {e.get("name") for e in trace["traceEvents"]}
    assert {"env", "forward", "learn", "copy"} <= names
    assert "Self CPU" in (tmp_path / "torch" / "torch-ops-0.txt").read_text()
    assert read_folded(tmp_path / "torch" / "torch-stacks-0.folded").total > 0  # export_stacks wrote stacks

    # Scalene: its JSON profile covers perfkit's files
    sc = json.loads((tmp_path / "scalene" / "scalene.json").read_text())
    assert any(f.endswith("perfkit/train/ppo.py") for f in sc["files"])


def test_profile_rejects_unknown_profiler():
    r = CliRunner().invoke(main, ["profile", "--with", "gdb"])
    assert r.exit_code == 2 and "'gdb' is not one of 'pyspy', 'torch', 'scalene'" in r.output


def test_profile_rejects_bad_schedule():
    r = CliRunner().invoke(main, ["profile", "--with", "torch", "--torch-schedule", "active=two"])
    assert r.exit_code == 2 and "expected skip_first=N" in r.output


def test_missing_pyspy_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))  # nothing beside this interpreter
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ProfilerUnavailable, match="pip install py-spy"):
        pyspy.check()


def _fake_tool(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tool = directory / name
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    return tool


@pytest.mark.parametrize("module,name", [(pyspy, "py-spy"), (scalene, "scalene")])
def test_tools_beside_the_interpreter_are_found_without_path(monkeypatch, tmp_path, module, name):
    # `venv/bin/perfkit` run without activating the venv: the tools are in venv/bin, not on PATH
    beside = _fake_tool(tmp_path / "venv" / "bin", name)
    on_path = _fake_tool(tmp_path / "elsewhere", name)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert module.executable() == str(beside)  # first choice, even with another on PATH
    beside.unlink()
    assert module.executable() == str(on_path)  # then PATH
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ProfilerUnavailable, match=re.escape(f"{name} is neither beside {sys.executable} nor on PATH")):
        module.executable()


def test_invalid_torch_schedule_is_rejected_before_any_trial(monkeypatch):
    from perfkit.engine import local

    monkeypatch.setattr(local.SubprocessRunner, "__call__", lambda *a, **k: pytest.fail("a trial ran"))
    r = CliRunner().invoke(main, ["profile", "--with", "torch", "--torch-schedule",
                                  "skip_first=2,wait=1,warmup=1,active=0,repeat=1"])
    assert r.exit_code == 2 and "active 0 must be an integer >= 1" in r.output
    r = CliRunner().invoke(main, ["profile", "--with", "torch", "--torch-schedule", "wait=-1"])
    assert r.exit_code == 2 and "wait -1 must be an integer >= 0" in r.output


def test_flamediff_cli_names_the_injected_function_first(tmp_path):
    r = CliRunner().invoke(main, ["flamediff", str(FIX / "a.folded"), str(FIX / "b.folded"), "--out", str(tmp_path),
                                  "--format", "plain"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("frame"))
    assert lines[header + 1].startswith("_injected_cost (envs/arena/env.py)")
    assert (tmp_path / "flamediff.svg").exists() and (tmp_path / "flamediff-on-A.svg").exists()
    assert "_injected_cost" in (tmp_path / "flamediff.md").read_text()


def test_flamediff_on_profile_run_directories_drops_a_torn_line(tmp_path):
    # perfkit's own py-spy output reads without stopping the trial; a frame name read mid-update can
    # hold a newline, leaving a line with no count (seen in a CI run). A run directory is perfkit's
    # own output, so that line is dropped; the same line in a user's file stays an error (test_flame).
    for name, src in (("a", "a.folded"), ("b", "b.folded")):
        (tmp_path / name / "pyspy").mkdir(parents=True)
        text = (FIX / src).read_text() + 'process 14941:"python -m perfkit.engine.trial";<module> (x.py:1);tor\n'
        (tmp_path / name / "pyspy" / "pyspy.folded").write_text(text + "n (x.py:2) 1\n")
    r = CliRunner().invoke(main, ["flamediff", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "out"),
                                  "--format", "plain"])
    assert r.exit_code == 0, r.output
    assert "_injected_cost (envs/arena/env.py)" in r.output
    r = CliRunner().invoke(main, ["flamediff", str(tmp_path / "a" / "pyspy" / "pyspy.folded"), str(FIX / "b.folded"),
                                  "--out", str(tmp_path / "out2")])
    assert r.exit_code == 2 and "expected 'frame;frame COUNT'" in r.output


def test_flamediff_on_a_directory_without_stacks_is_a_usage_error(tmp_path):
    r = CliRunner().invoke(main, ["flamediff", str(tmp_path), str(FIX / "b.folded")])
    assert r.exit_code == 2 and "holds no pyspy.folded" in r.output


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium)")
def test_differential_flamegraph_renders_in_a_browser(tmp_path):
    import numpy as np
    from PIL import Image

    r = CliRunner().invoke(main, ["flamediff", str(FIX / "a.folded"), str(FIX / "b.folded"), "--out", str(tmp_path)])
    assert r.exit_code == 0
    url = (tmp_path / "flamediff.svg").as_uri()
    common = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    for name in ("_injected_cost (envs/arena/env.py)", "train (perfkit/train/ppo.py)", "process main"):
        assert name in dom
    png = tmp_path / "shot.png"
    subprocess.run([*common, "--window-size=1200,300", f"--screenshot={png}", url], capture_output=True, timeout=120)
    px = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3).astype(int)
    red = int(((px[:, 0] > 200) & (px[:, 1] < 120) & (px[:, 2] < 120)).sum())
    assert red > 500  # the injected cost is drawn strongly red


@pytest.mark.slow
def test_pyspy_attributes_rollout_workers_to_their_own_roots(tmp_path):
    _pyspy_or_skip()
    r = CliRunner().invoke(main, ["profile", "--with", "pyspy", "--workers", "2", "--out", str(tmp_path),
                                  "--ppo", "num_steps=16", "--ppo", "minibatch_size=512", "--steps", str(96 * 16 * 6)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    prof = read_folded(tmp_path / "pyspy" / "pyspy.folded", torn_ok=True)
    roots = {s[0] for s in prof.stacks}
    assert {"process main", "process worker-1", "process worker-2"} <= roots
    worker_frames = {f for s in prof.stacks if s[0] == "process worker-1" for f in s}
    assert "_worker_process (pufferlib/vector.py)" in worker_frames
