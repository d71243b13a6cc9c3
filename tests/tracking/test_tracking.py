"""Tracking under parallel jobs: what several processes writing one store at once must survive."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from pipeline.tracking import contract, lifecycle, record


def _log_the_same_dataset(uri: str, barrier, results) -> None:

    with lifecycle.run_context(uri, "parallel", "job", {}) as run:
        run.wait()  # open: the dataset is logged right after the barrier, not queued
        images = np.zeros((4, 8, 8, 1), dtype="float32")
        barrier.wait(timeout=60)  # all at once, as a launcher's jobs reach their first epoch
        record.log_dataset("digits", "digits", "abc123", images, np.arange(4), "training")
    results.put("ok")


@pytest.mark.slow
def test_jobs_logging_the_same_dataset_at_once_all_finish(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.MlflowClient(uri).create_experiment("parallel", artifact_location=str(tmp_path / "artifacts"))
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(6), context.Queue()
    workers = [context.Process(target=_log_the_same_dataset, args=(uri, barrier, results)) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=180)
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("parallel").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 6, [
        r.data.tags.get(contract.ERROR) for r in runs
    ]
    assert all(len(r.inputs.dataset_inputs) == 1 for r in runs)


def test_what_is_logged_before_the_run_opens_waits_and_a_failure_before_it_is_still_recorded(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(ValueError), lifecycle.run_context(uri, "early", "job", {"team": "a"}) as run:
        record.log_params({"optimizer.name": "adam"})
        record.log_metrics({"loss": 1.0}, step=1)
        assert not run.is_open  # queued: nothing opened yet, nothing imported for it
        raise ValueError("bad pixels")
    client = mlflow.MlflowClient(uri)
    recorded = client.get_run(run.run_id)
    assert recorded.info.status == "FAILED"
    assert recorded.data.tags[contract.ERROR] == "ValueError: bad pixels"
    assert (recorded.data.tags["team"], recorded.data.tags["mlflow.runName"]) == ("a", "job")
    logged = {  # what the run logged, not the machine's samples nor its heartbeat
        k: v
        for k, v in recorded.data.metrics.items()
        if not k.startswith("system/") and k != contract.HEARTBEAT
    }
    assert recorded.data.params == {"optimizer.name": "adam"} and logged == {"loss": 1.0}


def test_a_run_opened_in_the_background_logs_its_queue_in_order_and_ends_finished(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with lifecycle.run_context(uri, "background", "job", {}) as run:
        for step in (1, 2, 3):
            record.log_metrics({"loss": 1.0 / step}, step=step)
        run.open_in_background()
        record.set_tags({"late": "yes"})
    history = mlflow.MlflowClient(uri).get_metric_history(run.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5), (3, 1.0 / 3)]
    recorded = mlflow.MlflowClient(uri).get_run(run.run_id)
    assert recorded.info.status == "FINISHED" and recorded.data.tags["late"] == "yes"
