"""Speed and memory across variants: ratios to the baseline over seeds, and accuracy against speed.

Each variant's training seconds per epoch, inference milliseconds per image (batch 1 and 128),
model size and peak memory, divided by the baseline's: the same paired statistics as the summary
(``stats.versus``) on the log scale, so the difference of means is a log ratio and its interval
maps back to an interval of the ratio (a geometric mean over seeds). Holm runs across the
variants of each measure. Never imports TensorFlow.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline.compare import stats
from pipeline.tracking import contract, plots

MEASURES = {  # metric -> (more, less): what a ratio above and below 1 means
    contract.TRAIN_SECONDS_PER_EPOCH: ("slower per epoch", "faster per epoch"),
    contract.inference_ms(1): ("slower to predict one image", "faster to predict one image"),
    contract.inference_ms(128): ("slower per image at batch 128", "faster per image at batch 128"),
    contract.MODEL_SIZE_MB: ("larger", "smaller"),
    contract.PEAK_MEMORY_MB: ("more peak memory", "less peak memory"),
}
COLUMNS = [
    "variant",
    "measure",
    "n_compared",
    "ratio",
    "ci_low",
    "ci_high",
    "p_value",
    "p_adjusted",
    "decided",
]


def ratio_frame(runs: pd.DataFrame, variants: list[str], baseline: str) -> pd.DataFrame:
    """One row per (variant other than the baseline, measure the runs logged): its ratio to the
    baseline's, paired by seed on the log scale, with a 95% interval and Holm's p across variants."""
    done = runs[runs.status == contract.FINISHED]
    rows = []
    for measure in (m for m in MEASURES if m in done.columns and done[m].notna().any()):
        logged = done.assign(value=np.log(done[measure].where(done[measure] > 0)))
        reference = _by_seed(logged[logged.variant == baseline])
        mine = []
        for variant in (v for v in variants if v != baseline):
            result = stats.versus(_by_seed(logged[logged.variant == variant]), reference)
            row = dict.fromkeys(COLUMNS, math.nan) | {"variant": variant, "measure": measure, "n_compared": 0}
            if result is not None:
                row |= {
                    "n_compared": result.n,
                    "ratio": math.exp(result.difference),
                    "p_value": result.p_value,
                    "ci_low": math.exp(result.ci_low),
                    "ci_high": math.exp(result.ci_high),
                }
            mine.append(row)
        for row, p in zip(mine, stats.holm([row["p_value"] for row in mine]), strict=True):
            row |= {"p_adjusted": p, "decided": bool(p < stats.ALPHA)}
        rows += mine
    return pd.DataFrame(rows, columns=COLUMNS)


def sentences(frame: pd.DataFrame, summary: pd.DataFrame, measure: str = contract.TRAIN_SECONDS_PER_EPOCH):
    """Per variant: ``maxpool: 1.9x slower per epoch [1.7, 2.1], val_accuracy +1.2 points [0.4, 2.0]``."""
    metric, lines = summary.attrs["metric"], []
    rows = summary.set_index("variant")
    for _, r in frame[frame.measure == measure].iterrows():
        if math.isnan(r["ratio"]):
            continue
        line = f"{r['variant']}: {ratio_text(r['ratio'], r['ci_low'], r['ci_high'], *MEASURES[measure])}"
        if r["variant"] in rows.index and not math.isnan(rows.at[r["variant"], "difference_ci_low"]):
            s = rows.loc[r["variant"]]
            scale = 100 if stats.bound_for(metric) else 1
            unit = " points" if scale == 100 else ""
            low, high = s["difference_ci_low"] * scale, s["difference_ci_high"] * scale
            line += f", {metric} {s['difference'] * scale:+.1f}{unit} [{low:.1f}, {high:.1f}]"
        lines.append(line)
    return lines


def ratio_text(ratio: float, low: float, high: float, more: str, less: str) -> str:
    """``1.9x slower per epoch [1.7, 2.1]``, or ``2.0x faster ...`` below 1 (the interval inverted)."""
    if ratio >= 1:
        return f"{ratio:.2f}x {more} [{low:.2f}, {high:.2f}]"
    return f"{1 / ratio:.2f}x {less} [{1 / high:.2f}, {1 / low:.2f}]"


def accuracy_vs_speed(runs: pd.DataFrame, summary: pd.DataFrame, measure: str = contract.inference_ms(1)):
    """Each variant's metric (mean, 95% CI) against its inference time (geometric mean over seeds,
    95% CI), the Pareto front (no other variant both faster and better) drawn and labelled."""
    plt = plots.pyplot()
    metric, done = summary.attrs["metric"], runs[runs.status == contract.FINISHED]
    points = []
    for _, row in summary.iterrows():
        times = done.loc[done.variant == row["variant"], measure] if measure in done else pd.Series()
        times = times[times > 0]
        if times.empty:
            continue
        centre, _, low, high = (
            math.exp(v) if not math.isnan(v) else math.nan for v in stats.mean_ci(np.log(times))
        )
        points.append(
            (
                row["variant"],
                centre,
                low,
                high,
                row[f"{metric}_mean"],
                row[f"{metric}_ci_low"],
                row[f"{metric}_ci_high"],
            )
        )
    fig, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    front = pareto([(p[1], p[4]) for p in points], lower_is_better=stats.lower_is_better(metric))
    for index, (name, x, x_low, x_high, y, y_low, y_high) in enumerate(points):
        xerr = [[x - x_low], [x_high - x]] if not math.isnan(x_low) else None
        yerr = [[y - y_low], [y_high - y]] if not math.isnan(y_low) else None
        on_front = index in front
        ax.errorbar(
            x,
            y,
            xerr=xerr,
            yerr=yerr,
            fmt="o" if on_front else "s",
            capsize=3,
            color="C3" if on_front else "C0",
            markersize=6,
        )
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=7)
    if front:
        xs, ys = zip(*sorted((points[i][1], points[i][4]) for i in front), strict=True)
        ax.plot(xs, ys, "--", color="C3", linewidth=1, label="Pareto front (faster and better than the rest)")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xscale("log")  # times compare as ratios
    ax.set(
        xlabel=f"{measure} (ms, log scale; geometric mean, 95% CI)", ylabel=f"final {metric} (mean, 95% CI)"
    )
    ax.set_title(f"{metric} against inference time per variant", fontsize=10)
    ax.grid(alpha=0.3)
    return fig


def pareto(points: list[tuple[float, float]], lower_is_better: bool = False) -> list[int]:
    """Indices of the points no other point beats on both time (lower) and score (higher, or lower
    with ``lower_is_better``), ties kept."""
    sign = -1 if lower_is_better else 1
    return [
        i
        for i, (t, s) in enumerate(points)
        if not any(t2 <= t and sign * s2 >= sign * s and (t2, s2) != (t, s) for t2, s2 in points)
    ]


def blocks(frame: pd.DataFrame, summary: pd.DataFrame) -> list[tuple]:
    """The report's section: a sentence per variant, the ratio table, the accuracy-vs-speed figure."""
    if frame.empty:
        return []
    method = (
        "Each measure of a variant divided by the baseline's: a paired t-test over seeds on the log "
        "scale (the ratio of geometric means, its 95% interval mapped back), p Holm-adjusted across "
        "the variants of each measure. Peak memory is the run's peak resident set (since it started)."
    )
    rows = [
        [
            r["variant"],
            r["measure"],
            str(r["n_compared"]),
            "–" if math.isnan(r["ratio"]) else f"{r['ratio']:.2f}",
            "–" if math.isnan(r["ci_low"]) else f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]",
            "–" if math.isnan(r["p_adjusted"]) else f"{r['p_adjusted']:.3f}",
        ]
        for _, r in frame.iterrows()
    ]
    headers = ["variant", "measure", "pairs", "ratio to the baseline", "95% CI", "p (Holm)"]
    return [
        ("h2", "Speed and memory against the baseline"),
        ("p", method),
        ("list", sentences(frame, summary)),
        ("table", headers, rows),
        ("image", "accuracy_vs_speed.png", "Metric against inference time, with the Pareto front"),
    ]


def _by_seed(runs: pd.DataFrame) -> pd.Series:
    return runs.groupby("seed", sort=True)["value"].mean().dropna()
