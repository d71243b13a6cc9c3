"""ImageNet predictions on a folder of images: the course's first TensorFlow lesson.

    python -m pipeline task=predict backbone=resnet50 dataset=image_folder dataset.path=DIR

Every image under ``dataset.path`` (sub-folders included, so a flat folder and a
``train/<class>/`` tree both work) goes through the backbone with its ImageNet top. The top
``predict.top_k`` labels of each image are printed and logged to MLflow as a table
(``predictions/top_k.json``), beside a grid of the images and their labels
(``figures/predictions.png``).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.config.schemas import ImageFolderConfig, PretrainedConfig, RunConfig
from pipeline.data import sources as data_module
from pipeline.model import backbones
from pipeline.tracking import contract, record
from pipeline.training import wiring

log = logging.getLogger(__name__)

GRID_IMAGES = 16  # images shown in figures/predictions.png


def predict_and_log(run: RunConfig, strategy) -> dict[str, float]:
    """Predicts ImageNet labels for ``run.dataset.path``'s images under ``strategy`` and logs them.

    Returns:
        The run's metrics: images read, files skipped, mean top-1 probability.
    """

    backbone, dataset = run.backbone, run.dataset
    if not isinstance(backbone, PretrainedConfig) or not isinstance(dataset, ImageFolderConfig):
        # config.validate refuses these combinations first
        raise TypeError("task=predict takes a pretrained backbone and dataset=image_folder")
    if backbone.weights is None:
        log.warning("backbone.weights=null: random weights, so the labels below mean nothing")
    classes = backbones.imagenet_classes()  # first: a missing class index fails before any work
    root = Path(dataset.path)
    paths, skipped = data_module.find_images(root)
    paths = paths[: dataset.max_samples]
    channels = 1 if dataset.color_mode == "grayscale" else 3
    size = run.model_input_size
    images = data_module.decode_files(paths, size, channels)
    with strategy.scope():
        model = backbones.imagenet_classifier(
            (*size, channels), backbone.name, backbone.weights, wiring.alpha(run)
        )
    probabilities = model.predict(images.batch(32), verbose=0)

    names = [os.path.relpath(path, root) for path in paths]
    table = top_k_table(probabilities, classes, run.predict.top_k, names)
    log.info("top-%d ImageNet labels:\n%s", run.predict.top_k, table.to_string(index=False))
    record.log_table(table, "predictions/top_k.json")
    shown = np.stack(list(images.take(GRID_IMAGES).as_numpy_iterator()))
    top1 = table[table["rank"] == 1].head(GRID_IMAGES)
    titles = [f"{row.image}\n{row.label} {row.probability:.0%}" for row in top1.itertuples()]
    record.log_figure(prediction_grid(shown, titles), "figures/predictions.png")
    metrics = {
        contract.IMAGES: len(paths),
        contract.SKIPPED_FILES: skipped,
        contract.MEAN_TOP1_PROBABILITY: float(probabilities.max(axis=1).mean()),
    }
    record.log_metrics(metrics)
    return metrics


def top_k_table(probabilities: np.ndarray, classes: Sequence[tuple[str, str]], k: int, images: Sequence[str]):
    """One row per image and rank: ``image, rank, label, class_id, probability``.

    ``keras.applications.imagenet_utils.decode_predictions`` does the same lookup, but it pins the
    class index file's md5 and reads Keras' home once at import, so a class index the user (or an
    offline test) put into ``$KERAS_HOME/models`` would be downloaded again: this one stays.

    Args:
        probabilities: ``(images, 1000)`` softmax outputs.
        classes: ``(wordnet id, name)`` per output, as ``backbones.imagenet_classes()`` gives.
        k: labels kept per image, most probable first.
        images: a name per row of ``probabilities``.
    """
    import pandas as pd

    rows = []
    for image, row in zip(images, probabilities, strict=True):
        for rank, index in enumerate(np.argsort(row)[::-1][:k], start=1):
            class_id, label = classes[index]
            rows.append((image, rank, label, class_id, float(row[index])))
    return pd.DataFrame(rows, columns=["image", "rank", "label", "class_id", "probability"])


def prediction_grid(images: np.ndarray, titles: Sequence[str]):
    """The images (0-255 pixels) in a grid, each titled with its file and top label."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    cols = min(len(images), 4)
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles, strict=False):  # more axes than images
        pixels = np.clip(image, 0, 255).astype("uint8")
        ax.imshow(pixels[..., 0] if pixels.shape[-1] == 1 else pixels, cmap="gray")
        ax.set_title(title, fontsize=8)
    return fig
