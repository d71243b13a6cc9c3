"""Side-by-side comparison of a sweep's runs: which variant is better, and how sure can we be?

    python -m pipeline.compare --experiment stride_vs_pool          # the latest sweep
    python -m pipeline.compare --experiment stride_vs_pool --metric val_loss --no-log

    from pipeline.compare import load
    summary = load.summarize("stride_vs_pool")   # one row per variant, a pandas DataFrame

Reads only what ``pipeline.tracking`` wrote: a sweep's parent run (tag ``convlab.role=sweep``)
and its job runs (tag ``mlflow.parentRunId``), one per (variant, seed): the latest FINISHED
one. Each variant is compared with the baseline on the metric's final value: a paired t-test
on the per-seed differences when they share seeds, else Welch's test; Holm's correction across
the comparisons; alpha = 0.05 (``pipeline.tables`` and ``pipeline.stats``). Never imports
TensorFlow, and imports MLflow only inside the functions that read it.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd

from pipeline.compare import classes, report, speed, tables
from pipeline.compare.stats import ALPHA, POWER
from pipeline.config import errors, overrides
from pipeline.config.errors import ConvlabError
from pipeline.tracking import contract, store, sweep_lookup, sweep_runs

undecided = tables.undecided  # the sweep asks: which variants could more seeds still decide?


CompareError = errors.CompareError  # an experiment, sweep, baseline or metric that cannot be found


resolve_uri = store.resolve_uri  # the flag's URI, else $MLFLOW_TRACKING_URI, else MLflow's default


def load_runs(experiment: str, sweep: str | None = None, tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per job (variant, seed) of a sweep (the latest sweep unless ``sweep`` names its parent).

    A resumed sweep can hold several runs of one job: the row is its latest FINISHED run, else
    its latest run, so a job counts as failed only when none of its runs finished (``attempts``
    counts them). Columns: ``run_id``, ``variant``, ``seed``, ``status``, ``error``,
    ``attempts``, each factor's level, each metric's final value, ``epochs``,
    ``seconds_per_epoch``, ``best_val_loss`` and ``history`` (``{metric: {epoch: value}}``).
    ``attrs``: experiment, parent_run_id, sweep_id, parent_status, factors, sweep_params, metrics,
    tracking_uri.
    """
    uri = resolve_uri(tracking_uri)
    client = sweep_lookup.client(uri)
    parent = sweep_lookup.find_sweep(client, experiment, sweep)
    parent_id = parent.info.run_id
    factors = sweep_lookup.json_tag(parent, contract.FACTORS, [])
    query = f"tags.`{contract.PARENT}` = '{parent_id}' and tags.`{contract.ROLE}` = '{contract.ROLE_JOB}'"
    children = client.search_runs([parent.info.experiment_id], query, max_results=50_000)  # store's cap
    children = [c for c in children if contract.PRUNED_AT_EPOCH not in c.data.tags]  # pruned: never counts
    confirmed = sweep_lookup.json_tag(parent, contract.CONFIRMED, None)
    if confirmed is not None:  # a study: the configurations its confirm stage ran
        children = [c for c in children if c.data.tags.get(contract.VARIANT) in confirmed]
    if not children:
        sweep_id = parent.data.tags.get(contract.SWEEP_ID, parent_id)
        raise CompareError(f"sweep {sweep_id} of experiment {experiment!r} has no job runs yet")
    runs = tables.one_per_job(pd.DataFrame([_run_row(client, child, factors) for child in children]))
    observed = set().union(*(child.data.metrics for child in children))
    runs.attrs.update(
        experiment=experiment,
        parent_run_id=parent_id,
        sweep_id=parent.data.tags.get(contract.SWEEP_ID, parent_id),
        parent_status=parent.info.status,
        factors=factors,
        sweep_params=sweep_lookup.json_tag(parent, contract.SWEEP_PARAMS, {}),
        tracking_uri=uri,
        baseline=parent.data.tags.get(contract.BASELINE),
        study=confirmed is not None,  # configurations, not a factorial design: no main effects
        metrics=sorted(observed.union(tables.LOGGED, tables.DERIVED)),
    )
    return runs


