import math

import pytest

from perfkit import stats


def test_summary_and_instability_warning():
    s = stats.summarize([100.0, 110.0, 90.0])
    assert (s.n, s.median, s.mean, s.min, s.max) == (3, 100.0, 100.0, 90.0, 110.0)
    assert s.stdev == pytest.approx(10.0) and s.cv == pytest.approx(0.1) and s.unstable
    assert not stats.summarize([100.0, 101.0, 99.0]).unstable


def test_clear_speedup_is_faster_with_a_paired_interval():
    c = stats.compare([100.0, 102.0, 98.0], [120.0, 123.0, 117.0])
    assert c.verdict == stats.FASTER
    assert c.ratio == pytest.approx(1.2, rel=1e-3)
    assert 1.0 < c.ci_low < 1.2 < c.ci_high
    assert stats.describe(c) == "1.20x faster"


def test_clear_slowdown_is_slower():
    c = stats.compare([100.0, 102.0, 98.0], [80.0, 81.0, 79.0])
    assert c.verdict == stats.SLOWER and stats.describe(c) == f"{1 / c.ratio:.2f}x slower"


def test_noise_is_no_significant_difference():
    c = stats.compare([100.0, 104.0, 96.0, 101.0], [103.0, 97.0, 100.0, 99.0])
    assert c.verdict == stats.SAME and c.ci_low < 1.0 < c.ci_high


def test_two_trials_give_a_wide_interval():
    # 3 of 3 rounds faster by ~8% looks convincing; with 2 rounds the t-interval stays wide.
    c = stats.compare([77000.0, 75000.0], [83000.0, 82000.0])
    assert c.verdict == stats.SAME and c.ci_high - c.ci_low > 0.15


def test_unequal_counts_fall_back_to_welch():
    c = stats.compare([100.0, 101.0, 99.0, 100.0], [150.0, 151.0, 149.0])
    assert c.verdict == stats.FASTER and c.ratio == pytest.approx(1.5, rel=1e-2)


def test_one_trial_gives_no_verdict():
    c = stats.compare([100.0], [150.0])
    assert c.verdict == stats.TOO_FEW and math.isnan(c.ci_low) and c.ratio == 1.5
