"""Tracking under parallel jobs: what several processes writing one store at once must survive."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from pipeline import contract


def _log_the_same_dataset(uri: str, barrier, results) -> None:
    from pipeline import lifecycle, tracking

    with lifecycle.run_context(uri, "parallel", "job", {}) as run:
        run.wait()  # open: the dataset is logged right after the barrier, not queued
        images = np.zeros((4, 8, 8, 1), dtype="float32")
        barrier.wait(timeout=60)  # all at once, as a launcher's jobs reach their first epoch
        tracking.log_dataset("digits", "digits", "abc123", images, np.arange(4), "training")
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