def summary_table(
    runs: pd.DataFrame,
    metric: str = contract.VAL_ACCURACY,
    baseline: str | None = None,
    stopped: dict[str, str] | None = None,
) -> pd.DataFrame:
    """One row per variant of ``load_runs``'s frame (its ``attrs`` are needed): counts, estimates
    and the comparison with ``baseline`` on ``metric`` (columns: ``tables.summary_frame``)."""
    _check_metric(runs, metric)
    listed = _listings(runs)
    variants = tables.variant_order(runs, _levels(runs, listed))
    baseline = baseline or runs.attrs.get("baseline") or tables.default_baseline(runs, variants, listed)
    if baseline not in variants:
        raise CompareError(f"unknown baseline {baseline!r}; the sweep's variants are: {', '.join(variants)}")
    summary = tables.summary_frame(runs, variants, baseline, metric, stopped)
    summary.attrs.update(runs.attrs, metric=metric, baseline=baseline, alpha=ALPHA, power=POWER)
    return summary


def effects_table(runs: pd.DataFrame, metric: str = contract.VAL_ACCURACY) -> pd.DataFrame:
    """Main effects of a factorial sweep (two factors or more; else an empty frame).

    For each factor and level: the metric's final value over all finished runs at that level
    (so averaged over the other factors) and its comparison with the factor's first level,
    paired by seed and the other factors' levels; the same columns as ``summary_table``.
    """
    _check_metric(runs, metric)
    levels = {} if runs.attrs.get("study") else _levels(runs, _listings(runs))
    effects = tables.effects_frame(runs, levels, metric)
    effects.attrs.update(runs.attrs, metric=metric, alpha=ALPHA, power=POWER)
    return effects


def summarize(
    experiment: str,
    sweep: str | None = None,
    metric: str = contract.VAL_ACCURACY,
    baseline: str | None = None,
    tracking_uri: str | None = None,
    stopped: dict[str, str] | None = None,
) -> pd.DataFrame:
    """``summary_table`` of a sweep's runs: one row per variant.

    Args:
        experiment: MLflow experiment name (the preset's name).
        sweep: a sweep id or its parent run id; None for the experiment's latest sweep.
        metric: compared at its final value; lower is better when the name has "loss" or "seconds".
        baseline: variant label the others are compared with; None: ``tables.BASELINE_RULE``.
        tracking_uri: None for ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``.
        stopped: per variant, why the sweep stopped adding seeds (a ``stopped`` column).
    """
    return summary_table(load_runs(experiment, sweep, tracking_uri), metric, baseline, stopped)


def main_effects(
    experiment: str,
    sweep: str | None = None,
    metric: str = contract.VAL_ACCURACY,
    tracking_uri: str | None = None,
) -> pd.DataFrame:
    """``effects_table`` of the sweep's runs: one row per factor level."""
    return effects_table(load_runs(experiment, sweep, tracking_uri), metric)


def write_report(
    experiment: str,
    sweep: str | None = None,
    metric: str = contract.VAL_ACCURACY,
    baseline: str | None = None,
    tracking_uri: str | None = None,
    out: str | Path | None = None,
    log: bool = True,
    echo: bool = False,
    stopped: dict[str, str] | None = None,
) -> Path:
    """Writes summary.csv, main_effects.csv, curves.png, final_metric.png, report.md and report.html.

    ``experiment``, ``sweep``, ``metric``, ``baseline``, ``tracking_uri`` and ``stopped`` as for
    ``summarize``; ``out``: the folder (``reports/EXPERIMENT`` by default); ``log``: also log the
    files to the parent run under ``comparison/``; ``echo``: also print the table. Returns the
    path of report.md. Raises ``CompareError`` (one line) for an unknown experiment, sweep,
    baseline or metric, or an output folder that cannot be written.
    """
    runs = load_runs(experiment, sweep, tracking_uri)
    return report_runs(runs, metric, baseline, out, log, echo, stopped).path


@dataclasses.dataclass(frozen=True)
class Comparison:
    summary: pd.DataFrame
    effects: pd.DataFrame
    path: Path  # report.md
    per_class: pd.DataFrame | None = None  # ``classes.per_class_frame``: recall per class
    speed: pd.DataFrame | None = None  # ``speed.ratio_frame``: speed and memory against the baseline


