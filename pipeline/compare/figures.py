"""The comparison report's figures: mean learning curves per variant, the final metric per variant.

Accuracy axes stay within [0, 1] (bands and intervals are clipped to what an accuracy can be).
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd

from pipeline.compare import stats
from pipeline.tracking import contract, plots

LEGEND_CHARACTERS = 150  # what the curves' 11-inch legend holds across, at font size 8


def curves(runs: pd.DataFrame, variants: list[str]):
    """Loss and val_accuracy per epoch: each variant's mean over seeds, with a ±1 std band."""
    plt = plots.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    done = runs[runs.status == contract.FINISHED]
    for ax, metric in zip(axes, (contract.LOSS, contract.VAL_ACCURACY), strict=True):
        bounded = stats.scale_for(metric) == stats.LOGIT
        for variant in variants:
            curves = pd.DataFrame([h.get(metric, {}) for h in done.loc[done.variant == variant, "history"]])
            if curves.empty:
                continue
            curves = curves.reindex(sorted(curves.columns), axis=1)  # columns are epochs
            mean, std = curves.mean(), curves.std().fillna(0.0)
            (line,) = ax.plot(mean.index, mean, marker="o", markersize=3, label=variant)
            low, high = mean - std, mean + std
            if bounded:
                low, high = low.clip(0, 1), high.clip(0, 1)
            ax.fill_between(mean.index, low, high, color=line.get_color(), alpha=0.2)
        ax.set(xlabel="epoch", ylabel=metric, title=f"{metric} (mean over seeds, band ±1 std)")
        ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
        ax.grid(alpha=0.3)
        if bounded:
            _within_unit(ax, "y")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:  # as many columns as the longest label leaves room for (8 long variant names: 2)
        columns = max(1, min(len(labels), 3, LEGEND_CHARACTERS // (max(map(len, labels)) + 6)))
        fig.legend(handles, labels, loc="outside lower center", ncols=columns, fontsize=8)
    return fig


def final_metric(runs: pd.DataFrame, summary: pd.DataFrame):
    """Final metric per variant: mean with its 95% CI as error bars, each seed as a dot."""
    plt = plots.pyplot()
    metric, baseline = summary.attrs["metric"], summary.attrs["baseline"]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * len(summary)), layout="constrained")
    y = np.arange(len(summary))[::-1]  # first variant on top
    mean = summary[f"{metric}_mean"].to_numpy(dtype=float)
    low, high = (
        summary[f"{metric}_ci_low"].to_numpy(dtype=float),
        summary[f"{metric}_ci_high"].to_numpy(dtype=float),
    )
    errors = np.nan_to_num(np.vstack([mean - low, high - mean]))
    ax.errorbar(mean, y, xerr=errors, fmt="o", capsize=4, color="C0", label="mean, 95% CI")
    done = runs[runs.status == contract.FINISHED]
    for row_y, variant in zip(y, summary.variant, strict=True):
        seeds = done.loc[done.variant == variant, metric].to_numpy(dtype=float)
        alpha = 1.0 if len(seeds) <= 20 else 0.25  # 250 seeds: a cloud whose density shows, not a bar
        ax.plot(seeds, np.full(len(seeds), row_y - 0.15), ".", color="0.5", alpha=alpha, label="_seeds")
    base = summary.loc[summary.variant == baseline, f"{metric}_mean"]
    if len(base) and not math.isnan(base.iloc[0]):
        ax.axvline(base.iloc[0], color="0.6", linestyle="--", linewidth=1, label=f"baseline {baseline}")
    ax.set_yticks(y, summary.variant, fontsize=8)
    ax.set(xlabel=f"final {metric}", title=f"final {metric} per variant (grey dots: seeds)")
    ax.grid(axis="x", alpha=0.3)
    if stats.scale_for(metric) == stats.LOGIT:  # its intervals are inside [0, 1]: so is the axis
        _within_unit(ax, "x")
    fig.legend(fontsize=8, loc="outside lower center", ncols=2)
    return fig


def _within_unit(ax, axis: str) -> None:
    """Cuts an accuracy axis to [0, 1] (autoscaling adds margins past what an accuracy can be)."""
    get, set_ = (ax.get_xlim, ax.set_xlim) if axis == "x" else (ax.get_ylim, ax.set_ylim)
    low, high = get()
    set_(max(0.0, low), min(1.0, high))


def png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plots.pyplot().close(fig)
    return buffer.getvalue()
