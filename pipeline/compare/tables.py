"""The comparison's tables: one row per variant (against the baseline) or per factor level.

Takes ``compare.load_runs``'s frame and plain values (the variants in order, the baseline, each
factor's levels); ``stats`` does the statistics. Each row is tested against its
reference (paired by seed when it can be, else Welch); Holm's correction runs across the rows
of one table, and the verdict, ``decided`` and ``seeds_needed`` use the adjusted p-values.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline.compare import stats
from pipeline.tracking import contract

C = contract
CURVES = (C.LOSS, C.ACCURACY, C.VAL_LOSS, C.VAL_ACCURACY, C.EPOCH_SECONDS)  # per-epoch histories read
LOGGED = (*CURVES, C.IMAGES_PER_SECOND, C.PARAMETER_COUNT, C.BEST_VAL_ACCURACY, C.BEST_EPOCH, C.RUN_SECONDS)
SUMMARIZED = (C.VAL_ACCURACY, C.BEST_VAL_ACCURACY, C.VAL_LOSS, "best_val_loss")
DERIVED = ("best_val_loss", "epochs", "seconds_per_epoch")  # computed by ``derived``, not logged
STATS = ("mean", "std", "ci_low", "ci_high")
NOT_FINISHED = (C.FAILED, C.KILLED)
BASELINE_RULE = "'default' if the sweep ran it, else the variant at each factor's first listed value"
BASELINE, REFERENCE = "baseline", "reference"  # the verdict of the row the others are compared with
DIFFERENCE = ["difference", "difference_ci_low", "difference_ci_high", "p_value", "p_adjusted"]
INTERNAL = ("variance", "df_per_seed", "cells")  # what _decide needs, dropped after
VERSUS = ["test", "n_compared", *DIFFERENCE, "verdict", "decided", "detectable_difference", "seeds_needed"]


def summary_frame(
    runs: pd.DataFrame,
    variants: list[str],
    baseline: str,
    metric: str,
    stopped: dict[str, str] | None = None,
) -> pd.DataFrame:
    """One row per variant: counts, each summarized metric's mean, std and interval, the test.

    Columns: the variant and its factor levels, ``n_seeds`` (finished runs), ``n_failed``
    (seeds with no finished run), ``epochs``, ``seconds_per_epoch``, ``parameter_count``;
    ``<m>_mean``, ``<m>_std``, ``<m>_ci_low``, ``<m>_ci_high`` (95% interval; on the logit
    scale for accuracies, named in ``ci_scale``) for m in val_accuracy, best_val_accuracy,
    val_loss, best_val_loss and ``metric``; then the comparison with ``baseline`` on
    ``metric``: ``test`` (paired t / Welch t), ``n_compared`` (pairs, or the smaller side),
    ``difference``, ``difference_ci_low``/``_high``, ``p_value``, ``p_adjusted`` (Holm),
    ``verdict`` and ``decided`` (from the adjusted p; the baseline counts as decided),
    ``detectable_difference`` (at 80% power) and ``seeds_needed`` (for "no evidence" only);
    ``stopped`` (variant -> why the sweep stopped adding its seeds) when given.
    """
    done = runs[runs.status == contract.FINISHED]
    reference = _keyed(done[done.variant == baseline], metric, ["seed"])
    rows = []
    for variant in variants:
        mine = runs[runs.variant == variant]
        ok = mine[mine.status == contract.FINISHED]
        row = {"variant": variant, **{factor: mine[factor].iloc[0] for factor in runs.attrs["factors"]}}
        row.update(n_seeds=len(ok), n_failed=int(mine.status.isin(NOT_FINISHED).sum()))
        row.update(epochs=ok.epochs.mean(), seconds_per_epoch=ok.seconds_per_epoch.mean())
        row.update(parameter_count=ok.parameter_count.median())
        for column in dict.fromkeys((*SUMMARIZED, metric)):
            estimate = stats.mean_ci(ok[column], scale=stats.scale_for(column))
            row.update(zip([f"{column}_{stat}" for stat in STATS], estimate, strict=True))
        row["ci_scale"] = stats.scale_for(metric)
        mine_keyed = _keyed(ok, metric, ["seed"])
        rows.append(
            row | _versus(mine_keyed, reference, variant == baseline, BASELINE, metric) | {"cells": 1}
        )
    summary = _decide(pd.DataFrame(rows), metric, BASELINE)
    if stopped is not None:
        summary["stopped"] = [stopped.get(variant, "") for variant in summary.variant]
    return summary


def effects_frame(runs: pd.DataFrame, levels: dict[str, list[str]], metric: str) -> pd.DataFrame:
    """Main effects: per factor and level, the metric over all finished runs at that level.

    Each level is compared with the factor's first level, paired by seed and the other
    factors' levels where the design has those pairs. Empty with fewer than two factors.
    """
    done = runs[runs.status == contract.FINISHED]
    rows = []
    for factor in levels if len(levels) >= 2 else []:
        others = [other for other in levels if other != factor]
        first, cells = levels[factor][0], math.prod(len(levels[other]) for other in others)
        reference = _keyed(done[done[factor] == first], metric, [*others, "seed"])
        for level in levels[factor]:
            values = _keyed(done[done[factor] == level], metric, [*others, "seed"])
            row = {"factor": factor, "level": level, "n_runs": len(values)}
            row.update(zip(STATS, stats.mean_ci(values, scale=stats.scale_for(metric)), strict=True))
            versus = _versus(values, reference, level == first, REFERENCE, metric)
            rows.append(row | versus | {"cells": cells})
    columns = ["factor", "level", "n_runs", *STATS, *VERSUS]
    frame = pd.DataFrame(rows, columns=[*columns, *INTERNAL])
    return _decide(frame, metric, REFERENCE) if len(frame) else frame[columns]


def undecided(summary: pd.DataFrame) -> list[str]:
    """The variants whose comparison with the baseline has no verdict yet (adjusted p >= alpha
    or too few seeds): the ones more seeds could still decide."""
    return list(summary.loc[~summary.decided.astype(bool), "variant"])


def run_row(info, tags: dict, metrics: dict, factors: list[str], history: dict) -> dict:
    """One job run as a row: an MLflow run's ``info``, tags, final metrics and curves."""
    row = {
        "run_id": info.run_id,
        "variant": tags.get(C.VARIANT, "default"),
        "seed": tags.get(C.SEED, ""),
        "status": info.status,
        "error": tags.get(C.ERROR, ""),
        "start_time": info.start_time,
    }
    row.update({factor: tags.get(C.factor_tag(factor), "") for factor in factors})
    row.update(dict.fromkeys(LOGGED, math.nan) | metrics)
    return row | derived(history, metrics) | {"history": history}


