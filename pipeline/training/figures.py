"""Figures of one run: learning curves, confusion matrix, first-layer filters and feature maps.

Each function takes plain arrays and returns a matplotlib ``Figure``; nothing here knows
about MLflow or Keras.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from pipeline.tracking import plots

MAX_FILTERS = 64  # VGG16's and ResNet50's first conv layers have 64


def learning_curves(history: Mapping[str, Sequence[float]]):
    """Loss and accuracy per epoch, training against validation."""
    plt = plots.pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))  # fixed margins: a layout engine costs a draw
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.14, top=0.91, wspace=0.22)
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
    plt = plots.pyplot()
    n = len(class_names)
    counts = np.zeros((n, n), dtype=int)
    np.add.at(counts, (np.asarray(y_true), np.asarray(y_pred)), 1)
    names = [name if len(name) <= 20 else f"{name[:19]}…" for name in map(str, class_names)]
    size = max(4.0, 0.45 * n + 2)
    margin = 0.5 + 0.07 * max(map(len, names))  # inches for the tick labels (8 pt, about 0.07" a char)
    fig, ax = plt.subplots(figsize=(size + margin, size + margin))  # fixed margins: no layout engine
    fig.subplots_adjust(left=(margin + 0.3) / (size + margin), right=0.97, top=0.93,
                        bottom=(margin + 0.3) / (size + margin))  # fmt: skip
    ax.imshow(counts, cmap="Blues")
    for (row, col), value in np.ndenumerate(counts):
        if value:
            color = "white" if value > counts.max() / 2 else "black"
            ax.text(col, row, str(value), ha="center", va="center", color=color, fontsize=8)
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true")
    ax.set_xticklabels(names, rotation=90 if n > 10 or max(map(len, names)) > 3 else 0, fontsize=8)
    ax.set_yticklabels(names, fontsize=8)
    ax.set_title(f"validation accuracy {np.mean(np.asarray(y_true) == np.asarray(y_pred)):.3f}")
    return fig


def filters_and_feature_maps(kernels: np.ndarray, image: np.ndarray, feature_maps: np.ndarray):
    """The course's "convolutions are filters", made visible: each filter above what it lights up.

    A filter is drawn as large as its feature map (weights as blocks), so a 3x3 kernel reads as
    well as a 26x26 map. At most ``MAX_FILTERS`` are shown. Filters and maps are one mosaic
    image (one axes, not two per filter: drawing stays a fraction of a second for 64 filters).

    Args:
        kernels: first conv layer's weights, ``(kh, kw, in_channels, filters)``.
        image: the validation image fed through it, ``(H, W, C)``.
        feature_maps: that layer's output for the image, ``(h, w, filters)``.
    """
    plt = plots.pyplot()
    count = min(kernels.shape[-1], MAX_FILTERS)
    cols = min(count, 10 if count <= 40 else 16)
    mosaic, cells = filter_mosaic(kernels[..., :count], feature_maps[..., :count], cols)
    cell = 0.9  # inches per filter or feature map
    width = 2.4 + cols * cell
    height = max(2.6, 0.6 + cols * cell * mosaic.shape[0] / mosaic.shape[1])  # square cells
    fig = plt.figure(figsize=(width, height))
    top = 1 - 0.55 / height  # room for the title
    side = fig.add_axes((0.01, 0.02, 2.2 / width, top - 0.04))
    side.imshow(_displayable(image), cmap="gray")
    side.set_title("input", fontsize=9)
    side.axis("off")
    mosaic_axes = fig.add_axes((2.4 / width, 0.01, 1 - 2.45 / width, top - 0.02))
    mosaic_axes.imshow(mosaic, interpolation="nearest", aspect="auto")
    mosaic_axes.axis("off")
    for index, (y, x, size) in enumerate(cells):
        mosaic_axes.text(x + size / 2, y - 0.5, f"filter {index + 1}", fontsize=7, ha="center", va="bottom")
    shown = "" if count == kernels.shape[-1] else f" (the first {count} of {kernels.shape[-1]})"
    gap_text = "\n" if cols < 8 else " "  # a narrow figure gets a two-line title
    title = f"first conv layer{shown}: each filter (red +, blue -) slides over the input;{gap_text}below it"
    fig.suptitle(f"{title}, where it lights up", fontsize=10, y=1 - 0.05 / height)
    return fig


def filter_mosaic(kernels: np.ndarray, feature_maps: np.ndarray, cols: int):
    """One RGB image: rows of cells, each filter (scaled up, nearest) above its feature map.

    Returns ``(mosaic, cells)``: ``cells[i] = (top, left, size)`` of filter ``i`` in pixels, its
    map right below it (after a ``gap``), and room above each filter for a label. Filters are in
    red/blue (their own colours for RGB input), feature maps in viridis, each in its own range.
    """
    from matplotlib import colormaps

    count = kernels.shape[-1]
    size = max(feature_maps.shape[0], feature_maps.shape[1], kernels.shape[0])
    gap, label = max(1, size // 10), max(2, size * 4 // 10)
    pair = label + 2 * size + gap  # a label, a filter, a gap, its map
    rows = math.ceil(count / cols)
    mosaic = np.ones((rows * pair, cols * (size + gap) - gap, 3), dtype="float32")
    cells = []
    for index in range(count):
        row, col = divmod(index, cols)
        y, x = row * pair + label, col * (size + gap)
        mosaic[y : y + size, x : x + size] = _scaled(_kernel_rgb(kernels[..., index], colormaps), size)
        values = _displayable(feature_maps[..., index : index + 1])
        below = y + size + gap
        mosaic[below : below + size, x : x + size] = _scaled(colormaps["viridis"](values)[..., :3], size)
        cells.append((y, x, size))
    return mosaic, cells


def _kernel_rgb(kernel: np.ndarray, colormaps) -> np.ndarray:
    """One ``(kh, kw, in_channels)`` filter: in colour for RGB input, else signed weights in red/blue."""
    if kernel.shape[-1] == 3:
        return _displayable(kernel)
    weights = kernel.mean(axis=-1)
    limit = max(float(np.abs(weights).max()), 1e-9)
    return colormaps["RdBu_r"]((weights / limit + 1) / 2)[..., :3]


def _scaled(rgb: np.ndarray, size: int) -> np.ndarray:
    """``rgb`` resized to ``size x size`` by nearest neighbour: a 3x3 kernel becomes 3x3 blocks."""
    rows = np.arange(size) * rgb.shape[0] // size
    cols = np.arange(size) * rgb.shape[1] // size
    return rgb[rows][:, cols]


def _displayable(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype="float32")
    image = (image - image.min()) / max(float(image.max() - image.min()), 1e-9)
    return image[..., 0] if image.shape[-1] == 1 else image
