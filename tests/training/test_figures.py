"""The run's figures read well: whole epochs, accuracy within [0, 1], filters big enough to see."""

from __future__ import annotations

import numpy as np

from pipeline.training import figures


def test_learning_curves_tick_whole_epochs_and_keep_accuracy_within_0_1():
    history = {
        "loss": [1.0, 0.5, 0.3],
        "val_loss": [0.8, 0.6, 0.5],
        "accuracy": [0.7, 0.9, 1.0],
        "val_accuracy": [0.8, 0.95, 0.99],
    }
    fig = figures.learning_curves(history)
    fig.canvas.draw()
    for ax in fig.axes:
        low, high = ax.get_xlim()
        ticks = [tick for tick in ax.get_xticks() if low <= tick <= high]
        assert ticks == [1, 2, 3]
    accuracy = next(ax for ax in fig.axes if ax.get_title() == "accuracy")
    low, high = accuracy.get_ylim()
    assert low >= 0 and high <= 1


def test_filters_are_drawn_as_large_as_their_feature_maps_and_fill_the_figure():
    rng = np.random.default_rng(0)
    kernels, image, maps = rng.normal(size=(3, 3, 1, 20)), rng.random((28, 28, 1)), rng.random((26, 26, 20))
    mosaic, cells = figures.filter_mosaic(kernels, maps, cols=10)
    assert len(cells) == 20 and {size for *_, size in cells} == {26}  # each filter as large as its map
    top, left, size = cells[4]
    drawn = mosaic[top : top + size, left : left + size]
    blocks = drawn[:: size // 3 + 1, :: size // 3 + 1]  # one pixel from each of the kernel's 3x3 blocks
    assert len({tuple(p) for p in blocks.reshape(-1, 3).round(4)}) == 9  # weights as 3x3 blocks
    assert (drawn[: size // 3, : size // 3] == drawn[0, 0]).all()  # each block one colour
    feature_map = mosaic[top + size + 2 : top + 2 * size + 2, left : left + size]  # below it, after a gap
    assert len({tuple(p) for p in feature_map.reshape(-1, 3).round(4)}) > 100  # the map, not blocks

    fig = figures.filters_and_feature_maps(kernels, image, maps)
    fig.canvas.draw()
    width, height = fig.get_size_inches()
    side, grid = (ax.get_position() for ax in fig.axes)
    assert grid.width * width > 0.7 * (width - 2.4) and grid.height > 0.75  # filters fill the figure
    assert side.height * height > 2  # the input image: large
    labels = [text.get_text() for text in fig.axes[1].texts]
    assert labels == [f"filter {i}" for i in range(1, 21)]
