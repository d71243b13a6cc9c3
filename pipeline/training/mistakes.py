"""The mistakes, shown: the N most confident wrong predictions on the validation set.

Once per run, after the last epoch, from the probabilities the validation callback kept: the N
images the model got wrong with the highest probability, each with its true class, its predicted
class and that probability, above a Grad-CAM overlay of what the network looked at for the class
it wrongly chose (``figures/val_mistakes.png``); beside it a table (``evaluation/val_mistakes.json``)
with each image's file path for an image folder, so a user can open the images. Grad-CAM runs on
these N images only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from pipeline.data.sources import decode_image
from pipeline.tracking import contract, plots, record
from pipeline.training import gradcam

log = logging.getLogger(__name__)

SHOWN = 8  # mistakes shown per run


def most_confident(y_true, probabilities: np.ndarray, count: int = SHOWN) -> np.ndarray:
    """Indices of the ``count`` wrong predictions with the highest predicted probability, highest first."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != np.asarray(y_true))
    order = np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")
    return wrong[order[:count]]


def log_mistakes(model, data, probabilities: np.ndarray, count: int = SHOWN) -> None:
    """Logs the figure (with Grad-CAM) and the table of the ``count`` most confident mistakes."""
    import pandas as pd

    shown = most_confident(data.y_val, probabilities, count)
    if not len(shown):
        log.info("no validation image was misclassified: no mistakes figure")
        return
    predicted = probabilities.argmax(axis=1)[shown]
    names = list(map(str, data.class_names))
    where = [str(data.x_val[i]) for i in shown] if data.from_files else [int(i) for i in shown]
    table = pd.DataFrame({
        "file" if data.from_files else "index": where,
        "true": [names[i] for i in np.asarray(data.y_val)[shown]],
        "predicted": [names[i] for i in predicted],
        "probability": probabilities[shown, predicted].round(4),
    })  # fmt: skip
    record.log_table(table, f"{contract.EVALUATION_DIR}/val_mistakes.json")
    images = np.stack([_image(data, i) for i in shown])
    cams = gradcam.heatmaps(model, images, predicted)
    if cams is None:
        log.info("Grad-CAM skipped: the model has no conv layer")
    record.log_figure(figure(images, cams, table), "figures/val_mistakes.png")


def figure(images: np.ndarray, cams: np.ndarray | None, table):
    """Each mistake: the image titled ``true / predicted (probability)``, its Grad-CAM below.

    One mosaic image on one axes (as the filters figure): a handful of axes would cost a second
    of drawing per run, most of the evaluation's time.
    """
    plt = plots.pyplot()
    size, cols = images.shape[1], min(len(images), 4)
    gap, label = max(1, size // 12), max(4, size // 4)  # label: room for two lines of text
    stack = 2 if cams is not None else 1
    cell_h = label + stack * size + (stack - 1) * gap
    rows = math.ceil(len(images) / cols)
    mosaic = np.ones((rows * cell_h, cols * (size + gap) - gap, 3), dtype="float32")
    for index, image in enumerate(images):
        row, col = divmod(index, cols)
        y, x = row * cell_h + label, col * (size + gap)
        rgb = gradcam.overlay(image, np.zeros(image.shape[:2]), alpha=0.0)
        mosaic[y : y + size, x : x + size] = rgb
        if cams is not None:
            mosaic[y + size + gap : y + 2 * size + gap, x : x + size] = gradcam.overlay(image, cams[index])
    width = 2.0 * cols + 0.2
    fig = plt.figure(figsize=(width, 0.4 + width * mosaic.shape[0] / mosaic.shape[1]))
    ax = fig.add_axes((0.01, 0.01, 0.98, 1 - 0.4 / fig.get_figheight()))
    ax.imshow(mosaic, interpolation="nearest")
    ax.axis("off")
    for index, row in enumerate(table.itertuples()):
        y, x = divmod(index, cols)
        text = f"true {_short(row.true)}\npredicted {_short(row.predicted)} {row.probability:.0%}"
        ax.text(
            x * (size + gap) + size / 2, y * cell_h + label - 1, text, ha="center", va="bottom", fontsize=7
        )
    shown = (
        "; below each, Grad-CAM of the predicted class"
        if cams is not None
        else " (no conv layer: no Grad-CAM)"
    )
    fig.suptitle(f"the {len(images)} most confident mistakes on the validation set{shown}", fontsize=8,
                 y=1 - 0.05 / fig.get_figheight())  # fmt: skip
    return fig


def _image(data, index: int) -> np.ndarray:
    """Validation image ``index`` as 0-255 pixels at the model's size."""
    if not data.from_files:
        return np.asarray(data.x_val[index], dtype="float32")
    return decode_image(data.x_val[index], data.image_size, data.channels).numpy()


def _short(name: Sequence[str] | str) -> str:
    name = str(name)
    return name if len(name) <= 18 else f"{name[:17]}…"
