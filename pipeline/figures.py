"""Figures of one run: learning curves, confusion matrix, first-layer filters and feature maps.

Each function takes plain arrays and returns a matplotlib ``Figure``; nothing here knows
about MLflow or Keras.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

MAX_FILTERS = 64  # VGG16's and ResNet50's first conv layers have 64


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend: every convlab figure is a file."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def learning_curves(history: Mapping[str, Sequence[float]]):
    """Loss and accuracy per epoch, training against validation."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, style in ((metric, "-o"), (f"val_{metric}", "--s")):
            if key in history:
                # unclipped: a marker at accuracy 1.0 sits on the axis' edge, whole
                ax.plot(epochs, history[key], style, label=key, markersize=3, clip_on=metric == "loss")
        ax.set(xlabel="epoch", ylabel=metric, title=metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        if metric == "accuracy":  # no margin past 0 or 1: an accuracy of 1.02 means nothing
            low, high = ax.get_ylim()
            ax.set_ylim(max(low, 0.0), min(high, 1.0))
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]):
    """Counts of true class (rows) against predicted class (columns) on the validation set."""
    plt = pyplot()
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
    """The course's "convolutions are filters", made visible: each filter above what it lights up.

    A filter is drawn as large as its feature map (weights as blocks), so a 3x3 kernel reads as
    well as a 26x26 map. At most ``MAX_FILTERS`` are shown.

    Args:
        kernels: first conv layer's weights, ``(kh, kw, in_channels, filters)``.
        image: the validation image fed through it, ``(H, W, C)``.
        feature_maps: that layer's output for the image, ``(h, w, filters)``.
    """
    plt = pyplot()
    count = min(kernels.shape[-1], MAX_FILTERS)
    cols = min(count, 10 if count <= 40 else 16)
    rows = math.ceil(count / cols)
    cell = 0.9  # inches per filter or feature map
    fig = plt.figure(figsize=(2.4 + cols * cell, 0.6 + rows * 2 * cell), layout="constrained")
    grid = fig.add_gridspec(2 * rows, cols + 1, width_ratios=[2.4 / cell, *[1] * cols])
    ax = fig.add_subplot(grid[:, 0])
    ax.imshow(_displayable(image), cmap="gray")
    ax.set_title("input", fontsize=9)
    ax.axis("off")
    for index in range(count):
        row, col = divmod(index, cols)
        top = fig.add_subplot(grid[2 * row, col + 1])
        _show_kernel(top, kernels[..., index])
        top.set_title(f"filter {index + 1}", fontsize=7, pad=2)
        bottom = fig.add_subplot(grid[2 * row + 1, col + 1])
        bottom.imshow(feature_maps[..., index], cmap="viridis", interpolation="nearest")
        for axis in (top, bottom):
            axis.set(xticks=[], yticks=[])
    shown = "" if count == kernels.shape[-1] else f" (the first {count} of {kernels.shape[-1]})"
    gap = "\n" if cols < 8 else " "  # a narrow figure gets a two-line title
    title = f"first conv layer{shown}: each filter (red +, blue -) slides over the input;{gap}below it"
    fig.suptitle(f"{title}, where it lights up", fontsize=10)
    return fig


def _show_kernel(ax, kernel: np.ndarray) -> None:
    """One ``(kh, kw, in_channels)`` filter: in colour for RGB input, else signed weights in red/blue."""
    if kernel.shape[-1] == 3:
        ax.imshow(_displayable(kernel), interpolation="nearest")
        return
    weights = kernel.mean(axis=-1)
    limit = max(float(np.abs(weights).max()), 1e-9)
    ax.imshow(weights, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")


def _displayable(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype="float32")
    image = (image - image.min()) / max(float(image.max() - image.min()), 1e-9)
    return image[..., 0] if image.shape[-1] == 1 else image
