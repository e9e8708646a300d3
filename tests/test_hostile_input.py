"""Input a hostile (or unlucky) user gives: each case was once a traceback, a run that never ended,
or results lost; now a clear error (exit 2 before anything is measured) or a clean answer."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from perfkit.cli.main import main

FIXTURES = Path(__file__).parent / "fixtures" / "records"


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def explained_run(tmp_path) -> Path:
    """A copy of a real sampled compare (the explain fixture)."""
    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "explain", run)
    return run


@pytest.fixture
def read_only(tmp_path):
    """Makes a directory read-only with a read-only bind mount (root can write through file modes);
    skipped where mounts are not allowed. Unmounted afterwards."""
    mounted = []

    def make(path: Path) -> Path:
        for cmd in (["mount", "--bind", str(path), str(path)], ["mount", "-o", "remount,ro,bind", str(path)]):
            p = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if p.returncode != 0:
                if mounted:
                    subprocess.run(["umount", str(path)], check=False)
                pytest.skip(f"cannot make a read-only mount here: {p.stderr.strip()}")
            if not mounted:
                mounted.append(path)
        return path

    yield make
    for path in mounted:
        subprocess.run(["umount", str(path)], check=False)


@pytest.mark.parametrize("args", [
    ["compare", "--vary", "wrapper=getattr,none", "--precision", "nan"],
    ["compare", "--vary", "wrapper=getattr,none", "--seconds", "nan"],
    ["compare", "--vary", "wrapper=getattr,none", "--max-minutes", "nan"],
    ["explain", "--vary", "wrapper=getattr,none", "--min-seconds", "nan"],
    ["explain", "--vary", "wrapper=getattr,none", "--max-minutes", "inf"],
    ["gate", "--check", "sps(wrapper=getattr) >= 0.9 * sps(wrapper=none)", "--max-minutes", "nan"],
    ["bisect", "--good", "HEAD~1", "--bad", "HEAD", "--precision", "nan"],
])
def test_nan_and_infinity_are_usage_errors(args, tmp_path):
    r = invoke(*args, "--out", str(tmp_path / "out")) if args[0] != "bisect" else invoke(*args)
    assert r.exit_code == 2, r.output
    assert "is not a finite number" in r.output
    assert not (tmp_path / "out").exists()


def test_explain_checks_a_and_b_before_measuring(tmp_path):
    out = tmp_path / "out"
    r = invoke("explain", "--vary", "wrapper=none,getattr", "--b", "wrapper=nosuch", "--out", str(out))
    assert r.exit_code == 2
    assert ("--b 'wrapper=nosuch' is not a variant of the compare --vary asks for; choose from wrapper=none, "
            "wrapper=getattr") in r.output
    assert not out.exists()  # nothing measured, no directory made
    r = invoke("explain", "--vary", "wrapper=none", "--out", str(out))
    assert r.exit_code == 2 and "has one variant (wrapper=none): nothing to explain against" in r.output


def test_explain_of_a_variant_against_itself_is_a_usage_error(explained_run):
    r = invoke("explain", str(explained_run), "--a", "env=forage:make", "--b", "env=forage:make")
    assert r.exit_code == 2
    assert "--a and --b are both 'env=forage:make': a variant against itself has nothing to explain" in r.output
    r = invoke("explain", str(explained_run), "--b", "env=forage:make")
    assert r.exit_code == 2 and "(--a defaults to the first variant)" in r.output


def test_explain_of_an_interrupted_compare_exits_0_and_says_so(explained_run):
    data = json.loads((explained_run / "sps.json").read_text())
    data["interrupted"] = True
    (explained_run / "sps.json").write_text(json.dumps(data))
    r = invoke("explain", str(explained_run))
    assert r.exit_code == 0, r.output
    assert "was interrupted; this explains the rounds it finished" in r.output


def test_explain_out_writes_there_and_leaves_the_compare_alone(explained_run, tmp_path):
    before = sorted(p.name for p in explained_run.iterdir())
    out = tmp_path / "elsewhere"
    r = invoke("explain", str(explained_run), "--out", str(out))
    assert r.exit_code == 0, r.output
    assert (out / "explain.json").exists() and (out / "explain-env_forage_make_slow.svg").exists()
    assert sorted(p.name for p in explained_run.iterdir()) == before
    record = json.loads((out / "explain.json").read_text())
    assert record["compare"] == str((explained_run / "sps.json").resolve())
    again = invoke("report", str(out))  # the explanation re-renders from its new home
    assert again.exit_code == 0 and "_reconcile_ledger (forage.py)" in again.output


def test_explain_of_a_read_only_results_dir_asks_for_out(explained_run, read_only, tmp_path):
    read_only(explained_run)
    r = invoke("explain", str(explained_run))
    assert r.exit_code == 2
    assert f"RESULTS_DIR '{explained_run}' is not writable: Read-only file system; pass --out DIR" in r.output
    r = invoke("explain", str(explained_run), "--out", str(tmp_path / "o"))
    assert r.exit_code == 0 and (tmp_path / "o" / "explain.json").exists()


def test_a_copied_results_dir_reads_its_own_samples(explained_run, tmp_path):
    """cp -r A B, then A is run again with --force: B's explanation must not change. The record
    holds the absolute path of A's samples; B's own copy wins."""
    from perfkit.records.blocks import locate

    data = json.loads((explained_run / "sps.json").read_text())
    data["sampler"]["folded"] = str(explained_run / "session" / "session.folded")  # as older versions wrote
    (explained_run / "sps.json").write_text(json.dumps(data))
    copy = tmp_path / "copy"
    shutil.copytree(explained_run, copy)
    (explained_run / "session" / "session.folded").write_text("")  # A re-run: other samples now
    assert locate(data["sampler"]["folded"], copy) == copy / "session" / "session.folded"
    r = invoke("explain", str(copy))
    assert r.exit_code == 0, r.output
    assert "the largest function change is `_reconcile_ledger (forage.py)`" in r.output


def test_report_into_a_read_only_dir_is_a_clear_error_after_the_tables(read_only, tmp_path):
    run = tmp_path / "cmp"
    shutil.copytree(FIXTURES / "compare-process", run)
    read_only(run)
    r = invoke("report", str(run))
    assert r.exit_code == 1
    assert "Traceback" not in r.output and "Read-only file system" in r.output
    assert "the tables are printed above (pass --out DIR to write the files elsewhere)" in r.output
    assert "| variant" in r.output.lower() or "agent-steps/s" in r.output


def test_report_out_on_a_full_disk_is_a_clear_error(tmp_path, monkeypatch):
    import errno
    import os

    from perfkit.core import files

    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files, "atomic_write_bytes", full)
    r = invoke("report", str(FIXTURES / "compare-process"), "--out", str(tmp_path / "o"))
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "No space left on device; the tables are printed above" in r.output


def test_gate_checks_the_baseline_is_writable_before_measuring(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    baseline = blocker / "b.json"  # its directory is a file: nothing can be written there, even by root
    r = invoke("gate", "--check", "sps(wrapper=getattr) >= 0.9 * baseline", "--update-baseline",
               "--baseline", str(baseline))
    assert r.exit_code == 2, r.output
    assert f"--baseline's directory '{blocker}' is not writable" in r.output
    assert "baseline run 1" not in r.output  # nothing measured


def test_no_module_is_named_like_one_of_the_standard_library():
    """Scalene runs a script, so a script's folder comes first on sys.path: perfkit/profile.py once
    shadowed the stdlib's `profile` and broke `perfkit profile --with scalene`."""
    import perfkit

    root = Path(perfkit.__file__).parent
    clashes = sorted(str(p.relative_to(root.parent)) for p in root.rglob("*.py")
                     if p.stem in sys.stdlib_module_names)
    assert clashes == []
