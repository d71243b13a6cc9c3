"""Side-by-side comparison of a sweep's runs: which variant is better, and how sure can we be?

    python -m pipeline.compare --experiment stride_vs_pool          # the latest sweep
    python -m pipeline.compare --experiment stride_vs_pool --metric val_loss --no-log

    from pipeline import compare
    summary = compare.summarize("stride_vs_pool")   # one row per variant, a pandas DataFrame

Reads only what ``pipeline.tracking`` wrote: a sweep's parent run (tag ``convlab.role=sweep``)
and its job runs (tag ``mlflow.parentRunId``). Each variant is compared with the baseline on
the metric's final value by Welch's two-sample t-test (unequal variances, two-sided) at
alpha = 0.05; confidence intervals use the t distribution. Never imports TensorFlow, and
imports MLflow only inside the functions that read it.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import store
from pipeline.errors import ConvlabError
from pipeline.stats import ALPHA, TEST, finite, mean_ci, verdict, welch

CURVES = ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds")  # per-epoch histories read
LOGGED = (*CURVES, "images_per_second", "parameter_count", "best_val_accuracy", "best_epoch", "run_seconds")
DERIVED = ("best_val_loss", "epochs", "seconds_per_epoch")
SUMMARIZED = ("val_accuracy", "best_val_accuracy", "val_loss", "best_val_loss")
STATS = ("mean", "std", "ci_low", "ci_high")
NOT_FINISHED = ("FAILED", "KILLED")


class CompareError(ConvlabError):
    """An experiment, sweep, baseline or metric that cannot be found."""


def resolve_uri(tracking_uri: str | None = None) -> str:
    """The flag's URI, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``."""
    return store.resolve_uri(tracking_uri)


