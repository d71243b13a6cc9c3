"""A study's results on its parent run: the verdict as its description, the winner as params,
the epochs spent and saved as metrics, and Optuna's figures under ``figures/``.

The description (tag ``convlab.study_note``, which the sweep's callback puts above the
comparison table in ``mlflow.note.content``) gives, for each confirmed configuration, its value
in the search against its confirmed mean over seeds, and whether the winner beats it or is tied.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from pipeline.sweep.search.confirm import Verdict
from pipeline.tracking import contract, studies, sweep_runs

log = logging.getLogger(__name__)

FIGURES = ("optimization_history", "param_importances", "slice")


def publish(study, context, verdict: Verdict | None, pruner: str) -> dict[str, float]:
    """Logs the study's metrics, the winner's params, the description and the figures; returns the metrics."""
    metrics = epochs(study, context, verdict)
    sweep_runs.log_metrics_to(context.uri, context.parent, metrics)
    if verdict is not None:
        best = {f"best.{key}": value for key, value in verdict.winner_values.items()}
        for key, value in best.items():  # params cannot change: a longer resumed study may find another
            try:
                sweep_runs.log_params_to(context.uri, context.parent, {key: value})
            except Exception:
                sweep_runs.set_run_tags(context.uri, context.parent, {key: value})
    note = describe(study, verdict, metrics, pruner)
    sweep_runs.set_run_tags(context.uri, context.parent, {contract.STUDY_NOTE: note})
    log.info("\n%s", note)
    try:
        log_figures(study, context)
    except Exception as err:  # a figure must not hide the study's outcome
        log.warning("study figures skipped: %s", err)
    return metrics


def epochs(study, context, verdict: Verdict | None) -> dict[str, float]:
    """Trials by state, training epochs spent (search, confirm) and saved by pruning."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    search = sum(len(t.intermediate_values) for t in trials)
    saved = sum(max(context.epochs - len(t.intermediate_values), 0) for t in pruned)
    metrics = {
        "study.trials": sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials),
        "study.pruned_trials": len(pruned),
        "study.failed_trials": sum(t.state == TrialState.FAIL for t in trials),
        "study.search_epochs": search,
        "study.epochs_saved": saved,
    }
    if any(t.state == TrialState.COMPLETE for t in trials):
        metrics["study.best_search_value"] = study.best_value
    if verdict is not None:
        trial_runs = {run["run_id"] for run in studies.trial_runs(context.uri, context.parent).values()}
        frame = verdict.runs
        confirm_epochs = frame[~frame.run_id.isin(trial_runs)].epochs.fillna(0).sum()
        metrics["study.confirm_epochs"] = float(confirm_epochs)
        metrics["study.epochs_spent"] = float(search + confirm_epochs)
        row = verdict.summary.set_index("variant").loc[verdict.winner]
        metrics["study.winner_mean"] = float(row[f"{verdict.summary.attrs['metric']}_mean"])
    else:
        metrics["study.epochs_spent"] = float(search)
    return metrics


def describe(study, verdict: Verdict | None, metrics: dict[str, float], pruner: str) -> str:
    """The parent's description: the search in one line, then the confirmed configurations."""
    count = {key: f"{metrics[f'study.{key}']:.0f}" for key in ("trials", "pruned_trials", "failed_trials")}
    lines = [
        f"**Search**: {count['trials']} trials of study `{study.study_name}` ({count['pruned_trials']} "
        f"pruned, {count['failed_trials']} failed; pruner {pruner}); {metrics['study.search_epochs']:.0f} "
        f"training epochs, {metrics['study.epochs_saved']:.0f} saved by pruning.",
        "",
    ]
    if verdict is None:
        return "\n".join(
            lines + ["No configuration confirmed (hydra.sweeper.confirm.top_k=0, or no trial completed)."]
        )
    summary = verdict.summary.set_index("variant")
    metric = verdict.summary.attrs["metric"]
    lines += [
        f"**Confirmed** over seeds (paired t-tests against the leader, Holm): "
        f"{metrics['study.confirm_epochs']:.0f} more epochs.",
        "",
        "| configuration | search value | confirmed mean ± std | seeds | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    beats, ties = [], []
    for variant, value in verdict.search_values.items():
        row = summary.loc[variant]
        if variant == verdict.winner:
            said = "**winner**"
        elif row["verdict"] == "worse":
            said, beats = f"the winner beats it (p={row['p_adjusted']:.3f})", [*beats, variant]
        else:
            said, ties = f"tied with the winner (p={row['p_adjusted']:.3f})", [*ties, variant]
        lines.append(
            f"| {variant} | {value:.4f} | {row[f'{metric}_mean']:.4f} ± {row[f'{metric}_std']:.4f} "
            f"| {row['n_seeds']:.0f} | {said} |"
        )
    runners = len(verdict.search_values) - 1
    outcome = (
        "it beats every runner-up" if runners and len(beats) == runners
        else f"it is tied with {len(ties)} of {runners} runners-up" if runners else "no runner-up to compare"
    )  # fmt: skip
    curse = "was" if verdict.raw_best == verdict.winner else "was not"
    lines += [
        "",
        f"**Winner**: {verdict.winner}: {outcome}. The search's best trial {curse} the confirmed winner.",
    ]
    return "\n".join(lines)


def log_figures(study, context) -> None:
    """Optimization history, parameter importances, and the trials over each searched key."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # "categorical units" notes
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        for name in FIGURES:
            try:
                axes = getattr(plots, f"plot_{name}")(study)
            except Exception as err:  # e.g. importances need two completed trials
                log.info("figure %s skipped: %s", name, err)
                continue
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
            figure.savefig(Path(folder) / f"{name}.png", dpi=110, bbox_inches="tight")
            plt.close(figure)
        sweep_runs.log_artifacts_to(context.uri, context.parent, folder, "figures")
