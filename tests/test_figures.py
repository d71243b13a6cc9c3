"""The run's figures read well: whole epochs, accuracy within [0, 1], filters big enough to see."""

from __future__ import annotations

import numpy as np

from pipeline import figures


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
    fig = figures.filters_and_feature_maps(kernels, image, maps)
    fig.canvas.draw()
    width, height = fig.get_size_inches()
    boxes = [ax.get_position() for ax in fig.axes[1:]]  # after the input: filter, map, filter, map...
    filters, feature_maps = boxes[0::2], boxes[1::2]
    assert len(filters) == len(feature_maps) == 20
    filter_inches = [box.width * width for box in filters]
    map_inches = [box.width * width for box in feature_maps]
    assert min(filter_inches) > 0.5 and np.allclose(filter_inches, map_inches, rtol=0.1)
    assert min(box.y0 for box in boxes) < 0.1 and max(box.y1 for box in boxes) > 0.8  # no empty band
    assert fig.axes[0].get_position().height * height > 2  # the input image: large