def derived(history: dict, metrics: dict) -> dict:
    """What a run's histories ({metric: {epoch: value}}) and final metrics give: the best epoch and its
    values, the epochs run, the mean seconds per epoch."""
    val_accuracy, seconds = history.get(contract.VAL_ACCURACY, {}), history.get(contract.EPOCH_SECONDS, {})
    best = metrics.get(
        contract.BEST_EPOCH, max(val_accuracy, key=val_accuracy.get) if val_accuracy else math.nan
    )
    return {
        contract.BEST_EPOCH: best,
        contract.BEST_VAL_ACCURACY: metrics.get(contract.BEST_VAL_ACCURACY, val_accuracy.get(best, math.nan)),
        "best_val_loss": history.get(contract.VAL_LOSS, {}).get(best, math.nan),
        "epochs": max((max(points) for points in history.values() if points), default=math.nan),
        "seconds_per_epoch": float(np.mean(list(seconds.values()))) if seconds else math.nan,
    }


def one_per_job(runs: pd.DataFrame) -> pd.DataFrame:
    """The latest FINISHED run of each (variant, seed), else its latest run, sorted by variant and
    seed; ``attempts`` counts each job's runs (a resumed sweep reruns failed and killed ones)."""
    runs = runs.assign(finished=runs.status == contract.FINISHED)
    runs["attempts"] = runs.groupby(["variant", "seed"]).run_id.transform("size")
    runs = runs.sort_values(["finished", "start_time"], kind="stable")
    runs = runs.drop_duplicates(["variant", "seed"], keep="last").drop(columns=["finished", "start_time"])
    return runs.sort_values(["variant", "seed"], key=lambda col: col.map(sort_key)).reset_index(drop=True)


