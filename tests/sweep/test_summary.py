"""A pass's end, in process on SQLite: the parent ends, its summary names each failed job."""

from __future__ import annotations

import time

from conftest import write_child_run, write_sweep_run

from pipeline.sweep import summary
from pipeline.tracking import contract


def test_a_pass_with_a_failed_job_ends_its_parent_failed_and_names_the_job(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment_id = client.create_experiment("passes", artifact_location=str(tmp_path / "artifacts"))
    parent = write_sweep_run(client, experiment_id, ["optimizer"], {"optimizer": "adam,sgd"}, 1)
    write_child_run(client, experiment_id, parent, {"optimizer": "adam"}, 0, 0.8)
    write_child_run(client, experiment_id, parent, {"optimizer": "sgd"}, 0, None, error="out of luck")
    sweep_pass = summary.SweepPass(
        sweep_id="abc123",
        parent_run_id=parent,
        tracking_uri=uri,
        experiment_name="passes",
        sweep_dir=str(tmp_path / "sweep"),
        started=time.time() - 65,
        register=None,
        register_undecided=False,
    )

    outcome = summary.finish(sweep_pass)

    assert (outcome.status, outcome.finished, len(outcome.failed)) == (contract.FAILED, 1, 1)
    assert outcome.summary.startswith("# sweep abc123: 1 of 2 jobs finished (0:01:05 this pass)")
    assert "FAILED optimizer=sgd seed=0: out of luck" in outcome.summary
    assert client.get_run(parent).info.status == contract.FAILED
    assert outcome.message == "convlab: 1 of 2 sweep jobs failed (see the summary above)"
