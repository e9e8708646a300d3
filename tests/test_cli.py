import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from perfkit.cli.main import main
from perfkit.records.compare import CompareResult
from perfkit.records.store import SCHEMA_VERSION
from perfkit.records.trial import TrialResult

ONE_EPOCH = str(96 * 128)


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_variants_lists_every_axis():
    r = invoke("variants")
    assert r.exit_code == 0
    for axis in ("wrapper", "env-config", "checkpoint", "workers", "desync", "preset", "device", "env"):
        assert f"| {axis} " in r.output
    assert "getattribute, getattr, none" in r.output


def test_help_explains_commands():
    r = invoke("--help")
    assert r.exit_code == 0 and "compare" in r.output and "variants" in r.output
    r = invoke("compare", "--help")
    assert "--vary" in r.output and "--wrapper" in r.output and "interleaved" in r.output


@pytest.mark.slow
def test_run_prints_sps_phases_and_writes_trial_json(tmp_path):
    r = invoke("run", "--wrapper", "getattribute", "--steps", ONE_EPOCH, "--out", str(tmp_path), "--format", "plain")
    assert r.exit_code == 0, r.output
    assert "agent-steps/s" in r.output and "ms per 1k agent-steps" in r.output
    tr = TrialResult.load(tmp_path / "trial.json")
    assert tr.scenario["values"]["wrapper"] == "getattribute" and tr.agent_steps == int(ONE_EPOCH)


@pytest.mark.parametrize("args,message", [
    (["compare", "--vary", "wrapper=getattribute,proxy"],
     "invalid value 'proxy' for axis 'wrapper'; valid: getattribute, getattr, none"),
    (["compare", "--vary", "wrappr=getattr"], "unknown axis 'wrappr'"),
    (["compare", "--fix", "checkpoint=often"], "invalid value 'often' for axis 'checkpoint'"),
    (["compare", "--vary", "wrapper=getattr,none", "--fix", "wrapper=none"], "both varied and fixed"),
    (["run", "--workers", "many"], "invalid value 'many' for axis 'workers'"),
    (["run", "--seconds", "abc"], "'abc' is not a valid float"),
    (["run", "--seconds", "1", "--steps", "5"], "give --seconds or --steps, not both"),
    (["compare", "--trials", "0"], "0 is not in the range x>=1"),
    (["compare", "--vary", "inject-cost-us=0,0.0"], "--vary inject-cost-us repeats a value: '0,0.0' (as 0)"),
    (["compare", "--vary", "checkpoint=epochs:2,epochs:02"], "repeats a value: 'epochs:2,epochs:02' (as epochs:2)"),
    (["run", "--seed", "-1"], "-1 is not in the range 0<=x<=4294967295"),
    (["compare", "--seed", "4294967296"], "4294967296 is not in the range 0<=x<=4294967295"),
    (["run", "--inject-cost-us", "inf"], "invalid value 'inf' for axis 'inject-cost-us'; valid: a number >= 0 and"),
])
def test_bad_input_is_a_usage_error_naming_the_value(args, message):
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2
    assert message in r.output


def test_unwritable_results_dir_is_a_usage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = CliRunner().invoke(main, ["run", "--steps", ONE_EPOCH, "--out", str(blocker / "sub")])
    assert r.exit_code == 2 and "is not writable" in r.output


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("PERFKIT_SKIP_SLOW") == "1", reason="PERFKIT_SKIP_SLOW=1")
def test_compare_end_to_end_in_subprocesses_with_flamegraph(tmp_path):
    """The real path: console entry point, fresh trial processes, py-spy flamegraphs."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "perfkit", "compare", "--vary", "wrapper=getattribute,none", "--trials", "2",
         "--steps", str(3 * int(ONE_EPOCH)), "--out", str(out), "--flamegraph", "--mode", "process",
         "--reruns", "0"],  # a loaded machine must not change the trial count (re-runs: tests/test_results.py)
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrapper=getattribute" in proc.stdout and "verdict" in proc.stdout
    assert "[4/4]" in proc.stderr  # progress, one line per trial
    result = CompareResult.load(out / "sps.json")
    assert [len(result.sps(v)) for v in result.variants] == [2, 2]
    assert (out / "sps.md").read_text().startswith("## Throughput")
    for v in result.variants:
        text = Path(result.profiles[v]["files"]["svg"]).read_text()
        # py-spy saw perfkit's epochs (the steady ones: drawn from below their marker frames)
        assert text.lstrip().startswith("<?xml") and "run_epoch (perfkit/train/ppo.py)" in text
    diff = result.profiles["wrapper=none"]["flamediff"]
    assert Path(diff["on_b"]).read_text().startswith("<?xml") and Path(diff["on_a"]).read_text().startswith("<?xml")
    assert "### wrapper=none vs wrapper=getattribute (steady blocks)" in (out / "sps.md").read_text()
    assert json.loads((out / "sps.json").read_text())["schema_version"] == SCHEMA_VERSION


@pytest.mark.slow
def test_compare_inprocess_interleaves_epochs_of_every_variant(tmp_path):
    """auto mode runs variants that share a process in one, epoch by epoch, rotating the order."""
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["compare", "--vary", "wrapper=getattribute,none", "--steps", str(96 * 16 * 3),
                                  "--trials", "2", "--ppo", "num_steps=16", "--ppo", "minibatch_size=512",
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    result = CompareResult.load(out / "sps.json")
    assert result.mode == "inprocess" and len(result.blocks) >= 8
    assert [b["order"] for b in result.blocks[:2]] == [["wrapper=getattribute", "wrapper=none"],
                                                       ["wrapper=none", "wrapper=getattribute"]]
    assert "epochs" in r.output and "ratio vs first" in r.output
    assert all(t[0].threads["intra_op"] >= 1 for t in result.trials.values())
