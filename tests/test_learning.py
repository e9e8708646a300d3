"""perfkit learn: per-seed final values, IQM and intervals, the paired verdict, the seed rule, the
record and its tables, the bad-input errors; the trial processes side by side."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from click.testing import CliRunner

from perfkit.cli.main import main
from perfkit.commands import learning
from perfkit.core import learning_stats as ls
from perfkit.core.scenario import Scenario, plan_variants
from perfkit.engine.seeds import TrialJob, run_parallel
from perfkit.records.learning import LearnResult, seed_of
from perfkit.records.trial import TrialResult
from perfkit.render.report import render_learn, rerender

# -- statistics ----------------------------------------------------------------------------------


def _windows(values, steps=1000, episodes=2.0):
    """One window per value (None: no episode ended in it)."""
    return [{"index": i, "agent_steps": steps, "seconds": 0.01, "sps": steps / 0.01, "phases": {},
             "learning": {} if v is None else {"heart.get": v, "episodes": episodes, "entropy": 1.0}}
            for i, v in enumerate(values)]


def test_final_value_weights_episodes_in_the_last_fifth_of_the_steps():
    pts = [(1000, 1, 0.0), (9000, 1, 1.0), (10000, 3, 2.0)]
    assert ls.final_value(pts, 10000) == pytest.approx((1 * 1.0 + 3 * 2.0) / 4)
    assert math.isnan(ls.final_value([(1000, 2, 0.5)], 10000))  # nothing late: an early value is no final one
    assert math.isnan(ls.final_value([], 10000))


def test_points_skip_windows_without_episodes_and_curves_bin_them():
    pts = ls.points(_windows([None, 1.0, None, 3.0]), "heart.get")
    assert pts == [(2000, 2.0, 1.0), (4000, 2.0, 3.0)]
    c = ls.curve(pts, np.array([0, 1000, 2000, 3000, 4000]))
    assert math.isnan(c[0]) and c[1] == 1.0 and math.isnan(c[2]) and c[3] == 3.0
    # the budget's last epoch overshoots it: still in the last bin
    assert ls.curve([(4100, 1.0, 5.0)], np.array([0, 2000, 4000]))[1] == 5.0
    assert ls.steps_to(c, np.array([0, 1000, 2000, 3000, 4000]), 2.0) == 4000
    assert ls.steps_to(c, np.array([0, 1000, 2000, 3000, 4000]), 5.0) == math.inf
    assert ls.steps_to(c, np.array([0, 1000, 2000, 3000, 4000]), 1.0, higher_is_better=False) == 2000


def test_iqm_drops_the_outer_quarters_and_its_interval_is_seeded():
    x = [0.0, 1.0, 1.1, 1.2, 9.0, 1.05, 0.95, 1.15]
    assert ls.iqm(np.asarray(x)) == pytest.approx(np.mean(sorted(x)[2:6]))
    a, b = ls.iqm_interval(x), ls.iqm_interval(x)
    assert a == b and a.low < a.value < a.high
    assert math.isnan(ls.iqm_interval([1.0]).low) and ls.iqm_interval([2.0, 2.0]) == ls.Estimate(2.0, 2.0, 2.0)


def test_paired_and_welch_intervals_are_scipys_t_intervals():
    rng = np.random.default_rng(3)
    a = rng.normal(1.0, 0.3, 8)
    b = a + rng.normal(-0.2, 0.1, 8)
    d = ls.paired_difference(a, b)
    ci = scipy.stats.ttest_rel(b, a).confidence_interval(0.95)
    assert (d.low, d.high) == pytest.approx((ci.low, ci.high))
    w = ls.welch_difference(a, b)
    ci = scipy.stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert (w.low, w.high) == pytest.approx((ci.low, ci.high))
    # a seed missing on either side leaves the pair out
    assert ls.paired_difference([1.0, math.nan, 2.0], [1.5, 3.0, 2.5]).value == pytest.approx(0.5)


def test_probability_of_improvement_is_mann_whitney_u_over_pairs():
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 3.5, 5.0, 0.5]
    u = scipy.stats.mannwhitneyu(b, a).statistic
    p = ls.probability_of_improvement(a, b)
    assert p.value == pytest.approx(u / 16) and 0 <= p.low <= p.value <= p.high <= 1
    assert ls.probability_of_improvement(a, b, higher_is_better=False).value == pytest.approx(1 - u / 16)


def test_verdicts_follow_the_interval_and_the_metric_direction():
    assert ls.verdict(ls.Estimate(-1, -2, -0.5)) == ls.LEARNS_WORSE
    assert ls.verdict(ls.Estimate(-1, -2, -0.5), higher_is_better=False) == ls.LEARNS_BETTER
    assert ls.verdict(ls.Estimate(1, 0.5, 2)) == ls.LEARNS_BETTER
    assert ls.verdict(ls.Estimate(0, -1, 1)) == ls.NO_DIFFERENCE
    assert ls.verdict(ls.Estimate(0)) == ls.TOO_FEW_SEEDS
    assert ls.precision_met(ls.Estimate(0, -0.1, 0.1), 1.0, 0.1)
    assert not ls.precision_met(ls.Estimate(0, -0.2, 0.2), 1.0, 0.1)
    assert not ls.precision_met(ls.Estimate(0, -0.1, 0.1), 0.0, 0.1)  # nothing to be relative to


def test_median_interval_says_never_when_most_seeds_never_got_there():
    est = ls.median_interval([1e5, math.inf, math.inf, math.inf, 2e5])
    assert est.value == math.inf and est.high == math.inf
    est = ls.median_interval([1e5, 2e5, 3e5, 2.5e5, math.inf])
    assert est.value == 2.5e5 and est.low >= 1e5
    # an even count: a resampled median half way to "never" is never, not a made-up step count
    est = ls.median_interval([100, 200, 300, 400, 500, math.inf])
    assert est.high == math.inf and est.low <= 350


# -- the record -----------------------------------------------------------------------------------

VARIANTS = plan_variants(Scenario.build(), [("preset", ["basic_easy_shaped", "make_arena"])])


def _trial(variant, seed: int, values, steps_per=1000, status="ok") -> TrialResult:
    windows = _windows(values, steps_per)
    sc = Scenario.from_dict({**variant.scenario.to_dict(), "seed": seed})
    tr = TrialResult(scenario=sc.to_dict(), label=variant.label, sps=1000.0, first_window_sps=900.0,
                     agent_steps=steps_per * len(values), seconds=len(values) * 1.0, epochs=len(values), phases={},
                     windows=windows, learning={}, env_config=None, env_config_hash=None,
                     vec={"agents_per_env": 24}, device="cpu", ppo={})
    if status == "failed":
        tr.error = "boom"
    return tr


def _result(finals_a, finals_b, paired=True, **kw) -> LearnResult:
    seeds = list(range(1, len(finals_a) + 1))
    trials = {VARIANTS[0].label: [], VARIANTS[1].label: []}
    for i, (v, finals) in enumerate(zip(VARIANTS, (finals_a, finals_b), strict=True)):
        for s, f in zip(seeds, finals, strict=True):
            trials[v.label].append(_trial(v, seed_of(paired, i, s), [0.1, 0.2, 0.3, 0.4, f]))
    # filed in the order they finished, not the seeds' order
    trials[VARIANTS[1].label].reverse()
    return LearnResult(variants=[v.label for v in VARIANTS], scenarios={}, steps=5000, seeds=seeds, paired=paired,
                       metrics=["heart.get"], lower_is_better=[], trials=trials, **kw)


def test_finals_are_matched_by_seed_and_a_regression_learns_worse():
    r = _result([1.3, 1.2, 1.4, 1.25, 1.35], [0.05, 0.02, 0.04, 0.06, 0.03])
    assert r.finals(VARIANTS[1].label, "heart.get") == [0.05, 0.02, 0.04, 0.06, 0.03]
    c = r.compare(VARIANTS[1].label, "heart.get")
    assert c.verdict == ls.LEARNS_WORSE and c.seeds == 5
    assert c.difference.value == pytest.approx(np.mean([0.05, 0.02, 0.04, 0.06, 0.03]) - 1.3)
    assert c.improvement.value == 0.0 and c.relative == pytest.approx(c.difference.value / 1.3, rel=0.05)


def test_a_failed_or_short_seed_is_nan_and_left_out_of_the_pairs():
    r = _result([1.3, 1.2, 1.4], [1.1, 1.0, 1.2])
    r.trials[VARIANTS[1].label][0].error = "boom"  # seed 3 (filed first)
    r.trials[VARIANTS[0].label][0].agent_steps = 100  # seed 1 stopped short
    assert math.isnan(r.finals(VARIANTS[1].label, "heart.get")[2])
    assert math.isnan(r.finals(VARIANTS[0].label, "heart.get")[0])
    assert r.compare(VARIANTS[1].label, "heart.get").seeds == 1
    assert r.compare(VARIANTS[1].label, "heart.get").verdict == ls.TOO_FEW_SEEDS


def test_metrics_not_asked_get_numbers_but_no_verdict_and_asked_ones_share_the_error_rate():
    r = _result([1.3, 1.2, 1.4], [0.1, 0.2, 0.1])
    assert r.available_metrics() == ["heart.get"]  # training stats (entropy) and counts are not metrics
    r.metrics = []
    assert r.compare(VARIANTS[1].label, "heart.get").verdict == ls.NOT_TESTED
    r.metrics = ["heart.get", "other"]
    wide = r.compare(VARIANTS[1].label, "heart.get").difference
    r.metrics = ["heart.get"]
    narrow = r.compare(VARIANTS[1].label, "heart.get").difference
    assert wide.half_width > narrow.half_width  # Bonferroni: 97.5% for each of two
    r.variants.append("third")  # two variants against the first: two verdicts per metric
    assert r.metric_confidence("heart.get") == pytest.approx(0.975)


def test_unpaired_seed_sets_use_welch():
    r = _result([1.3, 1.2, 1.4, 1.1], [1.25, 1.3, 1.2, 1.35], paired=False)
    c = r.compare(VARIANTS[1].label, "heart.get")
    ci = scipy.stats.ttest_ind([1.25, 1.3, 1.2, 1.35], [1.3, 1.2, 1.4, 1.1], equal_var=False).confidence_interval()
    assert (c.difference.low, c.difference.high) == pytest.approx((ci.low, ci.high))


def test_the_record_round_trips_and_report_rerenders_it(tmp_path):
    r = _result([1.3, 1.2, 1.4], [0.1, 0.2, 0.1], precision=0.5, stopping={"reason": "max seeds"})
    r.save(tmp_path / "learn.json")
    back = LearnResult.load(tmp_path / "learn.json")
    assert back.finals(VARIANTS[1].label, "heart.get") == r.finals(VARIANTS[1].label, "heart.get")
    first, again = render_learn(r), rerender(tmp_path)
    assert first.text == again.text and again.files["learning.png"].startswith(b"\x89PNG")
    assert "learns worse" in first.text and "P(B better than A)" in first.text
    assert "hearts/ep (heart.get)" in first.text and "3 seed(s) per variant finished" in first.text


# -- the seed rule (a runner that trains nothing) --------------------------------------------------

class FakeSeeds:
    """Stands in for run_parallel: a seed's final value drawn from N(mean[variant], sd), seeded by
    the seed and the variant, so runs are reproducible; optionally Ctrl-C after `stop_after` trials."""

    def __init__(self, means, sd=0.1, stop_after=None):
        self.means, self.sd, self.stop_after, self.calls = means, sd, stop_after, []

    def __call__(self, jobs, parallel, done):
        for job in jobs:
            if self.stop_after is not None and len(self.calls) == self.stop_after:
                raise KeyboardInterrupt
            self.calls.append((job.label, job.spec["scenario"]["seed"], parallel))
            seed = job.spec["scenario"]["seed"]
            v = next(x for x in VARIANTS if x.label == job.label)
            rng = np.random.default_rng([seed, VARIANTS.index(v)])
            final = self.means[job.label] + self.sd * rng.normal()
            tr = _trial(v, seed, [0.0] * 4 + [final], steps_per=job.spec["steps"] // 5)
            done(job, tr)


def _job(**kw):
    return learning.LearnJob(VARIANTS, steps=5000, seeds=kw.pop("seeds", 3), max_seeds=kw.pop("max_seeds", 3),
                             metrics=["heart.get"], **kw)


def test_without_precision_exactly_the_seeds_asked_run_paired(tmp_path):
    fake = FakeSeeds({VARIANTS[0].label: 1.0, VARIANTS[1].label: 0.5})
    r = learning.run(_job(seeds=4, max_seeds=4, parallel=2), tmp_path, runner=fake)
    assert r.seeds == [1, 2, 3, 4] and r.stopping["reason"] == "seeds"
    # seed-major (a pair finishes together); learn's seed s trains as trial seed s * 1000, so the env
    # seeds of consecutive seeds (pufferlib gives env i the trial seed + i) never overlap
    assert [c[1] for c in fake.calls] == [1000, 1000, 2000, 2000, 3000, 3000, 4000, 4000]
    assert r.compare(VARIANTS[1].label, "heart.get").verdict == ls.LEARNS_WORSE
    assert LearnResult.load(tmp_path / "learn.json").seeds == [1, 2, 3, 4]


def test_precision_plans_the_seeds_from_the_first_ones_spread(tmp_path):
    fake = FakeSeeds({VARIANTS[0].label: 1.0, VARIANTS[1].label: 0.9}, sd=0.05)
    r = learning.run(_job(seeds=3, max_seeds=30, precision=0.1, parallel=2), tmp_path, runner=fake)
    a, b = r.finals(VARIANTS[0].label, "heart.get")[:3], r.finals(VARIANTS[1].label, "heart.get")[:3]
    d = np.subtract(b, a)
    need = math.ceil((scipy.stats.t.ppf(0.975, 2) * d.std(ddof=1) / (0.1 * ls.iqm(np.asarray(a)))) ** 2)
    assert r.stopping["planned_seeds"] == max(3, need) == len(r.seeds) and r.stopping["reason"] == "planned"
    fake = FakeSeeds({VARIANTS[0].label: 1.0, VARIANTS[1].label: 0.9}, sd=0.5)
    r = learning.run(_job(seeds=3, max_seeds=5, precision=0.01), tmp_path, runner=fake)
    assert r.stopping["reason"] == "max seeds" and r.seeds == [1, 2, 3, 4, 5]


def test_a_stein_interval_is_never_narrower_than_the_first_stages_spread_allows():
    a = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    b = [1.5, 0.5, 1.2, 1.0, 1.0, 1.0]  # the later seeds agree exactly; the first three did not
    plain, stein = ls.paired_difference(a, b), ls.paired_difference(a, b, first_stage=3)
    first = np.subtract(b[:3], a[:3])
    assert stein.half_width == pytest.approx(scipy.stats.t.ppf(0.975, 2) * first.std(ddof=1) / math.sqrt(6))
    assert stein.half_width > plain.half_width


def test_time_limit_stops_adding_seeds(tmp_path):
    clock = iter(range(0, 10_000, 100))
    fake = FakeSeeds({VARIANTS[0].label: 1.0, VARIANTS[1].label: 0.9}, sd=0.5)
    r = learning.run(_job(seeds=2, max_seeds=50, precision=0.01, max_seconds=250), tmp_path, runner=fake,
                     clock=lambda: next(clock))
    assert r.stopping["reason"] == "time" and len(r.seeds) < r.stopping["planned_seeds"]


def test_unpaired_variants_train_other_seeds(tmp_path):
    fake = FakeSeeds({VARIANTS[0].label: 1.0, VARIANTS[1].label: 1.0})
    r = learning.run(_job(seeds=2, max_seeds=2, paired=False), tmp_path, runner=fake)
    assert [c[1] for c in fake.calls] == [1000, 100_001_000, 2000, 100_002_000]  # env seed blocks that never meet
    assert r.seeds_done(VARIANTS[1].label) == 2


def test_ctrl_c_keeps_the_finished_seeds(tmp_path):
    fake = FakeSeeds({VARIANTS[0].label: 1.0, VARIANTS[1].label: 0.5}, stop_after=5)
    r = learning.run(_job(seeds=4, max_seeds=4), tmp_path, runner=fake)
    assert r.interrupted and r.stopping["reason"] == "interrupted"
    assert r.seeds_done(VARIANTS[0].label) == 3 and r.seeds_done(VARIANTS[1].label) == 2
    assert LearnResult.load(tmp_path / "learn.json").interrupted


def test_rule_false_verdicts_stay_near_five_percent_in_simulation():
    """bench/learning_rule_sim.py's check in small: twins with heavy-tailed seeds under the
    precision rule."""
    from bench import learning_rule_sim

    rate = learning_rule_sim.false_verdict_rate(runs=400, seeds=5, max_seeds=20, precision=0.1, dist="t3",
                                                seed=1)
    assert rate <= 0.08


# -- choosing metrics and budgets before training -------------------------------------------------

def test_metrics_are_checked_against_what_the_env_reports():
    assert learning.choose_metrics([], ["episode_return", "heart.get"]) == ["heart.get"]
    assert learning.choose_metrics([], ["food", "score"]) == ["food"]
    assert learning.choose_metrics([], None) == ["episode_return"]
    assert learning.choose_metrics(["score"], None) == ["score"]  # nothing seen: cannot check yet
    with pytest.raises(learning.LearnInputError, match="'food'.*report: episode_return, heart.get"):
        learning.choose_metrics(["food"], ["episode_return", "heart.get"])
    with pytest.raises(learning.LearnInputError, match="less than one epoch"):
        learning.check_budget(1000, agents=24, num_envs=4, num_steps=128)
    learning.check_budget(12288, agents=24, num_envs=4, num_steps=128)


def test_preflight_sees_the_arenas_episode_metrics():
    pf = learning.preflight(VARIANTS[0], max_steps=3000)
    assert pf.agents == 24 and "heart.get" in pf.metrics and "episode_return" in pf.metrics
    assert "entropy" not in pf.metrics and not any(m.startswith("curriculum.") for m in pf.metrics)  # counters


def test_preflight_waits_for_a_gymnasium_episode_to_end(monkeypatch):
    """pufferlib's Gymnasium adapter returns the env's info dict on every step: an episode has
    ended only when the adapter says done."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench" / "userenvs"))
    v = plan_variants(Scenario.build({"env": "cartpole_stale:make", "wrapper": "none"}), [])[0]
    pf = learning.preflight(v)
    assert pf.agents == 1 and pf.metrics == ["episode_length", "episode_return"]


