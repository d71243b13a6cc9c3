"""Batch scoring with a logged or registered model: ``task=predict predict.model=URI``.

    python -m pipeline task=predict predict.model=models:/digits@champion \
        dataset=digit_recognizer dataset.path=test.csv
    python -m pipeline task=predict predict.model=models:/digits@champion \
        dataset=image_folder dataset.path=DIR

A Kaggle ``test.csv`` (``pixel0..pixelN``, 0-255; a ``label`` column is ignored) gives Kaggle's
``submission.csv`` (``ImageId,Label``); an image folder (sub-folders included) gives
``predictions.csv`` (``file,class,probability``: the top class and its probability). The file is
written to ``predict.output`` (default: that name in the working directory) and logged to the
run under ``predictions/``, with the data set as the run's input and the model URI as a tag.
The model is loaded as MLflow's pyfunc, exactly what ``mlflow models serve`` would serve.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

import numpy as np

from pipeline.config.schemas import CsvDatasetConfig, RunConfig
from pipeline.data import sources
from pipeline.tracking import contract, record, registry

log = logging.getLogger(__name__)

BATCH = 256  # images per pyfunc call: bounded memory for the model's activations


def score_and_log(run: RunConfig) -> dict[str, float]:
    """Scores ``run.dataset.path`` with ``run.predict.model``; returns the run's metrics."""
    uri, model_uri = run.tracking.uri, run.predict.model
    spec = registry.model_spec(uri, model_uri)  # shape and class names, from the MLmodel file
    # the model, by the URI asked for and by the logged model it resolved to (MLflow's run inputs
    # take models on Databricks only)
    record.set_tags({contract.PREDICT_MODEL: model_uri, contract.PREDICT_MODEL_ID: spec.model_id or ""})
    if isinstance(run.dataset, CsvDatasetConfig):
        images, names = csv_images(Path(run.dataset.path), spec.shape), None
    else:
        images, names = folder_images(Path(run.dataset.path), spec.shape)
    model = registry.load_pyfunc(uri, model_uri)
    probabilities = predict(model, images)
    top = probabilities.argmax(axis=1)
    named = len(spec.classes) == probabilities.shape[1]  # else: outputs by their index
    classes = np.asarray(spec.classes if named else [str(i) for i in range(probabilities.shape[1])])
    frame = _table(names, classes[top], probabilities.max(axis=1))
    output = Path(run.predict.output or ("submission.csv" if names is None else "predictions.csv"))
    output.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(output, index=False)
    log.info("wrote %s: %d images scored with %s", output, len(frame), model_uri)
    source = str(Path(run.dataset.path).resolve())
    record.log_dataset(Path(source).name, source, _digest(images), images, None, contract.PREDICTION)
    record.log_text(frame.to_csv(index=False), f"predictions/{output.name}")
    metrics = {
        contract.IMAGES: len(frame),
        contract.MEAN_PROBABILITY: float(probabilities.max(axis=1).mean()),
    }
    record.log_metrics(metrics)
    return metrics


def csv_images(path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    """A Kaggle CSV's pixel columns as ``(rows, *shape)`` float32 images (0-255)."""
    import pandas as pd

    frame = pd.read_csv(path)
    pixels = frame.drop(columns=["label"], errors="ignore").to_numpy(dtype="float32")
    return pixels.reshape((len(pixels), *shape))  # the columns were checked against the shape


def folder_images(root: Path, shape: tuple[int, int, int]) -> tuple[np.ndarray, list[str]]:
    """Every image under ``root`` at the model's size (resized as training resized them), and
    each one's path relative to ``root``."""
    paths, skipped = sources.find_images(root)
    if skipped:
        log.warning("%d files under %s are not images: skipped", skipped, root)
    images = sources.decode_files(paths, shape[:2], shape[2]).batch(BATCH)
    array = np.concatenate([batch.numpy() for batch in images]) if paths else np.zeros((0, *shape))
    return array.astype("float32"), [os.path.relpath(path, root) for path in paths]


def predict(model, images: np.ndarray) -> np.ndarray:
    """The pyfunc model's class probabilities, ``BATCH`` images at a time."""
    with contextlib.redirect_stdout(io.StringIO()):  # Keras' progress bar, one per call
        parts = [np.asarray(model.predict(images[i : i + BATCH])) for i in range(0, len(images), BATCH)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype="float32")


def _table(names: list[str] | None, labels: np.ndarray, probabilities: np.ndarray):
    import pandas as pd

    if names is None:  # Kaggle's submission format
        return pd.DataFrame({"ImageId": np.arange(1, len(labels) + 1), "Label": labels})
    return pd.DataFrame({"file": names, "class": labels, "probability": probabilities.round(6)})


def _digest(images: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:8]
