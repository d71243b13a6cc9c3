"""A run beats while its process lives, not at an epoch's end: an epoch (or a feature extraction)
longer than ``sweep.stale_after`` does not make a healthy run look dead; an ended run stops."""

from __future__ import annotations

import time

from pipeline.sweep import jobs
from pipeline.tracking import contract, heartbeat, lifecycle, sweep_runs

STALE_AFTER = 1.5  # seconds: the epoch below lasts twice that


def test_an_epoch_longer_than_stale_after_is_not_marked_stale(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment_id = client.create_experiment("beats", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(experiment_id, tags={contract.ROLE: contract.ROLE_SWEEP}).info.run_id
    tags = {contract.PARENT: parent, contract.HOST: "node-elsewhere", contract.PID: "1"}  # seen from afar

    with lifecycle.run_context(
        uri, "beats", "job", tags, system_metrics=False, heartbeat_seconds=heartbeat.every(STALE_AFTER)
    ) as run:
        run.wait()
        started = time.time()
        while time.time() - started < 2 * STALE_AFTER:  # one long epoch: nothing logged from here
            (child,) = sweep_runs.children(uri, parent)
            assert not jobs.is_stale(child, STALE_AFTER), f"stale after {time.time() - started:.1f} s"
            time.sleep(0.2)

    beats = len(client.get_metric_history(run.run_id, contract.HEARTBEAT))
    time.sleep(2 * heartbeat.every(STALE_AFTER))
    assert (
        beats >= 4 and len(client.get_metric_history(run.run_id, contract.HEARTBEAT)) == beats
    )  # ended: silent
