"""Handing a sweep's winner on: registered, served over HTTP, scored in batch; system metrics.

All of it on one real sweep (``registered_sweep`` in conftest: 2 learning rates x 3 seeds, tiny
data), its SQLite store, and real subprocesses: the CLI, ``python -m pipeline.register`` and
``mlflow models serve``. The team-server variant is in ``test_server.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import cli, free_port, wait_until_serving, write_digit_csv, write_image_folder

from pipeline.tracking import contract

pytestmark = pytest.mark.slow
WINNER = "optimizer.learning_rate=0.003"


def _children(store):
    return [r for r in store.runs() if r.data.tags.get(contract.ROLE) == contract.ROLE_JOB]


def _by_val_accuracy_then_seed(run):
    """The median's order (README): the compared metric (val_accuracy: no early stopping here),
    runs tied on it (60 validation images give few distinct values) by seed."""
    return run.data.metrics[contract.VAL_ACCURACY], int(run.data.tags[contract.SEED])


def _pyfunc(registered):
    import mlflow

    mlflow.set_tracking_uri(registered.uri)
    mlflow.set_registry_uri(registered.uri)
    return mlflow.pyfunc.load_model(registered.model_uri)


def test_a_sweep_registers_its_decided_winners_median_run(registered_sweep):
    client = registered_sweep.store.client()
    version = client.get_model_version_by_alias(registered_sweep.name, contract.CHAMPION)
    winners = [c for c in _children(registered_sweep.store) if c.data.tags[contract.VARIANT] == WINNER]
    ranked = sorted(winners, key=_by_val_accuracy_then_seed)
    assert len(ranked) == 3 and version.run_id == ranked[1].info.run_id  # the median seed's run
    assert version.tags[contract.VARIANT] == WINNER
    assert version.tags[contract.SEEDS] == "0,1,2" and version.tags[contract.DECIDED] == "true"
    assert version.tags[contract.SWEEP_ID] == winners[0].data.tags[contract.SWEEP_ID]
    assert "decided better than the baseline optimizer.learning_rate=1e-06" in version.description
    assert "Holm p = " in version.description and "the median" in version.description
    assert f"registered {registered_sweep.name} version {version.version}" in registered_sweep.stdout
    assert f"mlflow models serve -m {registered_sweep.model_uri}" in registered_sweep.stdout
    # the class names travel with the model
    import mlflow

    mlflow.set_tracking_uri(registered_sweep.uri)
    info = mlflow.models.get_model_info(version.source)  # models:/m-... (the logged model)
    assert info.metadata[contract.CLASSES_METADATA] == [str(digit) for digit in range(10)]


def test_system_metrics_appear_on_every_run(registered_sweep):
    children = _children(registered_sweep.store)
    assert len(children) == 6
    for child in children:
        assert "system/cpu_utilization_percentage" in child.data.metrics
        assert child.data.metrics["system/system_memory_usage_megabytes"] > 0


def test_the_served_model_answers_over_http(registered_sweep, tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", registered_sweep.model_uri]
    command += ["--env-manager", "local"]
    # as with the venv active (the docs' setup): MLflow's server runs uvicorn by name
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [*command, "-h", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "MLFLOW_TRACKING_URI": registered_sweep.uri, "PATH": path},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its uvicorn worker too is stopped with the group
    )
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", server, tmp_path / "serve.log")
        images = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28, 1))  # raw 0-255 pixels
        body = json.dumps({"inputs": images.tolist()}).encode()  # the README's format
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            served = np.asarray(json.loads(response.read())["predictions"])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
    expected = np.asarray(_pyfunc(registered_sweep).predict(images.astype("float32")))
    assert served.shape == (3, 10)
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)


def _grayscale_folder(root: Path, count: int = 5) -> Path:
    from PIL import Image

    rng = np.random.default_rng(1)
    for index in range(count):
        folder = root / ("a" if index % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(32, 32), dtype=np.uint8)  # resized to 28x28, as training does
        Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


def test_batch_scoring_of_a_csv_and_a_folder_writes_their_files(registered_sweep, tmp_path):
    store, model = registered_sweep.store, f"predict.model={registered_sweep.model_uri}"
    csv = write_digit_csv(tmp_path / "test.csv", rows=30, labelled=False, seed=3)
    scored = cli("task=predict", model, "dataset=digit_recognizer", f"dataset.path={csv}", *store.overrides,
                 cwd=tmp_path)  # fmt: skip
    assert scored.returncode == 0, scored.stderr[-3000:]
    submission = pd.read_csv(tmp_path / "submission.csv")
    assert list(submission.columns) == ["ImageId", "Label"] and len(submission) == 30
    pixels = pd.read_csv(csv).to_numpy("float32").reshape(-1, 28, 28, 1)
    expected = np.asarray(_pyfunc(registered_sweep).predict(pixels)).argmax(axis=1)
    assert submission.Label.tolist() == expected.tolist()
    assert submission.ImageId.tolist() == list(range(1, 31))

    folder = _grayscale_folder(tmp_path / "scans")
    out = tmp_path / "out" / "scans.csv"
    scored = cli("task=predict", model, "dataset=image_folder", f"dataset.path={folder}",
                 f"predict.output={out}", *store.overrides, cwd=tmp_path)  # fmt: skip
    assert scored.returncode == 0, scored.stderr[-3000:]
    predictions = pd.read_csv(out)
    assert list(predictions.columns) == ["file", "class", "probability"]
    assert sorted(predictions.file) == ["a/1.png", "a/3.png", "b/0.png", "b/2.png", "b/4.png"]
    assert predictions["class"].between(0, 9).all() and predictions.probability.between(0.1, 1).all()

    # each scoring is a run: the model it used, the data set as its input, the file as its output
    runs = [r for r in store.runs() if contract.PREDICT_MODEL in r.data.tags]
    assert len(runs) == 2 and {r.info.status for r in runs} == {contract.FINISHED}
    for run in runs:
        assert run.data.tags[contract.PREDICT_MODEL] == registered_sweep.model_uri
        contexts = [
            t.value for d in run.inputs.dataset_inputs for t in d.tags if t.key == "mlflow.data.context"
        ]
        assert contexts == [contract.PREDICTION]
        artifacts = {a.path for a in store.client().list_artifacts(run.info.run_id, "predictions")}
        assert artifacts & {"predictions/submission.csv", "predictions/scans.csv"}
    assert {r.data.metrics[contract.IMAGES] for r in runs} == {30.0, 5.0}


def test_register_cli_registers_one_run(registered_sweep, tmp_path):
    child = _children(registered_sweep.store)[0]
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.register", child.info.run_id, "handoff-one-run"],
        env={**os.environ, "MLFLOW_TRACKING_URI": registered_sweep.uri},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    version = registered_sweep.store.client().get_model_version_by_alias("handoff-one-run", "champion")
    assert version.run_id == child.info.run_id
    assert "by hand" in version.description and version.tags[contract.DECIDED] == "false"


def _one_line(result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and lines[-1].startswith("convlab: "), result.stderr[-2000:]
    assert all(text in lines[-1] for text in expected), lines[-1]


def test_each_bad_input_gives_one_line(registered_sweep, tmp_path):
    store = registered_sweep.store
    before = len(store.runs())
    csv = write_digit_csv(tmp_path / "test.csv", rows=5, labelled=False)
    scoring = ["task=predict", "dataset=digit_recognizer", f"dataset.path={csv}", *store.overrides]
    unknown = cli(*scoring, "predict.model=models:/no-such-model@champion", cwd=tmp_path)
    _one_line(unknown, "no registered model 'no-such-model'", registered_sweep.name)
    no_alias = cli(*scoring, f"predict.model=models:/{registered_sweep.name}@best", cwd=tmp_path)
    _one_line(no_alias, "has no alias 'best'", "aliases: champion")
    photos = write_image_folder(tmp_path / "photos")  # colour images; the model takes grayscale
    wrong = cli("task=predict", f"predict.model={registered_sweep.model_uri}", "dataset=image_folder",
                f"dataset.path={photos}", *store.overrides, cwd=tmp_path)  # fmt: skip
    _one_line(wrong, "colour image", "28x28x1 (grayscale)")
    assert len(store.runs()) == before  # refused before any run opened

    # a run with no model (and tracking.system_metrics=false: no system metrics either)
    plain = cli("tracking.log_model=false", "tracking.system_metrics=false", "dataset.max_samples=200",
                "trainer.epochs=1", *store.overrides, cwd=tmp_path)  # fmt: skip
    assert plain.returncode == 0, plain.stderr[-2000:]
    (run,) = [r for r in store.runs() if "log_model=false" in r.data.tags.get(contract.OVERRIDES, "")]
    assert not any(key.startswith("system/") for key in run.data.metrics)
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.register", run.info.run_id, "handoff-nothing"],
        env={**os.environ, "MLFLOW_TRACKING_URI": registered_sweep.uri},
        capture_output=True,
        text=True,
        timeout=120,
    )
    _one_line(result, run.info.run_id, "has no logged model")
    assert result.returncode == 2
