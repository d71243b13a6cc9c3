"""Statistics for comparing variants over seeds: means with t intervals, Welch's t-test, verdicts.

Pure functions on plain number sequences (NaN ignored); scipy supplies the t distribution.
"""

from __future__ import annotations

import math

import numpy as np

ALPHA = 0.05
TEST = "Welch's two-sample t-test (unequal variances, two-sided)"


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, sample std (ddof=1) and the t-distribution confidence interval of the mean (NaN if n < 2)."""
    from scipy import stats

    x = finite(values)
    if len(x) < 2:
        return (float(x.mean()) if len(x) else math.nan), math.nan, math.nan, math.nan
    mean, std = float(x.mean()), float(x.std(ddof=1))
    half = stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * std / math.sqrt(len(x))
    return mean, std, mean - half, mean + half


def welch(values, reference, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Difference of means (values - reference), its Welch confidence interval and two-sided p-value."""
    from scipy import stats

    a, b = finite(values), finite(reference)
    difference = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2:
        return difference, math.nan, math.nan, math.nan
    var_a, var_b = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(var_a + var_b)
    if se == 0:  # every seed gave the same value on both sides: the difference is exact
        return difference, difference, difference, float(difference == 0)
    df = (var_a + var_b) ** 2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))  # Welch-Satterthwaite
    half = stats.t.ppf(0.5 + confidence / 2, df) * se
    return difference, difference - half, difference + half, float(2 * stats.t.sf(abs(difference) / se, df))


def verdict(difference: float, p_value: float, metric: str, enough_seeds: bool = True) -> str:
    """``better`` / ``worse`` / ``no evidence of a difference`` / ``too few seeds`` in plain words."""
    if not enough_seeds:
        return "too few seeds"
    if not p_value < ALPHA:
        return "no evidence of a difference"
    return "better" if (difference < 0) == lower_is_better(metric) else "worse"


def lower_is_better(metric: str) -> bool:
    return "loss" in metric or "seconds" in metric


def finite(values) -> np.ndarray:
    """The values as floats, NaN (a missing seed) left out."""
    x = np.asarray(values, dtype=float)
    return x[~np.isnan(x)]
