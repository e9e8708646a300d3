"""Gate logic on committed fixtures: parsing, verdicts and exact messages. No timing involved."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from click.testing import CliRunner

from perfkit.cli.main import main
from perfkit.commands import gate as g
from perfkit.records.store import ResultsError, read_json, write_json

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
    # the sides are compared as resolved scenarios, not as text: getattr is the default wrapper
    ("sps() >= 0.9 * sps(wrapper=getattr)", "compares a scenario with itself (both sides are defaults)"),
    ("sps(inject-cost-us=0.0) >= 0.9 * sps(inject-cost-us=0)", "compares a scenario with itself"),
    ("sps(checkpoint=epochs:02) >= 0.9 * sps(checkpoint=epochs:2)",
     "compares a scenario with itself (both sides are checkpoint=epochs:2)"),
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


@pytest.mark.slow
def test_cli_gate_runs_and_fails_on_a_big_injected_cost(tmp_path):
    """The real measurement path, sized to be unmistakable: 200 us per env step is a >50% drop.
    Rounds are added until the ratios are known to ±10%: on a loaded machine (a CI run beside other
    work gave [0.35, 1.10] from a fixed 4 rounds) it takes more of them, never a different verdict."""
    checks = tmp_path / "checks.txt"
    checks.write_text("# comment line\nsps(inject-cost-us=200) >= 0.9 * sps(inject-cost-us=0)  # big\n"
                      "sps(wrapper=none) >= 0.5 * sps(inject-cost-us=0)\n")
    r = CliRunner().invoke(main, ["gate", "--checks-file", str(checks), "--rounds", "300", "--precision", "0.1",
                                  "--max-minutes", "2", "--block-steps", "10", "--out", str(tmp_path / "out")])
    assert r.exit_code == 1, r.output
    assert "FAILED: sps(inject-cost-us=200) >= 0.9 * sps(inject-cost-us=0)" in r.output
    rep = json.loads((tmp_path / "out" / "gate.json").read_text())
    assert rep["failed"] == ["sps(inject-cost-us=200) >= 0.9 * sps(inject-cost-us=0)"]
    assert [c["status"] for c in rep["checks"]][1] == "ok"


@pytest.mark.slow
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


# -- baselines that must not pass by accident ---------------------------------------------------

def _write_baseline(tmp_path, runs, name="b.json"):
    path = tmp_path / name
    write_json(path, "gate-baseline", {"runs": [{"scores": sc} for sc in runs], "block_steps": 100})
    return path


def test_one_run_baseline_is_rejected(tmp_path):
    # one run: no spread between processes, so the interval would be NaN and read "within noise"
    path = _write_baseline(tmp_path, [{"wrapper=getattr": [10.0, 10.0]}])
    with pytest.raises(g.GateError) as e:
        g.load_baseline(path, ["wrapper=getattr"])
    assert str(e.value).startswith(f"baseline {path} holds 1 run(s), need at least 2")


@pytest.mark.parametrize("scores,shown", [([], "[]"), ([10.0, 0.0], "[10.0, 0.0]"), ([10.0, -1.0], "[10.0, -1.0]"),
                                          ([math.nan, 10.0], "[nan, 10.0]"), (["10"], "['10']"), (10.0, "10.0")])
def test_baseline_scores_must_be_finite_positive_lists(tmp_path, scores, shown):
    path = _write_baseline(tmp_path, [{"wrapper=getattr": [10.0]}, {"wrapper=getattr": scores}])
    with pytest.raises(g.GateError) as e:
        g.load_baseline(path, ["wrapper=getattr"])
    assert (f"baseline {path}: run 2 scores for 'wrapper=getattr' must be a non-empty list of finite numbers > 0, "
            f"got {shown}") in str(e.value)


def test_baseline_missing_a_needed_label_is_rejected_on_load(tmp_path):
    path = _write_baseline(tmp_path, [{"wrapper=getattr": [10.0]}] * 2)
    assert len(g.load_baseline(path, ["wrapper=getattr"])["runs"]) == 2
    with pytest.raises(g.GateError, match=f"baseline {path} has no entry for 'wrapper=none'"):
        g.load_baseline(path, ["wrapper=none"])


def test_baseline_that_is_a_json_list_is_a_clean_error(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(ResultsError, match="expected a JSON object at the top level, got a JSON array"):
        read_json(path, "gate-baseline")
    with pytest.raises(g.GateError, match=f"baseline {path}: expected a JSON object at the top level"):
        g.load_baseline(path)


def test_evaluate_rejects_a_one_run_baseline_given_directly():
    one_run = {"runs": BASELINE["runs"][:1]}
    with pytest.raises(g.GateError, match="holds 1 run"):
        g.evaluate(g.parse_check("sps(wrapper=getattr) >= 0.9 * baseline"), RUN["samples"], RUN["reference"], one_run)
    with pytest.raises(g.GateError, match="expected a JSON object at the top level, got list"):
        g.evaluate(g.parse_check("sps(wrapper=getattr) >= 0.9 * baseline"), RUN["samples"], RUN["reference"], [])


def test_an_undefined_interval_is_an_error_not_within_noise():
    # one round: no interval; before, NaN compared False both ways and the check passed
    one_round = {k: v[:1] for k, v in RUN["samples"].items()}
    for text in ("sps(wrapper=getattr) >= 0.9 * sps(wrapper=none)", "sps(wrapper=getattr) >= 0.9 * baseline"):
        with pytest.raises(g.GateError) as e:
            g.evaluate(g.parse_check(text), one_round, RUN["reference"][:1], BASELINE)
        assert str(e.value).startswith(f"check {text!r} cannot be decided: ratio ")
        assert "CI [nan, nan] (too few trials)" in str(e.value)


def _no_measuring(*a, **k):
    raise AssertionError("the gate measured before rejecting its input")


def test_cli_one_run_baseline_is_exit_2_before_measuring(tmp_path, monkeypatch):
    monkeypatch.setattr(g, "measure", _no_measuring)
    path = _write_baseline(tmp_path, [{"wrapper=getattr": [10.0, 10.0]}])
    r = CliRunner().invoke(main, ["gate", "--check", "sps(wrapper=getattr) >= 0.9 * baseline", "--baseline",
                                  str(path), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2 and "holds 1 run(s), need at least 2" in r.output


def test_cli_list_baseline_is_exit_2(tmp_path, monkeypatch):
    monkeypatch.setattr(g, "measure", _no_measuring)
    path = tmp_path / "list.json"
    path.write_text("[]")
    r = CliRunner().invoke(main, ["gate", "--check", "sps(wrapper=getattr) >= 0.9 * baseline", "--baseline",
                                  str(path), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2 and "expected a JSON object at the top level, got a JSON array" in r.output


def test_cli_undecidable_check_is_exit_2_not_a_pass(tmp_path, monkeypatch):
    one_round = g.Measurement({"wrapper=getattr": [95.0]}, [10.0], rounds=1, block_steps=100, seconds=0.1, machine={})
    monkeypatch.setattr(g, "measure", lambda *a, **k: one_round)
    r = CliRunner().invoke(main, ["gate", "--check", "sps(wrapper=getattr) >= 0.9 * baseline", "--baseline",
                                  str(FIX / "gate_baseline.json"), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2 and "cannot be decided" in r.output and "within noise" not in r.output


def test_cli_binary_checks_file_is_exit_2(tmp_path):
    path = tmp_path / "checks.bin"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    r = CliRunner().invoke(main, ["gate", "--checks-file", str(path)])
    assert r.exit_code == 2 and f"--checks-file {str(path)!r}: not a text file (byte 0 is not UTF-8)" in r.output


def test_cli_cuda_check_without_cuda_is_exit_2(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(g, "measure", _no_measuring)
    r = CliRunner().invoke(main, ["gate", "--check", "sps(wrapper=none) >= 0.9 * sps(device=cuda)",
                                  "--out", str(tmp_path / "out")])
    assert r.exit_code == 2
    assert "check workload sps(device=cuda): no CUDA device is available here; valid: auto, cpu" in r.output


# -- the precision rule, the record, checks from files -------------------------------------------

def _rounds(ratio, noise, n, seed=0):
    """n rounds of a reference workload at 100 and another at `ratio` x it, with relative noise."""
    rng = np.random.default_rng(seed)
    base = 100 * np.exp(rng.normal(0, 0.05, n))  # the machine's speed drifts: cancels in the ratio
    other = base * ratio * np.exp(rng.normal(0, noise, n))
    return {"wrapper=none": list(base), "wrapper=getattr": list(other)}, [10.0] * n


def test_precision_rule_looks_at_width_not_at_the_verdict():
    check = g.parse_check("sps(wrapper=getattr) >= 0.98 * sps(wrapper=none)")
    until = g.until_precise([check], g.GateRule(precision=0.01, min_rounds=6))
    for ratio in (0.90, 0.98, 1.05):  # far below, at and above the threshold: the same decision
        quiet = _rounds(ratio, 0.002, 8)
        assert until(*quiet) is True
        assert until(*_rounds(ratio, 0.05, 8)) is False  # noisy rounds: not yet known to 1%
        assert until({k: v[:5] for k, v in quiet[0].items()}, quiet[1][:5]) is False  # fewer than min_rounds
    assert g.until_precise([check], g.GateRule(rounds=20))(*_rounds(1.0, 0.0001, 8)) is False  # no precision


def test_baseline_checks_count_only_this_runs_own_error_toward_the_precision():
    check = g.parse_check("sps(wrapper=getattr) >= 0.9 * baseline")
    samples = {"wrapper=getattr": [95.0, 95.5, 94.5, 95.0, 95.2, 94.8]}
    reference = [10.0] * 6
    hw = g.own_half_width(check, samples, reference)
    logs = np.log(np.array(samples["wrapper=getattr"]) / 10)
    expected = math.exp(scipy.stats.t.ppf(0.975, 5) * logs.std(ddof=1) / math.sqrt(6)) - 1
    assert hw == pytest.approx(expected, rel=1e-9)


class _FakeWorkload:
    def __init__(self, scenario):
        self.label = scenario.label()

    def block(self, steps):
        return 100.0 if "none" in self.label else 95.0

    def close(self):
        pass


def test_measure_stops_at_the_precision_or_the_time_budget(monkeypatch):
    monkeypatch.setattr(g, "RolloutWorkload", _FakeWorkload)
    monkeypatch.setattr(g, "reference_workload", lambda repeats=40: 10.0)
    labels = ["wrapper=getattr", "wrapper=none"]
    m = g.measure(labels, rounds=50, until=lambda s, r: len(r) >= 7)
    assert (m.rounds, m.stopped, len(m.samples["wrapper=none"])) == (7, "precision", 7)
    ticks = iter(range(1000))  # a fake clock: one second per reading
    m = g.measure(labels, rounds=50, max_seconds=4, clock=lambda: float(next(ticks)))
    assert (m.rounds, m.stopped) == (4, "time")
    assert (g.measure(labels, rounds=3).stopped, g.measure(labels, rounds=3).rounds) == ("rounds", 3)


def test_gate_run_record_round_trips_and_renders(monkeypatch, tmp_path):
    from perfkit.render.table import render_gate

    monkeypatch.setattr(g, "RolloutWorkload", _FakeWorkload)
    monkeypatch.setattr(g, "reference_workload", lambda repeats=40: 10.0)
    checks = [g.parse_check("sps(wrapper=getattr) >= 0.98 * sps(wrapper=none)"),
              g.parse_check("sps(wrapper=getattr) >= 0.9 * baseline")]
    record = g.run(checks, g.GateRule(rounds=100, precision=0.01), 10, BASELINE)
    assert record.measurement.stopped == "precision" and record.measurement.rounds == 6  # noiseless: min rounds
    assert record.failures == ["sps(wrapper=getattr) >= 0.98 * sps(wrapper=none): ratio 0.950, "
                               "95% CI [0.950, 0.950] entirely below 0.980"]
    record.save(tmp_path / "gate.json")
    back = g.GateRecord.load(tmp_path / "gate.json")
    assert back.to_dict() == record.to_dict() and back.rule == record.rule
    text = render_gate(back)
    # the fixture baseline's runs agree exactly: no blind zone below the threshold
    assert ("| sps(wrapper=getattr) >= 0.9 * baseline           | 0.950   | [0.950, 0.950] | 0.900       | ok        "
            "| 0.900            |") in text
    assert text.splitlines()[0].endswith("| can fail below   |")
    assert "| wrapper=getattr                            | 95                       |" in text
    assert record.stop_reason == "every check known to +-1.0% after 6 rounds"


def test_detectable_ratio_of_a_baseline_check_follows_the_spread_between_processes():
    # run means 12, 12.5, 11.5: the prediction interval alone spans t(2) x sd x sqrt(1 + 1/3) in log space
    r = _eval("sps(inject-cost-us=0) >= 0.95 * baseline")
    logs = np.log([12.0, 12.5, 11.5])
    half = scipy.stats.t.ppf(0.975, 2) * logs.std(ddof=1) * math.sqrt(1 + 1 / 3)
    assert r.detectable_below == pytest.approx(0.95 / math.exp(half), rel=1e-6)
    assert _eval("sps(wrapper=getattr) >= 0.98 * sps(wrapper=none)").detectable_below is None


def test_checks_come_from_texts_and_a_file(tmp_path):
    f = tmp_path / "checks.txt"
    f.write_text("# a comment\n\nsps(wrapper=none) >= 0.5 * baseline  # trailing comment\n")
    got = g.read_checks(["sps(wrapper=getattr) >= 0.9 * sps(wrapper=none)"], f)
    assert [c.text for c in got] == ["sps(wrapper=getattr) >= 0.9 * sps(wrapper=none)",
                                     "sps(wrapper=none) >= 0.5 * baseline"]
    with pytest.raises(g.GateError, match=f"--checks-file '{tmp_path / 'nope'}': No such file"):
        g.read_checks([], tmp_path / "nope")
    (tmp_path / "bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(g.GateError, match="not a text file"):
        g.read_checks([], tmp_path / "bin")
    with pytest.raises(g.GateError, match="no checks"):
        g.read_checks([], None)


def test_a_users_env_without_set_env_config_runs_unwrapped_as_in_compare(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "bench" / "userenvs"))
    c = g.parse_check("sps(env=forage:make_twin) >= 0.98 * sps(env=forage:make)")
    assert (c.lhs, c.rhs) == ("wrapper=none,env=forage:make_twin", "wrapper=none,env=forage:make")
    assert g.scenario_for(c.lhs)["wrapper"] == "none"
    with pytest.raises(g.GateError, match="no_such_module"):
        g.parse_check("sps(env=no_such_module:make) >= 0.98 * sps(wrapper=none)")
