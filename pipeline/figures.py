"""Figures of one run: learning curves, confusion matrix, first-layer filters and feature maps.

Each function takes plain arrays and returns a matplotlib ``Figure``; nothing here knows
about MLflow or Keras.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def learning_curves(history: Mapping[str, Sequence[float]]):
    """Loss and accuracy per epoch, training against validation."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, style in ((metric, "-o"), (f"val_{metric}", "--s")):
            if key in history:
                ax.plot(epochs, history[key], style, label=key, markersize=3)
        ax.set(xlabel="epoch", ylabel=metric, title=metric)
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]):
    """Counts of true class (rows) against predicted class (columns) on the validation set."""
    plt = _plt()
    n = len(class_names)
    counts = np.zeros((n, n), dtype=int)
    np.add.at(counts, (np.asarray(y_true), np.asarray(y_pred)), 1)
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size), layout="constrained")
    ax.imshow(counts, cmap="Blues")
    for (row, col), value in np.ndenumerate(counts):
        if value:
            color = "white" if value > counts.max() / 2 else "black"
            ax.text(col, row, str(value), ha="center", va="center", color=color, fontsize=8)
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true")
    ax.set_xticklabels(class_names, rotation=90 if n > 10 else 0)
    ax.set_yticklabels(class_names)
    ax.set_title(f"validation accuracy {np.mean(np.asarray(y_true) == np.asarray(y_pred)):.3f}")
    return fig


def filters_and_feature_maps(kernels: np.ndarray, image: np.ndarray, feature_maps: np.ndarray):
    """The course's "convolutions are filters", made visible.

    Args:
        kernels: first conv layer's weights, ``(kh, kw, in_channels, filters)``.
        image: the validation image fed through it, ``(H, W, C)``.
        feature_maps: that layer's output for the image, ``(h, w, filters)``.
    """
    plt = _plt()
    count = kernels.shape[-1]
    cols = min(count, 10)
    fig, axes = plt.subplots(
        1, 3, figsize=(12, 2.6), width_ratios=[1.4, cols * 0.6, cols], layout="constrained"
    )
    panels = (
        (_displayable(image), "gray", "input"),
        (_mosaic(kernels.mean(axis=2), cols), "RdBu_r", f"{count} filters (mean over input channels)"),
        (_mosaic(feature_maps, cols), "viridis", "their feature maps on the input"),
    )
    for ax, (picture, cmap, title) in zip(axes, panels):
        ax.imshow(picture, cmap=cmap)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle("first conv layer: each filter slides over the image and lights up where it matches")
    return fig


def _mosaic(stack: np.ndarray, cols: int) -> np.ndarray:
    """Tiles ``(h, w, n)`` maps into one image, each map scaled to 0..1, NaN gutters between."""
    h, w, n = stack.shape
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan, dtype="float32")
    for index in range(n):
        row, col = divmod(index, cols)
        tile = stack[..., index].astype("float32")
        span = float(tile.max() - tile.min())
        out[row * (h + 1) : row * (h + 1) + h, col * (w + 1) : col * (w + 1) + w] = (
            (tile - tile.min()) / span if span > 0 else 0.0
        )
    return out


def _displayable(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype="float32")
    image = (image - image.min()) / max(float(image.max() - image.min()), 1e-9)
    return image[..., 0] if image.shape[-1] == 1 else image
