"""The team server: PostgreSQL + ``python -m pipeline.server``, used by a parallel sweep.

Needs PostgreSQL 15 (the Debian package) and root; elsewhere these tests skip, unless
``CONVLAB_REQUIRE_SERVER=1`` (as ``.ci/run`` sets), where a missing server fails them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, free_port

from pipeline.tracking import contract

SHRUNK = ["seed=0", "trainer.epochs=1", "dataset.max_samples=200"]


def _sweep_runs(client, experiment: str):
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], max_results=100)
    (parent,) = [r for r in runs if r.data.tags.get(contract.ROLE) == contract.ROLE_SWEEP]
    children = [r for r in runs if r.data.tags.get(contract.PARENT) == parent.info.run_id]
    return parent, children


@pytest.mark.server
@pytest.mark.slow
def test_parallel_sweep_tracks_to_the_server_and_reads_back(server_uri, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server_uri)
    # in-process runs of other tests set MLflow's process-wide URI, which beats the variable
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(server_uri)
    try:
        _sweep_compare_and_read_back(server_uri, tmp_path)
    finally:
        mlflow.set_tracking_uri(previous)


def _sweep_compare_and_read_back(server_uri, tmp_path):
    import mlflow

    experiment = "server_sweep"
    sweep = ["-m", "downsample=stride,maxpool", *SHRUNK, f"tracking.experiment_name={experiment}"]
    result = cli(*sweep, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    client = mlflow.MlflowClient(server_uri)
    parent, children = _sweep_runs(client, experiment)
    assert parent.info.status == contract.FINISHED
    variants = sorted(c.data.tags[contract.VARIANT] for c in children)
    assert variants == ["downsample=maxpool", "downsample=stride"]
    assert {c.info.status for c in children} == {contract.FINISHED}

    # a resume through the server: everything finished, so nothing trains and nothing is added
    resumed = cli(*sweep, "sweep.resume=last", cwd=tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again, children_again = _sweep_runs(client, experiment)
    assert again.info.run_id == parent.info.run_id and len(children_again) == len(children)
    assert again.info.status == contract.FINISHED

    # the comparison, read back from the server
    out = ["--out", str(tmp_path / "report")]
    compared = subprocess.run(
        [sys.executable, "-m", "pipeline.compare", "--experiment", experiment, *out],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert compared.returncode == 0, compared.stderr[-3000:]
    assert (tmp_path / "report" / "summary.csv").read_text().count("downsample=") == 2

    # artifacts went through the server (proxied), not to a local folder
    child = children[0].info.run_id
    figure = mlflow.artifacts.download_artifacts(
        run_id=child, artifact_path="figures/learning_curves.png", dst_path=str(tmp_path / "download")
    )
    assert Path(figure).read_bytes().startswith(b"\x89PNG")
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlartifacts").exists()

    # the logged model loads back through the server and predicts raw pixels
    (model_info,) = mlflow.search_logged_models(
        experiment_ids=[parent.info.experiment_id],
        filter_string=f"source_run_id = '{child}'",
        output_format="list",
    )
    model = mlflow.pyfunc.load_model(model_info.model_uri)
    probabilities = np.asarray(model.predict(np.random.rand(3, 28, 28, 1).astype("float32") * 255))
    assert probabilities.shape == (3, 10)


def test_server_without_its_database_says_so_in_one_line(tmp_path):
    port = str(free_port())
    command = [sys.executable, "-m", "pipeline.server", "--db-port", port, "--password", "secret"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "nothing answers" in done.stderr
    assert "secret" not in done.stderr
