"""The comparison's statistics, pinned to values worked out by hand (or in textbooks) and
cross-checked with scipy: bounded intervals, the paired and Welch tests, Holm, power, seeds needed."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from pipeline.compare import stats
from pipeline.tracking import contract

T_975_DF2 = 4.302652729911275  # two-sided 95% t quantile, 2 degrees of freedom (any t table)
T_975_DF1 = 12.706204736174707
Z_975, Z_80 = 1.959963984540054, 0.8416212335729143  # normal quantiles: alpha/2 = 0.025, power 0.8
STRIDE = [0.80, 0.82, 0.84]  # seeds 0, 1, 2
MAXPOOL = [0.90, 0.91, 0.92]


def _expit(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_accuracy_interval_is_the_logit_t_interval_and_stays_inside_0_1():
    mean, std, low, high = stats.mean_ci(STRIDE, scale=stats.LOGIT)
    half = T_975_DF2 * 0.02 / math.sqrt(3) / (0.82 * 0.18)  # delta method: se / (m (1 - m))
    centre = math.log(0.82 / 0.18)
    assert (mean, std, low, high) == pytest.approx((0.82, 0.02, _expit(centre - half), _expit(centre + half)))
    # two seeds far apart: the plain t interval leaves [0, 1], the logit one cannot
    _, _, t_low, t_high = stats.mean_ci([0.5, 0.99], scale=stats.T)
    assert (t_low, t_high) == pytest.approx((0.745 - T_975_DF1 * 0.245, 0.745 + T_975_DF1 * 0.245), rel=1e-3)
    assert t_low < 0 and t_high > 1
    _, _, low, high = stats.mean_ci([0.5, 0.99], scale=stats.LOGIT)
    assert 0 < low < 0.745 < high < 1
    assert stats.mean_ci([1.0, 1.0, 1.0], scale=stats.LOGIT)[2:] == (1.0, 1.0)  # no spread: exact
    assert (
        stats.scale_for(contract.VAL_ACCURACY) == stats.LOGIT
        and stats.scale_for(contract.VAL_LOSS) == stats.T
    )


def test_paired_test_uses_per_seed_differences_and_beats_welch_on_paired_seeds():
    differences = np.subtract(MAXPOOL, STRIDE)  # 0.10, 0.09, 0.08: mean 0.09, sd 0.01
    se = 0.01 / math.sqrt(3)
    result = stats.paired(MAXPOOL, STRIDE)
    assert result.test == stats.PAIRED and result.n == 3 and result.difference == pytest.approx(0.09)
    assert (result.ci_low, result.ci_high) == pytest.approx((0.09 - T_975_DF2 * se, 0.09 + T_975_DF2 * se))
    assert result.p_value == pytest.approx(2 * scipy_stats.t.sf(0.09 / se, 2))
    assert result.p_value == pytest.approx(scipy_stats.ttest_rel(MAXPOOL, STRIDE).pvalue)
    assert result.variance == pytest.approx(differences.var(ddof=1))
    # a shared per-seed offset is noise to Welch, not to the paired test
    offset = np.array([0.0, 0.05, -0.05])
    a, b = np.add(STRIDE, offset) + 0.01, np.add(STRIDE, offset)
    assert stats.paired(a, b).p_value == 0.0 and stats.paired(a, b).ci_low == pytest.approx(0.01)
    assert stats.welch(a, b).p_value > 0.5


def test_welch_matches_the_textbook_formula_and_scipy():
    a, b = np.array(MAXPOOL), np.array([0.80, 0.82, 0.84, 0.70])
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se, df = math.sqrt(va + vb), (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    difference = a.mean() - b.mean()
    half = scipy_stats.t.ppf(0.975, df) * se
    result = stats.welch(a, b)
    assert result.test == stats.WELCH and result.n == 3
    assert (result.difference, result.ci_low, result.ci_high) == pytest.approx(
        (difference, difference - half, difference + half)
    )
    assert result.p_value == pytest.approx(2 * scipy_stats.t.sf(abs(difference) / se, df))
    assert result.p_value == pytest.approx(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue)


def test_versus_pairs_on_shared_seeds_and_falls_back_to_welch():
    baseline = pd.Series(STRIDE, index=["0", "1", "2"])
    assert stats.versus(pd.Series(MAXPOOL, index=["0", "1", "2"]), baseline).test == stats.PAIRED
    assert stats.versus(pd.Series(MAXPOOL, index=["3", "4", "5"]), baseline).test == stats.WELCH
    partly = stats.versus(pd.Series([0.9, 0.91, 0.5], index=["0", "1", "7"]), baseline)
    assert partly.test == stats.PAIRED and partly.n == 2 and partly.difference == pytest.approx(0.095)
    assert stats.versus(pd.Series([0.9], index=["0"]), baseline) is None  # one seed: no test


def test_holm_matches_hand_computed_adjustment():
    # sorted: 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> running max 0.03, 0.06, 0.06
    assert list(stats.holm([0.01, 0.04, 0.03])) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = stats.holm([0.5, math.nan, 0.6])  # a missing p-value neither counts nor changes
    assert adjusted[0] == adjusted[2] == 1.0 and math.isnan(adjusted[1])
    assert list(stats.holm([0.02])) == [0.02] and stats.holm([]).size == 0


def test_power_and_the_detectable_difference():
    assert stats.power(0.0, 5) == pytest.approx(stats.ALPHA)  # no effect: rejects at the test's level
    # many degrees of freedom: the normal approximation (z_0.975 + z_0.8) * se
    assert stats.detectable(1.0, 100_000) == pytest.approx(Z_975 + Z_80, rel=1e-4)
    assert stats.power(stats.detectable(0.01, 4) / 0.01, 4) == pytest.approx(stats.POWER)  # nc = d / se
    # simulated paired experiments with that true difference reject about 80% of the time
    rng, n, sd = np.random.default_rng(0), 5, 0.02
    true = stats.detectable(sd / math.sqrt(n), n - 1)
    samples = rng.normal(true, sd, size=(20_000, n))
    t = samples.mean(axis=1) / (samples.std(axis=1, ddof=1) / math.sqrt(n))
    assert np.mean(np.abs(t) > scipy_stats.t.ppf(0.975, n - 1)) == pytest.approx(0.8, abs=0.015)


def test_seeds_needed_reproduces_textbook_sample_sizes():
    # paired t-test, effect 0.5 sd of the differences, alpha 0.05, power 0.8: 34 (G*Power)
    assert stats.seeds_needed(0.5, 1.0) == 34 and stats.seeds_needed(0.8, 1.0) == 15
    # two groups with equal variances (Welch's df = 2 (n - 1)): 64 and 26 per group (Cohen, 1988)
    assert stats.seeds_needed(0.5, 2.0, df_per_seed=2.0) == 64
    assert stats.seeds_needed(0.8, 2.0, df_per_seed=2.0) == 26
    assert stats.seeds_needed(0.0, 1.0) == math.inf and math.isnan(stats.seeds_needed(0.1, math.nan))
    n = int(stats.seeds_needed(0.013, 0.014**2))  # the case: difference 0.013, std 0.014
    assert stats.power(0.013 / (0.014 / math.sqrt(n)), n - 1) >= 0.8
    assert stats.power(0.013 / (0.014 / math.sqrt(n - 1)), n - 2) < 0.8
