"""Gate logic on committed fixtures: parsing, verdicts and exact messages. No timing involved."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from perfkit import gate as g
from perfkit.cli import main

FIX = Path(__file__).parent / "fixtures"
RUN = json.loads((FIX / "gate_run.json").read_text())
BASELINE = g.load_baseline(FIX / "gate_baseline.json")


def _eval(text):
    return g.evaluate(g.parse_check(text), RUN["samples"], RUN["reference"], BASELINE)


def test_parse_relative_and_baseline_checks():
    c = g.parse_check("sps(wrapper=getattr) >= 0.98 * sps(wrapper=none)")
    assert (c.lhs, c.factor, c.rhs, c.against_baseline) == ("wrapper=getattr", 0.98, "wrapper=none", False)
    b = g.parse_check("  sps(desync=early-reset,wrapper=getattr)>=.9*baseline ")
    assert b.lhs == "wrapper=getattr,desync=early-reset" and b.against_baseline  # axis-table order
    assert g.labels_needed([c, b]) == ["wrapper=getattr", "wrapper=none", "wrapper=getattr,desync=early-reset"]


@pytest.mark.parametrize("text,message", [
    ("sps(wrapper=getattr) > 0.98 * sps(wrapper=none)", "cannot parse check"),
    ("sps(wrapper=proxy) >= 0.98 * sps(wrapper=none)", "invalid value 'proxy' for axis 'wrapper'"),
    ("sps(wrapper=getattr) >= 3 * sps(wrapper=none)", "factor 3.0 must be in (0, 2]"),
    ("sps(wrapper=none) >= 0.9 * sps(wrapper=none)", "compares a scenario with itself"),
])
def test_bad_checks_are_rejected_with_the_reason(text, message):
    with pytest.raises(g.GateError) as e:
        g.parse_check(text)
    assert message in str(e.value)


def test_a_steady_five_percent_drop_fails_with_an_exact_message():
    r = _eval("sps(wrapper=getattr) >= 0.98 * sps(wrapper=none)")
    assert r.status == "FAIL"
    assert r.fails() == ("sps(wrapper=getattr) >= 0.98 * sps(wrapper=none): ratio 0.950, "
                         "95% CI [0.950, 0.950] entirely below 0.980")


def test_the_same_drop_passes_a_looser_threshold():
    r = _eval("sps(wrapper=getattr) >= 0.9 * sps(wrapper=none)")
    assert (r.status, r.fails()) == ("ok", None)


def test_a_noisy_difference_is_within_noise_not_a_failure():
    r = _eval("sps(wrapper=getattribute) >= 0.98 * sps(wrapper=none)")
    assert r.status == "within noise" and r.fails() is None
    assert r.ci_low < 0.98 < r.ci_high


def test_baseline_checks_divide_by_the_reference_workload():
    # getattr now: 95/10 = 9.5 per reference unit in every round; baseline: exactly 10 in 3 runs
    r = _eval("sps(wrapper=getattr) >= 0.98 * baseline")
    assert r.fails() == ("sps(wrapper=getattr) >= 0.98 * baseline: ratio 0.950, 95% CI [0.950, 0.950] "
                         "entirely below 0.980")
    assert _eval("sps(wrapper=getattr) >= 0.9 * baseline").status == "ok"


def test_baseline_spread_between_processes_widens_the_interval():
    # inject-cost-us=0 now scores 10 against run means 12, 12.5, 11.5 (geometric mean 11.993): a 17%
    # drop, but with 3 runs that far apart the prediction interval (t with 2 df: 4.303 x 0.0482 in
    # log space) still reaches above 0.95
    r = _eval("sps(inject-cost-us=0) >= 0.95 * baseline")
    assert r.status == "within noise" and r.ratio == pytest.approx(0.8338, abs=1e-4)
    assert r.ci_low == pytest.approx(0.6775, abs=1e-3) and r.ci_high == pytest.approx(1.0258, abs=1e-3)


def test_missing_baseline_entry_names_the_workload():
    with pytest.raises(g.GateError, match="baseline has no entry for 'wrapper=none'"):
        _eval("sps(wrapper=none) >= 0.9 * baseline")


def test_cli_missing_baseline_file_is_exit_2_naming_the_file(tmp_path):
    missing = tmp_path / "nope.json"
    r = CliRunner().invoke(main, ["gate", "--check", "sps(wrapper=getattr) >= 0.9 * baseline", "--baseline",
                                  str(missing)])
    assert r.exit_code == 2 and str(missing) in r.output and "no such file" in r.output


def test_cli_without_checks_is_exit_2():
    r = CliRunner().invoke(main, ["gate"])
    assert r.exit_code == 2 and "no checks" in r.output


def test_cli_bad_check_text_is_exit_2():
    r = CliRunner().invoke(main, ["gate", "--check", "sps(wrapper=getattr) ~ sps(wrapper=none)"])
    assert r.exit_code == 2 and "cannot parse check" in r.output


def test_cli_gate_runs_and_fails_on_a_big_injected_cost(tmp_path):
    """The real measurement path, sized to be unmistakable: 200 us per env step is a >50% drop."""
    checks = tmp_path / "checks.txt"
    checks.write_text("# comment line\nsps(inject-cost-us=200) >= 0.9 * sps(inject-cost-us=0)  # big\n"
                      "sps(inject-cost-us=0.0) >= 0.5 * sps(inject-cost-us=0)\n")
    r = CliRunner().invoke(main, ["gate", "--checks-file", str(checks), "--rounds", "4", "--block-steps", "10",
                                  "--out", str(tmp_path / "out")])
    assert r.exit_code == 1, r.output
    assert "FAILED: sps(inject-cost-us=200) >= 0.9 * sps(inject-cost-us=0)" in r.output
    rep = json.loads((tmp_path / "out" / "gate.json").read_text())
    assert rep["failed"] == ["sps(inject-cost-us=200) >= 0.9 * sps(inject-cost-us=0)"]
    assert [c["status"] for c in rep["checks"]][1] == "ok"


def test_cli_update_baseline_then_gate_against_it(tmp_path):
    path = tmp_path / "base" / "gate.json"
    check = "sps(wrapper=none) >= 0.5 * baseline"
    r = CliRunner().invoke(main, ["gate", "--check", check, "--update-baseline", "--baseline-runs", "2",
                                  "--baseline", str(path), "--rounds", "3", "--block-steps", "5"])
    assert r.exit_code == 0, r.output
    base = g.load_baseline(path)
    assert len(base["runs"]) == 2 and len(base["runs"][0]["scores"]["wrapper=none"]) == 3
    assert base["machine"]["logical_cores"] >= 1 and [p.name for p in path.parent.iterdir()] == ["gate.json"]
    r = CliRunner().invoke(main, ["gate", "--check", check, "--baseline", str(path), "--rounds", "3",
                                  "--block-steps", "5", "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "run" / "gate.json").read_text())["failed"] == []
