"""Per-class comparison: each variant's recall on each class against the baseline's, over seeds.

For every variant and class, the paired difference in ``val_recall/<class>`` (the per-class
evaluation's metric) from the baseline, with the same statistics as the summary (``stats.versus``:
a paired t-test on the per-seed differences, bounded to [-1, 1]); Holm-corrected across the classes
of one variant. ``pipeline.compare --metric val_recall/<class>`` gives the same difference, interval
and unadjusted p for one class (its Holm runs across variants instead). Never imports TensorFlow.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline.compare import stats
from pipeline.tracking import contract, plots

STAT = "recall"  # the per-class metric compared
COLUMNS = ["variant", "class", "n_compared", "difference", "ci_low", "ci_high", "p_value", "p_adjusted",
           "verdict", "decided"]  # fmt: skip


def class_metrics(runs: pd.DataFrame, stat: str = STAT) -> dict[str, str]:
    """``{class name: metric column}`` for the runs' ``val_<stat>/<class>`` columns, in order seen."""
    prefix = f"{contract.VAL_PREFIX}{stat}/"
    return {column[len(prefix) :]: column for column in runs.columns if str(column).startswith(prefix)}


def per_class_frame(runs: pd.DataFrame, variants: list[str], baseline: str, stat: str = STAT) -> pd.DataFrame:
    """One row per (variant other than the baseline, class): the difference from the baseline.

    Columns: ``COLUMNS``; ``verdict`` is better / worse / no evidence / too few seeds, from the
    p-value Holm-adjusted across that variant's classes. Empty when the runs logged no per-class
    metrics (``trainer.evaluate=false``).
    """
    done = runs[runs.status == contract.FINISHED]
    columns, rows = class_metrics(done, stat), []
    for variant in (v for v in variants if v != baseline):
        mine = []
        for name, column in columns.items():
            values, reference = (_by_seed(done[done.variant == v], column) for v in (variant, baseline))
            result = stats.versus(values, reference, bound=1.0)
            row = {"variant": variant, "class": name, "n_compared": 0, "difference": math.nan,
                   "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan}  # fmt: skip
            if result is not None:
                row |= {"n_compared": result.n, "difference": result.difference, "ci_low": result.ci_low,
                        "ci_high": result.ci_high, "p_value": result.p_value}  # fmt: skip
            mine.append(row)
        adjusted = stats.holm([row["p_value"] for row in mine])
        for row, p in zip(mine, adjusted, strict=True):
            tested = not math.isnan(row["p_value"])
            row["p_adjusted"] = p
            row["verdict"] = stats.verdict(row["difference"], p, stat, tested)
            row["decided"] = row["verdict"] in (stats.BETTER, stats.WORSE)
        rows += mine
    return pd.DataFrame(rows, columns=COLUMNS)


def sentences(frame: pd.DataFrame, decided_only: bool = False) -> list[str]:
    """Per variant: ``flip_shift: recall on `cat` +0.06 [0.02, 0.10], decided; no class decided worse``.

    Each decided class is named (better first); without one, the largest difference is named as
    undecided. ``decided_only``: only the variants with a decided class (the parent's description).
    """
    lines = []
    for variant, mine in frame.groupby("variant", sort=False):
        decided = mine[mine.decided].sort_values("difference", ascending=False)
        if decided_only and decided.empty:
            continue
        if decided.empty:
            shown = mine.dropna(subset=["difference"])
            shown = shown.loc[[shown.difference.abs().idxmax()]] if len(shown) else shown
        else:
            shown = decided
        parts = [f"{STAT} on `{r['class']}` {_signed(r['difference'])} [{r.ci_low:.2f}, {r.ci_high:.2f}], "
                 f"{'decided' if r.decided else 'undecided'}" for _, r in shown.iterrows()]  # fmt: skip
        worse = decided[decided.verdict == stats.WORSE]
        tail = "no class decided worse" if worse.empty else f"{len(worse)} class(es) decided worse"
        lines.append(f"{variant}: {'; '.join(parts) or 'no per-class recall'}; {tail}")
    return lines


def heatmap(frame: pd.DataFrame):
    """Variants (rows) by classes (columns): the difference in recall from the baseline, red worse,
    blue better, a ``*`` on each decided cell (Holm across the variant's classes)."""
    plt = plots.pyplot()
    variants, classes = list(dict.fromkeys(frame.variant)), list(dict.fromkeys(frame["class"]))
    grid = frame.pivot(index="variant", columns="class", values="difference").reindex(variants)[classes]
    decided = frame.pivot(index="variant", columns="class", values="decided").reindex(variants)[classes]
    limit = max(float(np.nanmax(np.abs(grid.to_numpy(float)))) if grid.notna().any().any() else 0.0, 0.01)
    width = 2.5 + 0.6 * len(classes) + 0.08 * max(map(len, variants))
    fig, ax = plt.subplots(figsize=(min(width, 24), 1.6 + 0.45 * len(variants)), layout="constrained")
    image = ax.imshow(grid.to_numpy(float), cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    for (row, col), value in np.ndenumerate(grid.to_numpy(float)):
        if not math.isnan(value):
            star = "*" if decided.iat[row, col] else ""
            color = "white" if abs(value) > 0.6 * limit else "black"
            ax.text(col, row, f"{value:+.2f}{star}", ha="center", va="center", fontsize=7, color=color)
    ax.set(xticks=range(len(classes)), yticks=range(len(variants)), xlabel="class")
    ax.set_xticklabels([c[:16] for c in classes], rotation=90 if len(classes) > 6 else 0, fontsize=8)
    ax.set_yticklabels(variants, fontsize=8)
    ax.set_title("recall minus the baseline's, mean over seeds (* decided, Holm across classes)", fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8, label="difference in recall")
    return fig


def blocks(frame: pd.DataFrame) -> list[tuple]:
    """The report's section: the sentences, a table of every (variant, class), the heatmap."""
    if frame.empty:
        return []
    method = ("Each variant's recall on each class (`val_recall/<class>`, the validation set) minus the "
              "baseline's: paired t-test over seeds, 95% interval within [-1, 1], p Holm-adjusted across "
              "the variant's classes.")  # fmt: skip
    rows = [
        [
            r["variant"],
            f"`{r['class']}`",
            str(r["n_compared"]),
            _signed(r["difference"]),
            _interval(r["ci_low"], r["ci_high"]),
            "–" if math.isnan(r["p_adjusted"]) else f"{r['p_adjusted']:.3f}",
            r["verdict"],
        ]  # fmt: skip
        for _, r in frame.iterrows()
    ]
    headers = ["variant", "class", "pairs", "difference in recall", "95% CI", "p (Holm)", "verdict"]
    return [
        ("h2", "Per class: recall against the baseline"),
        ("p", method),
        ("list", sentences(frame)),
        ("table", headers, rows),
        ("image", "per_class_recall.png", "Difference in recall per class (* decided)"),
    ]


def _interval(low: float, high: float) -> str:
    return "–" if math.isnan(low) else f"[{low:.2f}, {high:.2f}]"


def _by_seed(runs: pd.DataFrame, column: str) -> pd.Series:
    return runs.groupby("seed", sort=True)[column].mean().dropna()


def _signed(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:+.2f}"