def levels(runs: pd.DataFrame, factor: str, listed: list[str]) -> list[str]:
    """A factor's levels in the order the sweep lists them; unlisted ones after, sorted."""
    seen = set(runs[factor])
    return [level for level in listed if level in seen] + sorted(seen - set(listed), key=sort_key)


def variant_order(runs: pd.DataFrame, levels: dict[str, list[str]]) -> list[str]:
    """Variants in the order of their factors' levels (``levels``: factor -> ordered levels)."""
    first = runs.drop_duplicates("variant").set_index("variant")
    return sorted(first.index, key=lambda v: ([levels[f].index(first.at[v, f]) for f in levels], v))


def default_baseline(runs: pd.DataFrame, variants: list[str], listed: dict[str, list[str]]) -> str:
    """``default``, else the variant at each factor's first listed value, else the first in sorted order."""
    if "default" in variants:
        return "default"
    firsts = {factor: values[:1] for factor, values in listed.items()}
    first = runs.drop_duplicates("variant").set_index("variant")
    matching = [v for v in variants if firsts and all([first.at[v, f]] == want for f, want in firsts.items())]
    return matching[0] if matching else sorted(variants)[0]


def sort_key(value) -> tuple:
    """Numbers in numeric order, then text."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, str(value))


def _keyed(runs: pd.DataFrame, metric: str, keys: list[str]) -> pd.Series:
    """The metric indexed by what pairs runs; a key seen twice is averaged, NaN left out."""
    return runs.groupby(keys, sort=True)[metric].mean().dropna()


def _versus(values: pd.Series, reference: pd.Series, is_reference: bool, label: str, metric: str) -> dict:
    difference = values.mean() - reference.mean() if len(values) and len(reference) else math.nan
    row = dict.fromkeys(VERSUS, math.nan) | {"test": "", "n_compared": 0, "difference": difference}
    row |= {"variance": math.nan, "df_per_seed": math.nan}
    if is_reference:
        return row | {"difference": 0.0, "verdict": label}
    result = stats.versus(values, reference, bound=stats.bound_for(metric))
    if result is None:
        return row | {"verdict": stats.TOO_FEW}
    row |= {"test": result.test, "n_compared": result.n, "difference": result.difference}
    row |= {"difference_ci_low": result.ci_low, "difference_ci_high": result.ci_high}
    row |= {"p_value": result.p_value, "detectable_difference": result.detectable}
    return row | {"variance": result.variance, "df_per_seed": result.df_per_seed}


def _decide(frame: pd.DataFrame, metric: str, label: str) -> pd.DataFrame:
    """Holm across the tested rows; verdicts, ``decided`` and ``seeds_needed`` from the adjusted p.

    ``seeds_needed`` is per variant: a main effect's pairs number ``cells`` (the other factors'
    level combinations) per seed.
    """
    tested = frame.test != ""
    frame["p_adjusted"] = math.nan
    frame.loc[tested, "p_adjusted"] = stats.holm(frame.loc[tested, "p_value"])
    verdicts, needed = [], []
    for row in frame.itertuples():
        tested = bool(row.test)  # "" when a side had fewer than two seeds
        word = (
            label if row.verdict == label else stats.verdict(row.difference, row.p_adjusted, metric, tested)
        )
        verdicts.append(word)
        seeds = math.nan
        if word == stats.NO_EVIDENCE:
            pairs = stats.seeds_needed(row.difference, row.variance, row.df_per_seed)
            seeds = max(2, math.ceil(pairs / row.cells)) if math.isfinite(pairs) else pairs
        needed.append(seeds)
    frame["verdict"] = verdicts
    frame["decided"] = [word in (label, stats.BETTER, stats.WORSE) for word in verdicts]
    frame["seeds_needed"] = np.asarray(needed, dtype=float)
    return frame.drop(columns=list(INTERNAL))
