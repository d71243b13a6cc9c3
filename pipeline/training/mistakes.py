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
    """Each mistake: the image titled ``true -> predicted (probability)``, its Grad-CAM below."""
    plt = plots.pyplot()
    cols, pairs = min(len(images), 4), math.ceil(len(images) / 4)
    rows = pairs * (2 if cams is not None else 1)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.5 * rows + 0.5), squeeze=False)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 1.0 / (2.5 * rows + 0.5), hspace=0.4)
    for ax in axes.flat:
        ax.axis("off")
    for index, (image, row) in enumerate(zip(images, table.itertuples(), strict=True)):
        pair, col = divmod(index, cols)
        top = axes[pair * (2 if cams is not None else 1), col]
        pixels = np.clip(image, 0, 255).astype("uint8")
        top.imshow(pixels[..., 0] if pixels.shape[-1] == 1 else pixels, cmap="gray")
        top.set_title(f"true {_short(row.true)}\npredicted {_short(row.predicted)} {row.probability:.0%}",
                      fontsize=8)  # fmt: skip
        if cams is not None:
            below = axes[pair * 2 + 1, col]
            below.imshow(gradcam.overlay(image, cams[index]))
            below.set_title("Grad-CAM (predicted class)", fontsize=7)
    where = "" if cams is not None else " (no conv layer: Grad-CAM skipped)"
    fig.suptitle(f"the {len(images)} most confident mistakes on the validation set{where}", fontsize=10)
    return fig


def _image(data, index: int) -> np.ndarray:
    """Validation image ``index`` as 0-255 pixels at the model's size."""
    if not data.from_files:
        return np.asarray(data.x_val[index], dtype="float32")
    return decode_image(data.x_val[index], data.image_size, data.channels).numpy()


def _short(name: Sequence[str] | str) -> str:
    name = str(name)
    return name if len(name) <= 18 else f"{name[:17]}…"
