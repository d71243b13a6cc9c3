"""A sweep's runs in MLflow: its parent run and its children, through ``MlflowClient``.

``record`` writes the run a process is training (MLflow's active run); this module
writes and reads runs that are not active: a sweep's parent, which stays open while its jobs
open their own runs in the same process, and the children that resume and the summary look at.
The two are convlab's only MLflow writers (``ui`` adds the saved view's tag). Finding a sweep
again by its id, and reading it back for the comparison, is ``sweep_lookup``'s.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from pipeline.tracking import contract, redaction, store


def log_artifacts_to(uri: str, run_id: str, folder: str | Path, artifact_path: str) -> None:
    """Logs a folder's files to a run that need not be active (a sweep's parent run); its text
    files are redacted in place first (convlab wrote them: reports, tables)."""
    import mlflow

    redaction.redact_files(folder)
    mlflow.MlflowClient(uri).log_artifacts(run_id, str(folder), artifact_path)


def start_parent_run(uri: str, experiment_name: str, run_name: str, tags: Mapping[str, str]) -> str:
    import mlflow

    experiment_id = store.get_or_create_experiment(uri, experiment_name)
    client = mlflow.MlflowClient(uri)
    run = client.create_run(
        experiment_id, run_name=redaction.redact(run_name), tags=redaction.redact_values(tags)
    )
    return run.info.run_id


def end_run(uri: str, run_id: str, status: str, error: str | None = None) -> None:
    """Ends a run that need not be active (a sweep's parent, a stale child) in ``status``."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    if error:
        client.set_tag(run_id, contract.ERROR, redaction.redact(error)[: contract.MAX_VALUE])
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

    items = [RunTag(k, v) for k, v in redaction.redact_values(tags).items()]
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

    items = [
        Param(k[: contract.MAX_KEY], v[: contract.MAX_VALUE])
        for k, v in redaction.redact_values(params).items()
    ]
    mlflow.MlflowClient(uri).log_batch(run_id, params=items, synchronous=True)


def log_text_to(uri: str, run_id: str, text: str, artifact_file: str) -> None:
    import mlflow

    mlflow.MlflowClient(uri).log_text(run_id, redaction.redact(text), artifact_file)


def create_child_run(uri: str, experiment_name: str, run_name: str, tags: Mapping[str, str]) -> str:
    """A sweep job's run, created RUNNING before it trains: its claim on the job."""
    import mlflow

    experiment_id = store.get_or_create_experiment(uri, experiment_name)
    client = mlflow.MlflowClient(uri)
    return client.create_run(
        experiment_id, run_name=redaction.redact(run_name), tags=redaction.redact_values(tags)
    ).info.run_id


def write_once(uri: str, run_id: str, key: str, value: str) -> str:
    """Param ``key`` = ``value`` on ``run_id`` unless the run has that param already; returns the
    value the store holds: the first writer's. A param cannot change, and the store's own unique
    key on (run, key) decides which of two writers at once was first, whatever their clocks."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(uri)
    try:
        client.log_param(run_id, key, value)
    except MlflowException:  # another value is there (or the write failed: what is there says)
        held = client.get_run(run_id).data.params.get(key)
        if held is None:
            raise
        return held
    return value


def params(uri: str, run_id: str, prefix: str) -> dict[str, str]:
    """The run's params whose key starts with ``prefix`` (the prefix taken off)."""
    import mlflow

    found = mlflow.MlflowClient(uri).get_run(run_id).data.params
    return {key.removeprefix(prefix): value for key, value in found.items() if key.startswith(prefix)}


def delete_run(uri: str, run_id: str) -> None:
    """Deletes a run (a claim that yielded): searches no longer find it."""
    import mlflow

    mlflow.MlflowClient(uri).delete_run(run_id)


def record_failed_run(uri: str, experiment_name: str, run_name: str, tags: Mapping[str, str]) -> str:
    """A run that failed before it could start training: created and ended FAILED at once."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment_id = store.get_or_create_experiment(uri, experiment_name)
    run = client.create_run(
        experiment_id, run_name=redaction.redact(run_name), tags=redaction.redact_values(tags)
    )
    client.set_terminated(run.info.run_id, contract.FAILED)
    return run.info.run_id


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
        "end_time": run.info.end_time or 0,  # a KILLED run's: which end a resume reopens (app)
        "variant": tags.get(contract.VARIANT, "?"),
        "seed": tags.get(contract.SEED, "?"),
        "error": tags.get(contract.ERROR, ""),
        "config_hash": tags.get(contract.CONFIG_HASH, ""),
        "host": tags.get(contract.HOST, ""),
        "pid": tags.get(contract.PID, ""),
        "process_start": tags.get(contract.PROCESS_START, ""),
        "sweep_process": tags.get(contract.SWEEP_PROCESS, ""),
        "heartbeat": run.data.metrics.get(contract.HEARTBEAT),
        "scheduler_job": tags.get(contract.SCHEDULER_JOB, ""),
        "overrides": tags.get(contract.OVERRIDES, ""),
    }
