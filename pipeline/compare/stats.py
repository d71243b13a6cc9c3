"""Statistics for comparing variants over seeds: intervals, paired and Welch t-tests, Holm, power.

Pure functions on plain numbers (NaN ignored); scipy supplies the tests and the (noncentral)
t distribution. Runs with the same seed hold out the same images and see the same shuffling,
so a variant and its baseline that share seeds are compared seed by seed (a paired t-test on
the differences); Welch's test is the fallback for seeds that do not pair.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd

ALPHA = 0.05
POWER = 0.8  # the power the detectable difference and the seeds-needed figure are computed for
CONFIDENCE = 0.95
MAX_SEEDS = 1_000_000  # seeds_needed gives inf beyond this
PAIRED = "paired t"
WELCH = "Welch t"
BETTER, WORSE, NO_EVIDENCE, TOO_FEW = "better", "worse", "no evidence of a difference", "too few seeds"
LOGIT = "logit"  # accuracies: a t interval on the logit scale, mapped back into (0, 1)
T = "t"  # anything else: the plain t interval
SCALES = {
    LOGIT: "a t interval on the logit scale (delta method), mapped back, so it stays within [0, 1]",
    T: "a plain t interval",
}
# A difference of two accuracies lies in [-1, 1]: its t interval is intersected with that range
# (the true difference is inside it, so coverage is kept) and 'detectable' is capped at 1 (these
# seeds detect no possible difference with the power asked for).
BOUNDED = "the test's t interval intersected with [-1, 1], where a difference of two accuracies lies"


class Comparison(NamedTuple):
    """A variant against its reference on one metric.

    ``variance`` (the per-seed variance of a difference) and ``df_per_seed`` (degrees of
    freedom per seed) describe the test's spread, for ``seeds_needed``.
    """

    test: str
    n: int  # pairs for the paired test, the smaller side for Welch
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    detectable: float  # the smallest difference these seeds detect with probability POWER
    variance: float
    df_per_seed: float


BOUNDED_NAMES = ("accuracy", "f1", "recall", "precision")  # metrics in [0, 1]


def scale_for(metric: str) -> str:
    """``LOGIT`` for metrics bounded by [0, 1] (accuracies, F1, recall, precision), else ``T``."""
    return LOGIT if any(name in metric for name in BOUNDED_NAMES) else T


def mean_ci(values, confidence: float = CONFIDENCE, scale: str = T) -> tuple[float, float, float, float]:
    """Mean, sample std (ddof=1) and a confidence interval of the mean (NaN if n < 2).

    ``scale=LOGIT`` computes the t interval of logit(mean) with the delta method's standard
    error, std / sqrt(n) / (mean * (1 - mean)), and maps it back: it stays inside (0, 1).
    """
    from scipy import stats

    x = finite(values)
    if len(x) < 2:
        return (float(x.mean()) if len(x) else math.nan), math.nan, math.nan, math.nan
    mean, std = float(x.mean()), float(x.std(ddof=1))
    t = stats.t.ppf(0.5 + confidence / 2, len(x) - 1)
    if scale == T or std == 0:
        half = t * std / math.sqrt(len(x))
        return mean, std, mean - half, mean + half
    centre, half = math.log(mean / (1 - mean)), t * std / math.sqrt(len(x)) / (mean * (1 - mean))
    low, high = (1 / (1 + math.exp(-(centre + sign * half))) for sign in (-1, 1))
    return mean, std, low, high


def versus(
    values: pd.Series, reference: pd.Series, confidence: float = CONFIDENCE, bound: float | None = None
) -> Comparison | None:
    """``values - reference``: paired on their shared index (seeds) when at least 2 pair, else Welch.

    Both series are indexed by what pairs runs (the seed, plus the other factors' levels for a
    main effect); NaN values are left out. Runs without a partner are left out of a paired
    test. None when neither test has two values a side. With ``bound`` (1 for accuracies: their
    difference lies in [-1, 1]) the interval is intersected with [-bound, bound] and
    ``detectable`` is at most ``bound``.
    """
    values, reference = values.dropna(), reference.dropna()
    shared = values.index.intersection(reference.index)
    if len(shared) >= 2:
        result = paired(values[shared].to_numpy(float), reference[shared].to_numpy(float), confidence)
    elif len(values) >= 2 and len(reference) >= 2:
        result = welch(values.to_numpy(float), reference.to_numpy(float), confidence)
    else:
        return None
    return result if bound is None else bounded(result, bound)


def bound_for(metric: str) -> float | None:
    """1 for metrics in [0, 1] (accuracies: a difference of two lies in [-1, 1]), else None."""
    return 1.0 if scale_for(metric) == LOGIT else None


def bounded(result: Comparison, bound: float) -> Comparison:
    """``result`` with its interval inside [-bound, bound] and ``detectable`` at most ``bound``."""
    low, high = max(result.ci_low, -bound), min(result.ci_high, bound)
    return result._replace(ci_low=low, ci_high=high, detectable=min(result.detectable, bound))


def paired(values, reference, confidence: float = CONFIDENCE) -> Comparison:
    """Paired t-test of ``values[i] - reference[i]`` (scipy's ``ttest_rel``), with its interval."""
    from scipy import stats

    d = np.asarray(values, float) - np.asarray(reference, float)
    variance, n = float(d.var(ddof=1)), len(d)
    if variance < 1e-24:  # every seed moved by the same amount: the difference is exact
        return _exact(PAIRED, n, float(d.mean()))
    result = stats.ttest_rel(values, reference)
    ci = result.confidence_interval(confidence)
    se = math.sqrt(variance / n)
    return Comparison(
        PAIRED, n, float(d.mean()), ci.low, ci.high, result.pvalue, detectable(se, n - 1), variance, 1.0
    )


def welch(values, reference, confidence: float = CONFIDENCE) -> Comparison:
    """Welch's two-sample t-test of ``values - reference`` (scipy, ``equal_var=False``)."""
    from scipy import stats

    a, b = np.asarray(values, float), np.asarray(reference, float)
    var_a, var_b = a.var(ddof=1), b.var(ddof=1)
    if var_a / len(a) + var_b / len(b) < 1e-24:
        return _exact(WELCH, min(len(a), len(b)), float(a.mean() - b.mean()))
    result = stats.ttest_ind(a, b, equal_var=False)
    ci = result.confidence_interval(confidence)
    se = math.sqrt(var_a / len(a) + var_b / len(b))
    # as if both sides had n seeds: se = sqrt((var_a + var_b) / n), df = k (n - 1) (Welch-Satterthwaite)
    k = (var_a + var_b) ** 2 / (var_a**2 + var_b**2)
    difference = float(a.mean() - b.mean())
    return Comparison(
        WELCH,
        min(len(a), len(b)),
        difference,
        ci.low,
        ci.high,
        result.pvalue,
        detectable(se, result.df),
        var_a + var_b,
        k,
    )


def _exact(test: str, n: int, difference: float) -> Comparison:
    return Comparison(test, n, difference, difference, difference, float(difference == 0), 0.0, 0.0, 1.0)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count).

    Kept here (scipy has only Benjamini-Hochberg): the i-th smallest of m p-values becomes
    max over j <= i of min(1, (m - j + 1) p_(j)).
    """
    p = np.asarray(p_values, dtype=float)
    adjusted, ok = np.full(p.shape, math.nan), ~np.isnan(p)
    order = np.argsort(p[ok])
    steps = (len(order) - np.arange(len(order))) * p[ok][order]
    adjusted_ok = np.empty(len(order))
    adjusted_ok[order] = np.minimum(1.0, np.maximum.accumulate(steps))
    adjusted[ok] = adjusted_ok
    return adjusted


def power(noncentrality: float, df: float, alpha: float = ALPHA) -> float:
    """Power of a two-sided t-test: P(|T| > t_crit) for T noncentral t with ``df``, ``noncentrality``."""
    from scipy import stats

    critical = stats.t.ppf(1 - alpha / 2, df)
    upper = stats.nct.sf(critical, df, noncentrality)
    lower = stats.nct.cdf(-critical, df, noncentrality)  # rejecting on the wrong side: tiny for nc > 0
    # scipy gives NaN for some values far out in a tail: those are 0 (or 1 for the upper one past it)
    upper = float(noncentrality > critical) if math.isnan(upper) else upper
    return float(upper + (0.0 if math.isnan(lower) else lower))


def detectable(se: float, df: float, alpha: float = ALPHA, target: float = POWER) -> float:
    """The smallest true difference a t-test with this standard error and df detects with ``target`` power."""
    from scipy import optimize

    if not df >= 1 or math.isnan(se):
        return math.nan
    high = 1.0
    while power(high, df, alpha) < target:  # bracket the root: power grows with the noncentrality
        high *= 2
    nc = optimize.brentq(lambda nc: power(nc, df, alpha) - target, 0.0, high, xtol=1e-12)
    return float(nc * se)


def seeds_needed(
    difference: float, variance: float, df_per_seed: float = 1.0, alpha: float = ALPHA, target: float = POWER
) -> float:
    """Seeds (per variant) for a t-test to detect ``difference`` with ``target`` power.

    With n seeds the standard error is sqrt(variance / n) and the degrees of freedom
    ``df_per_seed * (n - 1)``; the answer is the smallest n >= 2 reaching the power (inf past
    ``MAX_SEEDS`` or for a zero difference, NaN when unknown).
    """
    if math.isnan(difference) or math.isnan(variance):
        return math.nan
    if variance == 0:
        return 2.0 if difference else math.inf

    def enough(n: int) -> bool:
        return power(abs(difference) / math.sqrt(variance / n), df_per_seed * (n - 1), alpha) >= target

    low, high = 1, 2  # enough(low) is False (one seed has no spread), find high with enough(high)
    while not enough(high):
        if high >= MAX_SEEDS:
            return math.inf
        low, high = high, high * 2
    while high - low > 1:  # power grows with n
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return float(high)


def verdict(difference: float, p_value: float, metric: str, enough_seeds: bool = True) -> str:
    """``BETTER`` / ``WORSE`` / ``NO_EVIDENCE`` / ``TOO_FEW`` in plain words (pass the adjusted p-value)."""
    if not enough_seeds:
        return TOO_FEW
    if not p_value < ALPHA:
        return NO_EVIDENCE
    return BETTER if (difference < 0) == lower_is_better(metric) else WORSE


def lower_is_better(metric: str) -> bool:
    return "loss" in metric or "seconds" in metric


def finite(values) -> np.ndarray:
    """The values as floats, NaN (a missing seed) left out."""
    x = np.asarray(values, dtype=float)
    return x[~np.isnan(x)]
