"""Finding a sweep again, and reading it back: what resume and the comparison ask of the store.

A sweep is named by its sweep id (the ``convlab.sweep_id`` tag) or by its parent run's id; with
neither, the latest sweep is meant. ``resolve`` is the one place that turns those into the
parent run: ``find_parent`` (``sweep.resume``) and ``find_sweep`` (``python -m pipeline.compare``)
both go through it. The rest reads what a sweep's runs hold (JSON tags, metric histories).
"""

from __future__ import annotations

import json

from pipeline.config import errors
from pipeline.tracking import contract, store


def resolve(client, experiment_name: str, sweep: str | None, preset: str | None = None):
    """``(parent run, "")`` of ``sweep`` in MLflow experiment ``experiment_name``, else
    ``(None, why not)``.

    Args:
        sweep: a sweep id or its parent run's id; None for the latest sweep.
        preset: with ``sweep`` None, the latest sweep of this experiment preset (``""`` for none).
    """
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(experiment_name)
    if found is None:
        names = ", ".join(sorted(e.name for e in client.search_experiments())) or "none"
        return None, f"unknown experiment {experiment_name!r}; experiments in the store: {names}"

    def newest(query: str) -> list:
        return client.search_runs([found.experiment_id], query, max_results=1, order_by=["start_time DESC"])

    is_sweep = f"tags.`{contract.ROLE}` = '{contract.ROLE_SWEEP}'"
    if sweep is None:
        of_preset = f" and tags.`{contract.EXPERIMENT}` = '{preset}'" if preset is not None else ""
        latest = newest(is_sweep + of_preset)
        if not latest:
            return None, f"experiment {experiment_name!r} has no sweep (python -m pipeline -m ...)"
        return latest[0], ""
    found_by_id = newest(f"{is_sweep} and tags.`{contract.SWEEP_ID}` = '{sweep}'")
    try:  # a sweep id, or its parent run's id
        parent = found_by_id[0] if found_by_id else client.get_run(sweep)
    except MlflowException:
        return None, f"no sweep or run with id {sweep!r}"
    role = parent.data.tags.get(contract.ROLE)
    if parent.info.experiment_id != found.experiment_id or role != contract.ROLE_SWEEP:
        return None, f"run {sweep} is not a sweep of experiment {experiment_name!r}"
    return parent, ""


def find_parent(
    uri: str, experiment_name: str, sweep_id: str | None, experiment: str
) -> tuple[str, str] | None:
    """``(sweep id, parent run id)`` of sweep ``sweep_id`` (or a parent run's id), or of the latest
    sweep of preset ``experiment`` when ``sweep_id`` is None; None when there is no such sweep."""
    import mlflow

    parent, _ = resolve(mlflow.MlflowClient(uri), experiment_name, sweep_id, experiment)
    return (parent.data.tags[contract.SWEEP_ID], parent.info.run_id) if parent else None


def client(uri: str):
    """A client on ``uri``; a SQLite store that does not exist is an error, not created."""
    path = store.sqlite_path(uri)
    if path is not None and not path.exists():  # don't create an empty store by asking
        raise errors.CompareError(
            f"no MLflow store at {path} (pass --tracking-uri or set MLFLOW_TRACKING_URI)"
        )
    import mlflow

    return mlflow.MlflowClient(uri)


def find_sweep(client, experiment: str, sweep: str | None):
    """The parent run of ``sweep`` (a sweep id or a run id; None: the latest sweep) in MLflow
    experiment ``experiment``; a ``CompareError`` saying why when there is none."""
    parent, why = resolve(client, experiment, sweep)
    if parent is None:
        raise errors.CompareError(why)
    return parent


def json_tag(run, key: str, default):
    try:
        return json.loads(run.data.tags.get(key, json.dumps(default)))
    except json.JSONDecodeError:
        raise errors.CompareError(
            f"run {run.info.run_id}: tag {key} is not JSON: {run.data.tags[key]!r}"
        ) from None


def metric_history(client, run_id: str, key: str) -> dict[int, float]:
    points = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
    return {m.step: m.value for m in points}  # a step logged twice keeps its latest value