def test_an_env_that_raises_in_the_random_run_is_a_clear_error(monkeypatch):
    import envs.registry

    def broken(seed=0, buf=None):
        raise RuntimeError("the map file is missing")

    monkeypatch.setattr(envs.registry, "make_creator", lambda values: broken)
    with pytest.raises(learning.LearnInputError, match="random-action run of the env failed: RuntimeError: the map"):
        learning.preflight(VARIANTS[0])


@pytest.mark.parametrize("args, message", [
    (["--seeds", "1"], "at least 2 seeds"),
    (["--metric", "food"], "'food': the env's episodes do not report it"),
    (["--steps", "5000"], "less than one epoch"),
    (["--max-seeds", "9"], "--max-seeds is the limit of --precision"),
    (["--precision", "0.1", "--max-seeds", "3", "--seeds", "5"], "--max-seeds 3 is below --seeds 5"),
    (["--metric", "heart.get", "--metric", "heart.get:min"], "names a metric twice"),
])
def test_bad_input_is_a_usage_error_before_any_training(tmp_path, args, message):
    res = CliRunner().invoke(main, ["learn", "--vary", "preset=basic_easy_shaped,make_arena", "--out",
                                    str(tmp_path / "r"), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert not (tmp_path / "r").exists()


# -- trial processes side by side -------------------------------------------------------------------

FAKE_TRIAL = """
import json, sys, time
spec, out = json.load(open(sys.argv[1])), sys.argv[2]
if spec["scenario"]["seed"] == 99:
    sys.exit(3)
time.sleep(0.3)
open(out + ".tmp", "w").write(json.dumps({"schema_version": 4, "kind": "trial", "scenario": spec["scenario"],
    "label": "x", "sps": 1.0, "first_window_sps": 1.0, "agent_steps": spec["steps"], "seconds": 1.0, "epochs": 1,
    "phases": {}, "windows": [], "learning": {}, "env_config": None, "env_config_hash": None, "vec": {},
    "device": "cpu", "ppo": {}, "machine": {}}))
import os; os.replace(out + ".tmp", out)
"""


def test_trials_run_side_by_side_and_a_crash_is_a_failed_result(tmp_path):
    script = tmp_path / "fake_trial.py"
    script.write_text(FAKE_TRIAL)
    sc = Scenario.build().to_dict()
    jobs = [TrialJob({"scenario": {**sc, "seed": s}, "steps": 10}, tmp_path / f"t{s}.json", sc, f"v{s}")
            for s in (1, 2, 99, 3)]
    finished = []
    results = run_parallel(jobs, 2, lambda j, r: finished.append(j.label), launcher=[sys.executable, str(script)],
                           poll=0.05)
    assert [r.status for r in results] == ["ok", "ok", "failed", "ok"]
    assert results[2].exit_status == 3 and "exited 3" in results[2].error
    assert sorted(finished) == ["v1", "v2", "v3", "v99"]
    assert json.loads((tmp_path / "t1.spec.json").read_text())["steps"] == 10


def test_ctrl_c_stops_the_trials_under_way_and_keeps_the_finished_ones(tmp_path):
    script = tmp_path / "fake_trial.py"
    script.write_text(FAKE_TRIAL.replace("time.sleep(0.3)", "time.sleep(0.3 if spec['scenario']['seed'] == 1 else 60)"))
    sc = Scenario.build().to_dict()
    jobs = [TrialJob({"scenario": {**sc, "seed": s}, "steps": 10}, tmp_path / f"t{s}.json", sc, f"v{s}")
            for s in (1, 2, 3)]

    def interrupt(job, result):  # Ctrl-C as the first trial finishes, the second still running
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as stop:
        run_parallel(jobs, 2, interrupt, launcher=[sys.executable, str(script)], poll=0.05, grace_seconds=10)
    pairs = stop.value.results
    assert [(j.label, r.status) for j, r in pairs] == [("v1", "ok"), ("v2", "interrupted")]
    assert not (tmp_path / "t3.spec.json").exists()  # the third never started
