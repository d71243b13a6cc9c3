"""``sweep.register``: a finished sweep registers its winner once, a failed one nothing, and a
registration that fails makes the sweep exit non-zero. In-process, on SQLite, no training: the
runs are written to the tracking contract by hand (``conftest``), each with a logged model."""

from __future__ import annotations

import dataclasses
import time

import pytest
from conftest import write_child_run, write_sweep_run

from pipeline.sweep import summary
from pipeline.tracking import contract

KEY = "optimizer.learning_rate"
FINALS = {"0.000001": [0.10, 0.11, 0.12], "0.003": [0.90, 0.92, 0.91]}  # 0.003 decided better
NAME = "digits-cnn"


@pytest.fixture
def sweep(tmp_path):
    """A sweep of ``FINALS`` (every run with a logged model) and its callback's state."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment_id = client.create_experiment("handoff", artifact_location=str(tmp_path / "artifacts"))
    parent = write_sweep_run(client, experiment_id, [KEY], {KEY: ",".join(FINALS), "seed": "0,1,2"}, 1)
    for value, finals in FINALS.items():
        for seed, final in enumerate(finals):
            write_child_run(client, experiment_id, parent, {KEY: value}, seed, final)
    for run in client.search_runs([experiment_id], f"tags.`{contract.PARENT}` = '{parent}'"):
        client.create_logged_model(experiment_id, name="model", source_run_id=run.info.run_id)
    state = summary.SweepPass(
        sweep_id="abc123", parent_run_id=parent, tracking_uri=uri, experiment_name="handoff",
        sweep_dir=str(tmp_path / "multirun"), started=time.time(), register=NAME, register_undecided=False,
    )  # fmt: skip
    return client, experiment_id, state


def _versions(client):
    return client.search_model_versions(f"name = '{NAME}'")


def test_a_resume_of_a_finished_sweep_registers_nothing_again(sweep, capsys):
    client, _, state = sweep
    first = summary.finish(state)
    assert first.status == contract.FINISHED and first.message is None
    (version,) = _versions(client)
    assert client.get_model_version_by_alias(NAME, contract.CHAMPION).version == version.version

    client.update_run(state.parent_run_id, status=contract.RUNNING)  # sweep.resume reopens the parent
    again = summary.finish(state)

    assert again.message is None and len(_versions(client)) == 1  # the same run, not version 2
    assert client.get_model_version_by_alias(NAME, contract.CHAMPION).version == version.version
    assert "nothing registered again" in capsys.readouterr().out


def test_a_failed_sweep_registers_nothing(sweep, capsys):
    client, experiment_id, state = sweep
    write_child_run(client, experiment_id, state.parent_run_id, {KEY: "0.01"}, 0, None, "no GPU")

    outcome = summary.finish(state)

    assert outcome.status == contract.FAILED and outcome.message  # exits non-zero
    assert not _versions(client)
    assert (
        f"convlab: sweep.register={NAME}: the sweep ended FAILED; nothing registered"
        in capsys.readouterr().err
    )


def test_a_registration_that_fails_makes_the_sweep_exit_non_zero(sweep):
    client, _, state = sweep
    state = dataclasses.replace(state, register="bad/name:")  # a name the registry refuses

    outcome = summary.finish(state)

    assert outcome.status == contract.FINISHED and not _versions(client)
    assert (
        outcome.message.startswith("convlab: sweep.register=bad/name:")
        and "nothing registered" in outcome.message
    )
