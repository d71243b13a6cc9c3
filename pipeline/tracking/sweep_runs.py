"""A sweep's runs in MLflow: its parent run and its children, through ``MlflowClient``.

``record`` writes the run a process is training (MLflow's active run); this module
writes and reads runs that are not active: a sweep's parent, which stays open while its jobs
open their own runs in the same process, and the children that resume and the summary look at.
The two are convlab's only MLflow writers (``ui`` adds the saved view's tag).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path

from pipeline.config import errors
from pipeline.tracking import contract, store


def log_artifacts_to(uri: str, run_id: str, folder: str | Path, artifact_path: str) -> None:
    """Logs a folder's files to a run that need not be active (a sweep's parent run)."""
    import mlflow

    mlflow.MlflowClient(uri).log_artifacts(run_id, str(folder), artifact_path)


def start_parent_run(uri: str, experiment_name: str, run_name: str, tags: Mapping[str, str]) -> str:
    import mlflow

    experiment_id = store.get_or_create_experiment(uri, experiment_name)
    run = mlflow.MlflowClient(uri).create_run(experiment_id, run_name=run_name, tags=dict(tags))
    return run.info.run_id


def end_run(uri: str, run_id: str, status: str, error: str | None = None) -> None:
    """Ends a run that need not be active (a sweep's parent, a stale child) in ``status``."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    if error:
        client.set_tag(run_id, contract.ERROR, error[: contract.MAX_VALUE])
    client.set_terminated(run_id, status)


def end_if_running(uri: str, run_id: str, status: str, error: str) -> None:
    """Ends a run in ``status`` unless it has ended already."""
    import mlflow

    if mlflow.MlflowClient(uri).get_run(run_id).info.status == contract.RUNNING:
        end_run(uri, run_id, status, error)


def reopen_run(uri: str, run_id: str) -> None:
    """Sets an ended run RUNNING again (a resumed sweep's parent, a run resumed from its
    checkpoint), without the error its end left."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    client.update_run(run_id, status=contract.RUNNING)
    if contract.ERROR in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, contract.ERROR)


def run_progress(uri: str, run_id: str) -> tuple[str | None, int]:
    """A run's status (None: no such run) and the last epoch it logged (``val_accuracy``'s step)."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return None, 0
    steps = [m.step for m in client.get_metric_history(run_id, contract.VAL_ACCURACY)]
    return run.info.status, max(steps, default=0)


def run_tags(uri: str, run_id: str) -> dict[str, str]:
    import mlflow

    return dict(mlflow.MlflowClient(uri).get_run(run_id).data.tags)


def set_run_tags(uri: str, run_id: str, tags: Mapping[str, str]) -> None:
    import mlflow
    from mlflow.entities import RunTag

    items = [RunTag(k, str(v)) for k, v in tags.items()]
    mlflow.MlflowClient(uri).log_batch(run_id, tags=items, synchronous=True)


def log_metrics_to(uri: str, run_id: str, metrics: Mapping[str, float]) -> None:
    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k[: contract.MAX_KEY], float(v), now, 0) for k, v in metrics.items()]
    mlflow.MlflowClient(uri).log_batch(run_id, metrics=items, synchronous=True)


def log_params_to(uri: str, run_id: str, params: Mapping[str, str]) -> None:
    import mlflow
    from mlflow.entities import Param

    items = [Param(k[: contract.MAX_KEY], str(v)[: contract.MAX_VALUE]) for k, v in params.items()]
    mlflow.MlflowClient(uri).log_batch(run_id, params=items, synchronous=True)


def log_text_to(uri: str, run_id: str, text: str, artifact_file: str) -> None:
    import mlflow

    mlflow.MlflowClient(uri).log_text(run_id, text, artifact_file)


def create_child_run(uri: str, experiment_name: str, run_name: str, tags: Mapping[str, str]) -> str:
    """A sweep job's run, created RUNNING before it trains: its claim on the job."""
    import mlflow

    experiment_id = store.get_or_create_experiment(uri, experiment_name)
    return mlflow.MlflowClient(uri).create_run(experiment_id, run_name=run_name, tags=dict(tags)).info.run_id


