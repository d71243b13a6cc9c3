"""The decided winner of a sweep: which variant's model to hand on, and which of its runs.

Reads the comparison (``compare.summary_table``'s frame and ``compare.load_runs``'s runs), never
MLflow or TensorFlow:

- the variant decided better than the baseline (several: the best mean of them, and whether it is
  decided against the runner-up, a paired test by seed, says the description);
- else the baseline, when every other variant is decided worse (a sweep over seeds alone: its
  only variant);
- else nothing is decided (``decide`` returns None, ``undecided_reason`` says why); ``best_mean``
  then names the best mean, for ``sweep.register_undecided=true``. A variant without a finished
  seed (every job of it failed) leaves the verdict undecided: nothing is known of it.

Of the winner's seeds the run handed on is the median one on the compared metric (the runs
ordered by it, runs tied on it by seed; for an even count, the lower of the two middle runs: a
real run, not an average of two).
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from pipeline.compare import stats, tables
from pipeline.tracking import contract


@dataclasses.dataclass(frozen=True)
class Winner:
    variant: str
    run_id: str  # the median seed's run
    seed: str  # that run's seed
    seeds: list[str]  # the seeds behind the verdict (the variant's finished runs)
    decided: bool
    description: str  # the verdict, for the registered version's description


def decide(runs: pd.DataFrame, summary: pd.DataFrame) -> Winner | None:
    """The decided winner of ``summary`` (see the module's docstring), or None when undecided."""
    metric, baseline = summary.attrs["metric"], summary.attrs["baseline"]
    if unfinished(summary):
        return None
    finished = summary[summary.n_seeds > 0]
    better = finished[finished.verdict == stats.BETTER]
    if len(better):
        ranked = _ranked(better, metric)
        top = ranked.iloc[0]
        text = f"{top.variant} is decided better than the baseline {baseline}: {_versus(top, metric)}."
        if len(ranked) > 1:
            text += " " + _against_runner_up(runs, top.variant, ranked.iloc[1].variant, metric)
        return _winner(runs, summary, top.variant, True, text)
    others = finished[finished.variant != baseline]
    if (others.verdict == stats.WORSE).all() and baseline in set(finished.variant):
        listed = "; ".join(f"{row.variant} {_versus(row, metric)}" for _, row in others.iterrows())
        text = f"The baseline {baseline}: every other variant is decided worse ({listed})."
        if not len(others):  # a sweep over seeds alone: nothing to compare with
            text = f"{baseline}, the sweep's only variant (nothing to compare it with)."
        return _winner(runs, summary, baseline, True, text)
    return None


def unfinished(summary: pd.DataFrame) -> list[str]:
    """The variants without a finished seed."""
    return [str(variant) for variant in summary[summary.n_seeds == 0].variant]


def undecided_reason(summary: pd.DataFrame) -> str:
    """Why ``decide`` found no winner, in a few words."""
    missing = unfinished(summary)
    if missing:
        return f"no finished seed of {', '.join(missing)} (every job of it failed)"
    return f"no variant is decided best against the baseline {summary.attrs['baseline']}"


def choose(runs: pd.DataFrame, summary: pd.DataFrame, undecided: bool) -> Winner | None:
    """``decide``; when nothing is decided and ``undecided`` is true, ``best_mean``."""
    found = decide(runs, summary)
    return best_mean(runs, summary) if found is None and undecided else found


def best_mean(runs: pd.DataFrame, summary: pd.DataFrame) -> Winner:
    """The variant with the best mean, said to be undecided: ``sweep.register_undecided=true``."""
    metric, baseline = summary.attrs["metric"], summary.attrs["baseline"]
    top = _ranked(summary[summary.n_seeds > 0], metric).iloc[0]
    verdicts = "; ".join(
        f"{row.variant}: {row.verdict}" for row in summary.itertuples() if row.variant != baseline
    )
    text = (
        f"UNDECIDED: no variant is decided better than the baseline {baseline}, nor every other worse "
        f"({verdicts}). Registered on request (sweep.register_undecided=true): {top.variant}, the best "
        f"mean {metric}, which more seeds may overturn."
    )
    return _winner(runs, summary, top.variant, False, text)


def median_run(runs: pd.DataFrame, variant: str, metric: str) -> tuple[str, str, list[str]]:
    """``(run_id, seed, seeds)``: the variant's finished run at the median of ``metric``."""
    mine = runs[(runs.variant == variant) & (runs.status == contract.FINISHED)].dropna(subset=[metric])
    # runs tied on the metric (a small validation set gives few distinct values) by seed, in numeric order
    keys = [(value, tables.sort_key(seed)) for value, seed in zip(mine[metric], mine.seed, strict=True)]
    ordered = sorted(range(len(mine)), key=keys.__getitem__)
    middle = mine.iloc[ordered[(len(ordered) - 1) // 2]]
    return str(middle.run_id), str(middle.seed), [str(seed) for seed in mine.seed]


def _winner(runs, summary, variant: str, decided: bool, verdict: str) -> Winner:
    metric = summary.attrs["metric"]
    run_id, seed, seeds = median_run(runs, variant, metric)
    row = summary.set_index("variant").loc[variant]
    sweep = runs.attrs.get("experiment", "")
    text = (
        f"{verdict}\n\nThe sweep's parent run {runs.attrs.get('parent_run_id', '')} (MLflow experiment "
        f"{sweep}): {metric} "
        f"{row[f'{metric}_mean']:.4f} ± {row[f'{metric}_std']:.4f} over seeds {', '.join(seeds)}; "
        f"this version is the run of seed {seed} ({run_id}), the median."
    )
    return Winner(variant, run_id, seed, seeds, decided, text)


def _ranked(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    return rows.sort_values(f"{metric}_mean", ascending=stats.lower_is_better(metric), kind="stable")


def _versus(row, metric: str) -> str:
    """``+0.0210 (95% CI [0.0101, 0.0319], paired t, Holm p = 0.004)``."""
    return (
        f"{row['difference']:+.4f} (95% CI [{row['difference_ci_low']:.4f}, "
        f"{row['difference_ci_high']:.4f}], {row['test']}, Holm p = {row['p_adjusted']:.3g})"
    )


def _against_runner_up(runs: pd.DataFrame, winner: str, runner_up: str, metric: str) -> str:
    """Whether the winner is decided against the runner-up: a paired test by seed (else Welch)."""
    done = runs[runs.status == contract.FINISHED]
    values, reference = (
        done[done.variant == variant].groupby("seed")[metric].mean() for variant in (winner, runner_up)
    )
    result = stats.versus(values, reference)
    if result is None:
        return f"Against the runner-up {runner_up}: too few seeds to tell."
    decided = result.p_value < stats.ALPHA and (result.difference > 0) != stats.lower_is_better(metric)
    word = "decided better than" if decided else "not decided against"
    return (
        f"It is {word} the runner-up {runner_up} ({result.difference:+.4f}, {result.test}, "
        f"p = {result.p_value:.3g})."
    )
