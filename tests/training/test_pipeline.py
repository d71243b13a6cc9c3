"""End to end: real Hydra composition, real Keras training, a real (temporary) MLflow store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, cli, write_digit_csv, write_image_folder

import pipeline
from pipeline.config.errors import ConfigError, DataError
from pipeline.tracking import contract, ui

pytestmark = pytest.mark.slow
EPOCH_METRICS = [
    contract.LOSS,
    contract.ACCURACY,
    contract.VAL_LOSS,
    contract.VAL_ACCURACY,
    contract.EPOCH_SECONDS,
    contract.IMAGES_PER_SECOND,
]


def test_default_run_logs_config_metrics_figures_data_and_a_loadable_model(store):
    import mlflow

    result = pipeline.run([*TINY, *store.overrides])
    client = store.client()
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    # the whole composed config, as dotted params; every group's choice and the variant as tags
    params = run.data.params
    assert params["optimizer.learning_rate"] == "0.001" and params["backbone.kernel_size"] == "[3, 3]"
    assert params["trainer.epochs"] == "2" and params["dataset.name"] == "digits"
    tags = run.data.tags
    assert (
        tags[contract.group_tag("downsample")] == "none" and tags[contract.group_tag("optimizer")] == "adam"
    )
    assert tags[contract.VARIANT].startswith("dataset.max_samples=300") and tags[contract.SEED] == "0"
    assert "trainer.epochs=2" in tags[contract.OVERRIDES]
    assert run.info.run_name == f"{tags[contract.VARIANT]} seed=0"  # unique across a sweep's seeds
    # per-epoch metrics, step = epoch number
    for key in EPOCH_METRICS:
        assert [m.step for m in client.get_metric_history(result.run_id, key)] == [1, 2], key
    assert run.data.metrics[contract.VAL_ACCURACY] == pytest.approx(result.metrics[contract.VAL_ACCURACY])
    assert run.data.metrics[contract.PARAMETER_COUNT] == 1479798  # the course's model, as the README says
    # the per-class evaluation, once: 10 digits, so top-3 and top-5 accuracy too
    logged = run.data.metrics
    assert {"val_recall/0", "val_f1/9", "val_macro_f1", "val_top3_accuracy", "class_count/7"} <= set(logged)
    # speed and memory, once: the weights' bytes are the parameters' float32s
    speed = {"train_seconds_per_epoch", "inference_ms_per_image/batch_1", "inference_ms_per_image/batch_128"}
    assert all(logged[key] > 0 for key in speed | {"peak_memory_mb"})
    assert logged["model_size_mb"] == pytest.approx(1479798 * 4 / 1e6)
    # artifacts: Hydra's configs and the figures
    files = {a.path for folder in ("figures", ".hydra") for a in client.list_artifacts(result.run_id, folder)}
    assert {
        "figures/learning_curves.png",
        "figures/confusion_matrix.png",
        "figures/filters_and_feature_maps.png",
        "figures/val_roc_pr.png",
        "figures/val_mistakes.png",
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
    } <= files
    # the training and the validation set as MLflow inputs, each with its digest
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert sorted(inputs) == [contract.TRAINING, contract.VALIDATION]
    assert {d.name for d in inputs.values()} == {"digits"} and len({d.digest for d in inputs.values()}) == 2
    # the logged model carries the final metrics, so MLflow's Models tab can rank it
    model_metrics = {
        m.key: m.value for m in client.get_logged_model(run.outputs.model_outputs[0].model_id).metrics
    }
    assert model_metrics[contract.VAL_ACCURACY] == pytest.approx(result.metrics[contract.VAL_ACCURACY])
    assert model_metrics[contract.LOSS] == pytest.approx(result.metrics[contract.LOSS])
    # the model loads back and predicts raw-pixel images
    model = mlflow.pyfunc.load_model(result.model_uri)
    probabilities = np.asarray(model.predict(np.random.rand(4, 28, 28, 1).astype("float32") * 255))
    assert probabilities.shape == (4, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)


def test_same_seed_same_metrics_other_seed_other_metrics(store):
    args = [*TINY, *store.overrides, "tracking.log_model=false", "augmentation=shift_rotate"]
    first, again = pipeline.run([*args, "seed=3"]), pipeline.run([*args, "seed=3"])
    other = pipeline.run([*args, "seed=4"])
    for key in (contract.LOSS, contract.VAL_LOSS, contract.VAL_ACCURACY):
        assert first.history[key] == again.history[key]
    assert first.history[contract.LOSS] != other.history[contract.LOSS]


def test_cli_run_writes_hydra_output_and_a_finished_run(store, tmp_path):
    result = cli(
        "trainer.epochs=1", "dataset.max_samples=200", "optimizer=sgd", *store.overrides, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    (run,) = store.runs()
    assert run.info.status == "FINISHED" and run.data.tags[contract.group_tag("optimizer")] == "sgd"
    assert list(tmp_path.glob("outputs/*/*/.hydra/config.yaml"))
    link = result.stdout.splitlines()[-1]  # the run's page, in MLflow's training view
    assert link.startswith("MLflow: ") and link.endswith(ui.run_path(run.info.experiment_id, run.info.run_id))


def test_kaggle_csv_trains_and_predicts_the_test_file(store, tmp_path):
    train = write_digit_csv(tmp_path / "train.csv", rows=80)
    test = write_digit_csv(tmp_path / "test.csv", rows=9, labelled=False)
    result = pipeline.run(
        [
            "dataset=digit_recognizer",
            f"dataset.path={train}",
            f"dataset.test_path={test}",
            "trainer.epochs=1",
            "tracking.log_model=false",
            *store.overrides,
        ]
    )
    text = store.client().download_artifacts(result.run_id, "predictions/submission.csv", str(tmp_path))
    lines = Path(text).read_text().splitlines()
    assert lines[0] == "ImageId,Label" and len(lines) == 10


def test_image_folder_trains_with_augmentation(store, tmp_path, caplog):
    root = write_image_folder(tmp_path / "images", per_class=8)
    result = pipeline.run(
        [
            "dataset=image_folder",
            f"dataset.path={root}",
            "dataset.image_size=[16,16]",
            "augmentation=flip_shift",
            "trainer.epochs=1",
            *store.overrides,
        ]
    )
    assert result.status == "FINISHED" and "mirror-invariant" not in caplog.text
    assert store.client().get_run(result.run_id).data.tags[contract.group_tag("augmentation")] == "flip_shift"


def test_missing_data_file_is_refused_before_a_run_is_opened(store, tmp_path):
    with pytest.raises(DataError, match="no such file"):
        pipeline.run(["dataset=digit_recognizer", f"dataset.path={tmp_path}/absent.csv", *store.overrides])
    assert store.runs() == []  # the data checks run first (test_checks.py has every case)


def test_cli_data_error_is_one_line(store, tmp_path):
    """A bad pixel is found only by reading the file, in the run: one line, the run FAILED."""
    bad = tmp_path / "train.csv"
    rows = [f"{i % 2},0,64,128,255" for i in range(20)]
    rows[5] = "1,0,64,dark,255"
    bad.write_text("\n".join(["label,pixel0,pixel1,pixel2,pixel3", *rows]) + "\n")
    result = cli("dataset=digit_recognizer", f"dataset.path={bad}", *store.overrides, cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"convlab: {bad}")
    assert [r.info.status for r in store.runs()] == ["FAILED"]


def test_ctrl_c_ends_the_run_killed(store, tmp_path):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "trainer.epochs=500",
            "tracking.log_model=false",
            *store.overrides,
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until training is under way
        runs = store.runs()
        if runs and contract.LOSS in runs[0].data.metrics:
            break
        time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("no epoch was logged within 120 s: the interrupt would hit start-up, not training")
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=120)  # its ending: metrics, figures, the run closed
    except subprocess.TimeoutExpired:  # where it hangs: faulthandler prints every thread on SIGABRT
        process.send_signal(signal.SIGABRT)
        _, stderr = process.communicate(timeout=60)
        pytest.fail(f"not ended 120 s after Ctrl-C; its threads:\n{stderr[-8000:]}")
    assert process.returncode != 0 and "interrupted" in stderr
    (run,) = store.runs()
    assert run.info.status == "KILLED"


def test_gpu_on_a_machine_without_one_says_so(store):
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="accelerator=gpu: TensorFlow sees no GPU"):
        pipeline.run(["accelerator=gpu", *TINY, *store.overrides])
    assert [r.info.status for r in store.runs()] == ["FAILED"]


def test_mixed_precision_and_xla_switches(store, tmp_path):
    # A fresh process: TensorFlow cannot switch op determinism off once an earlier run turned it on,
    # and Keras then compiles without XLA.
    import mlflow

    result = cli(
        *TINY, "trainer.epochs=1", "accelerator=cpu", "accelerator.mixed_precision=true",
        "accelerator.jit_compile=true", *store.overrides, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Proceeding with `jit_compile=False`" not in result.stderr  # XLA really compiled the steps
    (run,) = store.runs()
    assert run.data.tags[f"{contract.ACCELERATOR_PREFIX}policy"] == "mixed_bfloat16"
    assert np.isfinite(run.data.metrics[contract.LOSS])
    # the model itself, as saved: its layers computed in bfloat16 and its steps were XLA-compiled
    model_id = run.outputs.model_outputs[0].model_id
    folder = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{model_id}", dst_path=str(tmp_path / "model"), tracking_uri=store.uri
    )
    (saved,) = Path(folder).rglob("*.keras")
    with zipfile.ZipFile(saved) as archive:
        config = json.loads(archive.read("config.json"))
    assert config["compile_config"]["jit_compile"] is True
    assert "mixed_bfloat16" in json.dumps(config["config"])


def test_multi_device_strategy_over_two_logical_cpus(store, tmp_path):
    result = cli(
        "accelerator=multi_gpu",
        "accelerator.devices=[/cpu:0,/cpu:1]",
        "accelerator.logical_cpus=2",
        "trainer.epochs=1",
        "dataset.max_samples=200",
        "tracking.log_model=false",
        *store.overrides,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    (run,) = store.runs()
    assert run.info.status == "FINISHED" and run.data.tags[f"{contract.ACCELERATOR_PREFIX}replicas"] == "2"


def write_fashion_mnist_cache(keras_home: Path, train: int = 120, test: int = 20) -> None:
    """Keras' fashion-MNIST cache files (IDX, gzipped), so keras.datasets needs no download."""
    import gzip

    folder = keras_home / "datasets" / "fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", train), ("t10k", test)):
        labels = (np.arange(count) % 10).astype("uint8")
        images = rng.integers(0, 256, size=(count, 28, 28), dtype="uint8")
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0" * 8 + labels.tobytes()))
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\0" * 16 + images.tobytes()))


def test_keras_datasets_load_from_the_keras_cache(store, tmp_path):
    write_fashion_mnist_cache(tmp_path / "keras")
    result = cli(
        "dataset=fashion_mnist", "trainer.epochs=1", "tracking.log_model=false", *store.overrides,
        cwd=tmp_path, env={"KERAS_HOME": str(tmp_path / "keras")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (run,) = store.runs()
    assert run.info.status == "FINISHED" and run.inputs.dataset_inputs[0].dataset.name == "fashion_mnist"


def test_runs_started_together_on_a_new_store_all_finish(tmp_path):
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"  # does not exist yet: both runs create it
    args = ["-m", "pipeline", "trainer.epochs=1", "dataset.max_samples=200", "tracking.log_model=false"]
    processes = [
        subprocess.Popen(
            [sys.executable, *args, f"tracking.uri={uri}"], cwd=tmp_path, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    errors = [process.communicate(timeout=300)[1] for process in processes]
    assert [p.returncode for p in processes] == [0, 0], errors
    import mlflow

    runs = mlflow.MlflowClient(uri).search_runs(
        [mlflow.MlflowClient(uri).get_experiment_by_name("convlab").experiment_id]
    )
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