def load_runs(experiment: str, sweep: str | None = None, tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per job run of a sweep (the latest one unless ``sweep`` names its parent run id).

    Columns: ``run_id``, ``variant``, ``seed``, ``status``, ``error``, one column per factor
    (its level), every metric's final value, ``epochs``, ``seconds_per_epoch``,
    ``best_val_loss`` (val_loss at the best epoch) and ``history``
    (``{metric: {epoch: value}}``; ``pd.DataFrame(row.history)`` is one run's curves).
    ``attrs`` holds the sweep: experiment, parent_run_id, parent_status, factors,
    sweep_params, metrics and tracking_uri.
    """
    uri = resolve_uri(tracking_uri)
    client = _client(uri)
    parent = _find_sweep(client, experiment, sweep)
    parent_id = parent.info.run_id
    factors = _json_tag(parent, "convlab.factors", [])
    query = f"tags.mlflow.parentRunId = '{parent_id}' and tags.`convlab.role` = 'job'"
    children = client.search_runs([parent.info.experiment_id], query, max_results=50_000)  # store's cap
    if not children:
        raise CompareError(f"sweep {parent_id} of experiment {experiment!r} has no job runs yet")
    runs = pd.DataFrame([_run_row(client, child, factors) for child in children])
    runs = runs.sort_values(["variant", "seed"], key=lambda col: col.map(_sort_key)).reset_index(drop=True)
    observed = set().union(*(child.data.metrics for child in children))
    runs.attrs.update(
        experiment=experiment,
        parent_run_id=parent_id,
        parent_status=parent.info.status,
        factors=factors,
        sweep_params=_json_tag(parent, "convlab.sweep_params", {}),
        tracking_uri=uri,
        metrics=sorted(observed.union(LOGGED, DERIVED)),
    )
    return runs


def summary_table(
    runs: pd.DataFrame, metric: str = "val_accuracy", baseline: str | None = None
) -> pd.DataFrame:
    """One row per variant of ``load_runs``'s frame (its ``attrs`` are needed).

    Columns: the variant and its factor levels, ``n_seeds`` (finished runs), ``n_failed``,
    ``epochs``, ``seconds_per_epoch``, ``parameter_count``; ``<m>_mean``, ``<m>_std``,
    ``<m>_ci_low``, ``<m>_ci_high`` (95% t interval) for m in val_accuracy, best_val_accuracy,
    val_loss, best_val_loss and ``metric``; then the difference from ``baseline`` on ``metric``:
    ``difference``, ``difference_ci_low``, ``difference_ci_high``, ``p_value`` (Welch) and ``verdict``.
    """
    _check_metric(runs, metric)
    variants = _variant_order(runs)
    baseline = baseline or _default_baseline(runs, variants)
    if baseline not in variants:
        raise CompareError(f"unknown baseline {baseline!r}; the sweep's variants are: {', '.join(variants)}")
    done = runs[runs.status == "FINISHED"]
    reference = done.loc[done.variant == baseline, metric]
    rows = []
    for variant in variants:
        mine = runs[runs.variant == variant]
        ok = mine[mine.status == "FINISHED"]
        row = {"variant": variant, **{factor: mine[factor].iloc[0] for factor in runs.attrs["factors"]}}
        row.update(
            n_seeds=len(ok), n_failed=int(mine.status.isin(NOT_FINISHED).sum()), epochs=ok.epochs.mean()
        )
        row.update(seconds_per_epoch=ok.seconds_per_epoch.mean(), parameter_count=ok.parameter_count.median())
        for column in dict.fromkeys((*SUMMARIZED, metric)):
            row.update(zip([f"{column}_{stat}" for stat in STATS], mean_ci(ok[column]), strict=True))
        rows.append(row | _versus(ok[metric], reference, metric, variant == baseline, "baseline"))
    summary = pd.DataFrame(rows)
    summary.attrs.update(runs.attrs, metric=metric, baseline=baseline, alpha=ALPHA, test=TEST)
    return summary


def effects_table(runs: pd.DataFrame, metric: str = "val_accuracy") -> pd.DataFrame:
    """Main effects of a factorial sweep (two factors or more; else an empty frame).

    For each factor and level: the metric's final value over all finished runs at that level
    (so averaged over the other factors) and its difference from the factor's first level.
    """
    _check_metric(runs, metric)
    factors = runs.attrs["factors"]
    done = runs[runs.status == "FINISHED"]
    rows = []
    for factor in factors if len(factors) >= 2 else []:
        levels = _levels(runs, factor)
        reference = done.loc[done[factor] == levels[0], metric]
        for level in levels:
            values = done.loc[done[factor] == level, metric]
            row = {"factor": factor, "level": level, "n_runs": int(values.notna().sum())}
            row.update(zip(STATS, mean_ci(values), strict=True))
            rows.append(row | _versus(values, reference, metric, level == levels[0], "reference"))
    columns = ["factor", "level", "n_runs", *STATS, "difference", "difference_ci_low", "difference_ci_high"]
    effects = pd.DataFrame(rows, columns=[*columns, "p_value", "verdict"])
    effects.attrs.update(runs.attrs, metric=metric, alpha=ALPHA, test=TEST)
    return effects


def summarize(
    experiment: str,
    sweep: str | None = None,
    metric: str = "val_accuracy",
    baseline: str | None = None,
    tracking_uri: str | None = None,
) -> pd.DataFrame:
    """``summary_table`` of the sweep's runs: one row per variant."""
    return summary_table(load_runs(experiment, sweep, tracking_uri), metric, baseline)


def main_effects(
    experiment: str, sweep: str | None = None, metric: str = "val_accuracy", tracking_uri: str | None = None
) -> pd.DataFrame:
    """``effects_table`` of the sweep's runs: one row per factor level."""
    return effects_table(load_runs(experiment, sweep, tracking_uri), metric)


def write_report(
    experiment: str,
    sweep: str | None = None,
    metric: str = "val_accuracy",
    baseline: str | None = None,
    tracking_uri: str | None = None,
    out: str | Path | None = None,
    log: bool = True,
    echo: bool = False,
) -> Path:
    """Writes summary.csv, main_effects.csv, curves.png, final_metric.png, report.md and report.html.

    Args:
        experiment: MLflow experiment name (the preset's name).
        sweep: the sweep's parent run id; None for the experiment's latest sweep.
        metric: compared at its final value; lower is better when the name has "loss" or "seconds".
        baseline: variant label the others are compared with; None for the sweep's defaults.
        tracking_uri: None for ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``.
        out: output folder, ``reports/EXPERIMENT`` by default.
        log: also log the files to the sweep's parent run, under ``comparison/``.
        echo: also print the table to the terminal.

    Returns:
        The path of report.md.

    Raises:
        CompareError: an unknown experiment, sweep, baseline or metric (one line).
    """
    runs = load_runs(experiment, sweep, tracking_uri)
    summary = summary_table(runs, metric, baseline)
    path = _write(runs, summary, effects_table(runs, metric), out, log)
    if echo:
        from pipeline import report

        print(f"{report.terminal_table(summary)}\n\nreport: {path}")
    return path


def _versus(values, reference, metric: str, is_reference: bool, label: str) -> dict:
    difference, low, high, p_value = welch(values, reference)
    if is_reference:
        low = high = p_value = math.nan
    enough = min(finite(values).size, finite(reference).size) >= 2
    word = label if is_reference else verdict(difference, p_value, metric, enough)
    keys = ("difference", "difference_ci_low", "difference_ci_high", "p_value", "verdict")
    return dict(zip(keys, (difference, low, high, p_value, word), strict=True))


def _client(uri: str):
    path = store.sqlite_path(uri)
    if path is not None and not path.exists():  # don't create an empty store by asking
        raise CompareError(f"no MLflow store at {path} (pass --tracking-uri or set MLFLOW_TRACKING_URI)")
    import mlflow

    return mlflow.MlflowClient(uri)


def _find_sweep(client, experiment: str, sweep: str | None):
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = ", ".join(sorted(e.name for e in client.search_experiments())) or "none"
        raise CompareError(f"unknown experiment {experiment!r}; experiments in the store: {names}")
    if sweep is None:
        query = "tags.`convlab.role` = 'sweep'"
        latest = client.search_runs([found.experiment_id], query, max_results=1, order_by=["start_time DESC"])
        if not latest:
            raise CompareError(f"experiment {experiment!r} has no sweep (python -m pipeline -m ...)")
        return latest[0]
    try:
        parent = client.get_run(sweep)
    except MlflowException:
        raise CompareError(f"no run with id {sweep!r}") from None
    if parent.info.experiment_id != found.experiment_id or parent.data.tags.get("convlab.role") != "sweep":
        raise CompareError(f"run {sweep} is not a sweep of experiment {experiment!r}")
    return parent


def _json_tag(run, key: str, default):
    try:
        return json.loads(run.data.tags.get(key, json.dumps(default)))
    except json.JSONDecodeError:
        raise CompareError(f"run {run.info.run_id}: tag {key} is not JSON: {run.data.tags[key]!r}") from None


def _run_row(client, run, factors: list[str]) -> dict:
    tags = run.data.tags
    finished = run.info.status == "FINISHED"
    history = {key: _history(client, run.info.run_id, key) for key in CURVES} if finished else {}
    row = {
        "run_id": run.info.run_id,
        "variant": tags.get("convlab.variant", "default"),
        "seed": tags.get("convlab.seed", ""),
        "status": run.info.status,
        "error": tags.get("convlab.error", ""),
    }
    row.update({factor: tags.get(f"convlab.factor.{factor}", "") for factor in factors})
    row.update(dict.fromkeys(LOGGED, math.nan) | run.data.metrics)
    return row | _derived(history, run.data.metrics) | {"history": history}


def _history(client, run_id: str, key: str) -> dict[int, float]:
    points = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
    return {m.step: m.value for m in points}  # a step logged twice keeps its latest value


def _derived(history: dict, metrics: dict) -> dict:
    val_accuracy, seconds = history.get("val_accuracy", {}), history.get("epoch_seconds", {})
    best = metrics.get("best_epoch", max(val_accuracy, key=val_accuracy.get) if val_accuracy else math.nan)
    return {
        "best_epoch": best,
        "best_val_accuracy": metrics.get("best_val_accuracy", val_accuracy.get(best, math.nan)),
        "best_val_loss": history.get("val_loss", {}).get(best, math.nan),
        "epochs": max((max(points) for points in history.values() if points), default=math.nan),
        "seconds_per_epoch": float(np.mean(list(seconds.values()))) if seconds else math.nan,
    }


def _check_metric(runs: pd.DataFrame, metric: str) -> None:
    if metric not in runs.attrs["metrics"]:
        raise CompareError(f"unknown metric {metric!r}; the runs have: {', '.join(runs.attrs['metrics'])}")


def _levels(runs: pd.DataFrame, factor: str) -> list[str]:
    """A factor's levels in the order the sweep lists them; unlisted ones after, sorted."""
    listed, seen = _listed(runs.attrs["sweep_params"].get(factor)), set(runs[factor])
    return [level for level in listed if level in seen] + sorted(seen - set(listed), key=_sort_key)


def _listed(spec) -> list[str]:
    """Values of Hydra's sweep syntax ``a,b`` or ``choice(a,b)``; [] for anything else (``range(...)``)."""
    if isinstance(spec, list):
        return [str(value) for value in spec]
    match = re.fullmatch(r"\s*(?:choice\((.*)\)|([^()]*))\s*", str(spec or ""))
    text = match and (match.group(1) or match.group(2))
    return [value.strip().strip("'\"") for value in text.split(",")] if text else []


def _sort_key(value):
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, str(value))


def _variant_order(runs: pd.DataFrame) -> list[str]:
    factors = runs.attrs["factors"]
    levels = {factor: _levels(runs, factor) for factor in factors}
    first = runs.drop_duplicates("variant").set_index("variant")
    return sorted(first.index, key=lambda v: ([levels[f].index(first.at[v, f]) for f in factors], v))


def _default_baseline(runs: pd.DataFrame, variants: list[str]) -> str:
    """``default``, else the variant at each factor's first listed value, else the first in sorted order."""
    if "default" in variants:
        return "default"
    firsts = {factor: _listed(runs.attrs["sweep_params"].get(factor))[:1] for factor in runs.attrs["factors"]}
    first = runs.drop_duplicates("variant").set_index("variant")
    matching = [v for v in variants if firsts and all([first.at[v, f]] == want for f, want in firsts.items())]
    return matching[0] if matching else sorted(variants)[0]


def _write(runs, summary, effects, out: str | Path | None, log: bool) -> Path:
    from pipeline import report

    out = Path(out) if out else Path("reports") / runs.attrs["experiment"]
    files = report.write(out, runs, summary, effects)
    if log:  # log only this report's files, whatever else the folder holds
        from pipeline import tracking

        with tempfile.TemporaryDirectory() as folder:
            for file in files:
                shutil.copy(file, folder)
            attrs = runs.attrs
            tracking.log_artifacts_to(attrs["tracking_uri"], attrs["parent_run_id"], folder, "comparison")
    return out / "report.md"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.compare",
        description=f"Side-by-side comparison of a sweep's variants over seeds ({TEST}, alpha={ALPHA}).",
    )
    parser.add_argument("--experiment", required=True, help="experiment (preset) name, e.g. stride_vs_pool")
    parser.add_argument("--sweep", help="the sweep's parent run id (default: the latest sweep)")
    parser.add_argument("--metric", default="val_accuracy", help="compared at its final value (%(default)s)")
    parser.add_argument("--baseline", help="variant to compare with (default: the sweep's defaults)")
    parser.add_argument("--out", help="output folder (default: reports/EXPERIMENT/)")
    parser.add_argument("--tracking-uri", help=f"default: $MLFLOW_TRACKING_URI or {store.DEFAULT_URI}")
    parser.add_argument("--no-log", action="store_true", help="don't log the report to the parent run")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The CLI: prints the table, writes the report; 2 with one line on stderr for a user error."""
    args = _parser().parse_args(argv)
    try:
        store.check(resolve_uri(args.tracking_uri))
    except ConvlabError as err:
        print(f"convlab.compare: {err}", file=sys.stderr)
        return 2
    from mlflow.exceptions import MlflowException

    try:
        runs = load_runs(args.experiment, args.sweep, args.tracking_uri)
        summary = summary_table(runs, args.metric, args.baseline)
        path = _write(runs, summary, effects_table(runs, args.metric), args.out, not args.no_log)
    except (ConvlabError, MlflowException) as err:
        print(f"convlab.compare: {(str(err).splitlines() or [type(err).__name__])[0]}", file=sys.stderr)
        return 2
    from pipeline import report

    print(report.terminal_table(summary))
    print(f"\nreport: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