def delete_run(uri: str, run_id: str) -> None:
    """Deletes a run (a claim that yielded): searches no longer find it."""
    import mlflow

    mlflow.MlflowClient(uri).delete_run(run_id)


def record_failed_run(uri: str, experiment_name: str, run_name: str, tags: Mapping[str, str]) -> str:
    """A run that failed before it could start training: created and ended FAILED at once."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment_id = store.get_or_create_experiment(uri, experiment_name)
    run = client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
    client.set_terminated(run.info.run_id, contract.FAILED)
    return run.info.run_id


def find_parent(
    uri: str, experiment_name: str, sweep_id: str | None, experiment: str
) -> tuple[str, str] | None:
    """``(sweep id, parent run id)`` of sweep ``sweep_id``, or of the latest sweep of preset
    ``experiment`` when ``sweep_id`` is None; None when there is no such sweep."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment_name)
    if found is None:
        return None
    query = f"tags.`{contract.ROLE}` = '{contract.ROLE_SWEEP}'"
    if sweep_id is not None:
        query += f" and tags.`{contract.SWEEP_ID}` = '{sweep_id}'"
    else:
        query += f" and tags.`{contract.EXPERIMENT}` = '{experiment}'"
    runs = client.search_runs(
        [found.experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1
    )
    if not runs and sweep_id is not None:  # a parent run id works too
        runs = [
            r
            for r in client.search_runs([found.experiment_id], query.split(" and ")[0])
            if r.info.run_id == sweep_id
        ]
    return (runs[0].data.tags[contract.SWEEP_ID], runs[0].info.run_id) if runs else None


def children(uri: str, parent_run_id: str) -> list[dict]:
    """Each child run of a sweep, oldest first: what resume and the summary need to know."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.{contract.PARENT} = '{parent_run_id}'",
        order_by=["attributes.start_time ASC"],
        max_results=50_000,
    )
    return [_child(r) for r in runs]


def _child(run) -> dict:
    tags = run.data.tags
    return {
        "run_id": run.info.run_id,
        "status": run.info.status,
        "start_time": run.info.start_time or 0,
        "variant": tags.get(contract.VARIANT, "?"),
        "seed": tags.get(contract.SEED, "?"),
        "error": tags.get(contract.ERROR, ""),
        "config_hash": tags.get(contract.CONFIG_HASH, ""),
        "host": tags.get(contract.HOST, ""),
        "pid": tags.get(contract.PID, ""),
        "process_start": tags.get(contract.PROCESS_START, ""),
        "heartbeat": run.data.metrics.get(contract.HEARTBEAT),
        "scheduler_job": tags.get(contract.SCHEDULER_JOB, ""),
        "overrides": tags.get(contract.OVERRIDES, ""),
    }


# --- reading a sweep's runs for the comparison (``pipeline.compare``) ------------------------
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
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = ", ".join(sorted(e.name for e in client.search_experiments())) or "none"
        raise errors.CompareError(f"unknown experiment {experiment!r}; experiments in the store: {names}")
    if sweep is None:
        query = f"tags.`{contract.ROLE}` = '{contract.ROLE_SWEEP}'"
        latest = client.search_runs([found.experiment_id], query, max_results=1, order_by=["start_time DESC"])
        if not latest:
            raise errors.CompareError(f"experiment {experiment!r} has no sweep (python -m pipeline -m ...)")
        return latest[0]
    by_id = f"tags.`{contract.ROLE}` = '{contract.ROLE_SWEEP}' and tags.`{contract.SWEEP_ID}` = '{sweep}'"
    found_by_id = client.search_runs([found.experiment_id], by_id, max_results=1)
    try:  # a sweep id, or its parent run's id
        parent = found_by_id[0] if found_by_id else client.get_run(sweep)
    except MlflowException:
        raise errors.CompareError(f"no sweep or run with id {sweep!r}") from None
    role = parent.data.tags.get(contract.ROLE)
    if parent.info.experiment_id != found.experiment_id or role != contract.ROLE_SWEEP:
        raise errors.CompareError(f"run {sweep} is not a sweep of experiment {experiment!r}")
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