def report_runs(
    runs: pd.DataFrame,
    metric: str = contract.VAL_ACCURACY,
    baseline: str | None = None,
    out: str | Path | None = None,
    log: bool = True,
    echo: bool = False,
    stopped: dict[str, str] | None = None,
) -> Comparison:
    """``write_report`` on runs already loaded (``load_runs``); also returns the tables."""
    summary = summary_table(runs, metric, baseline, stopped)
    effects = effects_table(runs, metric)
    per_class = classes.per_class_frame(runs, list(summary.variant), summary.attrs["baseline"])
    ratios = speed.ratio_frame(runs, list(summary.variant), summary.attrs["baseline"])
    path = _write(runs, summary, effects, out, log, per_class, ratios)
    if echo:
        said = [*classes.sentences(per_class), *speed.sentences(ratios, summary)]
        lines = "".join(f"\n{line}" for line in said)
        print(f"{report.terminal_table(summary)}\n{lines}\n\nreport: {path}")
    return Comparison(summary, effects, path, per_class, ratios)


def _check_metric(runs: pd.DataFrame, metric: str) -> None:
    if metric not in runs.attrs["metrics"]:
        raise CompareError(f"unknown metric {metric!r}; the runs have: {', '.join(runs.attrs['metrics'])}")


def _listings(runs: pd.DataFrame) -> dict[str, list[str]]:
    """Each factor's levels as the sweep definition lists them."""
    return {
        factor: _listed(factor, runs.attrs["sweep_params"].get(factor)) for factor in runs.attrs["factors"]
    }


def _levels(runs: pd.DataFrame, listed: dict[str, list[str]]) -> dict[str, list[str]]:
    return {factor: tables.levels(runs, factor, values) for factor, values in listed.items()}


def _listed(factor: str, spec) -> list[str]:
    """The levels a sweep definition lists (``a,b``, ``choice(a,b)``, ``range(3)``), by Hydra's parser."""
    if isinstance(spec, list) or not spec:
        return [str(value) for value in spec or []]
    try:
        return list(overrides.parse([f"{factor}={spec}"])[0].values)
    except ConvlabError:
        return []


def _write(runs, summary, effects, out: str | Path | None, log: bool, per_class=None, ratios=None) -> Path:

    out = Path(out) if out else Path("reports") / runs.attrs["experiment"]
    try:
        files = report.write(out, runs, summary, effects, per_class, ratios)
    except OSError as err:  # nothing is logged yet: the store is untouched
        raise CompareError(f"cannot write the report to {out}: {err.strerror or err}") from None
    if log:  # log only this report's files, whatever else the folder holds
        with tempfile.TemporaryDirectory() as folder:
            for file in files:
                shutil.copy(file, folder)
            attrs = runs.attrs
            sweep_runs.log_artifacts_to(attrs["tracking_uri"], attrs["parent_run_id"], folder, "comparison")
    return out / "report.md"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.compare",
        description="Side-by-side comparison of a sweep's variants over seeds (paired t-test by seed, "
        f"else Welch; Holm-corrected, alpha={ALPHA}).",
    )
    parser.add_argument("--experiment", required=True, help="experiment (preset) name, e.g. stride_vs_pool")
    parser.add_argument("--sweep", help="a sweep id or its parent run id (default: the latest sweep)")
    parser.add_argument(
        "--metric",
        default=contract.VAL_ACCURACY,
        help="compared at its final value (%(default)s; or val_macro_f1, val_recall/<class>, test_accuracy)",
    )
    parser.add_argument("--baseline", help=f"variant to compare with (default: {tables.BASELINE_RULE})")
    parser.add_argument("--out", help="output folder (default: reports/EXPERIMENT/)")
    parser.add_argument("--tracking-uri", help=f"default: $MLFLOW_TRACKING_URI or {store.DEFAULT_URI}")
    parser.add_argument("--no-log", action="store_true", help="don't log the report to the parent run")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The CLI: prints the table, writes the report; 2 with one line on stderr for a user error."""
    args = _parser().parse_args(argv)
    from mlflow.exceptions import MlflowException

    try:
        store.check(resolve_uri(args.tracking_uri))
        keywords = {"metric": args.metric, "baseline": args.baseline, "tracking_uri": args.tracking_uri}
        write_report(args.experiment, args.sweep, **keywords, out=args.out, log=not args.no_log, echo=True)
    except (ConvlabError, MlflowException) as err:
        print(store.redact(f"convlab: {(str(err).splitlines() or [type(err).__name__])[0]}"), file=sys.stderr)
        return 2
    return 0


def _run_row(client, run, factors: list[str]) -> dict:
    finished = run.info.status == contract.FINISHED
    history = sweep_lookup.metric_history
    curves = {key: history(client, run.info.run_id, key) for key in tables.CURVES} if finished else {}
    return tables.run_row(run.info, run.data.tags, run.data.metrics, factors, curves)
