"""Grad-CAM on the scratch CNN and a pretrained backbone, and the most confident mistakes."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from pipeline.model import backbones, scratch
from pipeline.training import gradcam, mistakes


def _scratch(shape=(16, 16, 1)):
    cnn = functools.partial(scratch.scratch_cnn, conv_layers=2, filters=[4, 8], kernel_size=[3, 3],
                            activation="relu", strides=1, pool_size=None, dropout_rate=0.0)  # fmt: skip
    return scratch.build_model(shape, 3, cnn, None, None)


def test_gradcam_on_the_scratch_cnn_is_the_gradient_weighted_last_conv_map():
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = _scratch()
    images = np.random.default_rng(0).uniform(0, 255, (3, 16, 16, 1)).astype("float32")
    classes = np.array([0, 2, 1])
    cams = gradcam.heatmaps(model, images, classes)
    assert cams.shape == (3, 16, 16) and cams.min() >= 0 and cams.max() <= 1.0
    # by hand, on conv2 (the last conv layer): maps weighted by the mean gradient of each class
    probe = keras.Model(model.inputs, [model.get_layer("conv2").output, model.output])
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        maps, probabilities = probe(x)
        picked = tf.gather(probabilities, classes, axis=1, batch_dims=1)
    weights = tf.reduce_mean(tape.gradient(picked, maps), axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * maps, -1)).numpy()  # 12x12 after two 'valid' 3x3 convs
    expected = np.pad(cam, ((0, 0), (2, 2), (2, 2)))  # centred over the pixels it sees, not stretched
    expected = expected / np.maximum(expected.reshape(3, -1).max(axis=1), 1e-9)[:, None, None]
    np.testing.assert_allclose(cams, expected, atol=1e-5)


def test_gradcam_reaches_into_a_pretrained_backbone_and_skips_a_model_without_conv():
    import keras

    keras.utils.set_random_seed(0)
    backbone = functools.partial(backbones.pretrained, name="mobilenet_v2", weights=None, trainable=0,
                                 alpha=0.35, dropout_rate=0.0)  # fmt: skip
    model = scratch.build_model((32, 32, 3), 2, backbone, None, None)
    holder, conv = gradcam.last_conv_layer(model)
    assert holder is not model and conv.name == "Conv_1"  # MobileNetV2's last conv, inside the backbone
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    cams = gradcam.heatmaps(model, images, np.array([0, 1]))
    assert cams.shape == (2, 32, 32) and np.isfinite(cams).all()

    dense = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    assert gradcam.heatmaps(dense, np.zeros((1, 4, 4, 1), "float32"), np.array([0])) is None


def test_the_most_confident_mistakes_come_first_and_the_figure_has_an_overlay_each():
    y = np.array([0, 1, 2, 0, 1])
    probabilities = np.array(
        [[0.9, 0.05, 0.05], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.2, 0.75, 0.05], [0.3, 0.3, 0.4]]
    )
    assert list(mistakes.most_confident(y, probabilities, 8)) == [3, 1, 4]  # 0.75, 0.7, 0.4
    assert list(mistakes.most_confident(y, probabilities, 2)) == [3, 1]
    table = pd.DataFrame({"true": ["a", "b"], "predicted": ["b", "a"], "probability": [0.75, 0.7]})
    images = np.zeros((2, 8, 8, 1), "float32")
    fig = mistakes.figure(images, np.ones((2, 8, 8)), table)
    assert [text.get_text() for text in fig.axes[0].texts] == [
        "true a\npredicted b 75%",
        "true b\npredicted a 70%",
    ]
    mosaic = fig.axes[0].images[0].get_array()
    assert mosaic.shape[1] == 2 * 8 + 1 and mosaic.shape[0] > 2 * 8  # two columns, image above Grad-CAM


def test_speed_measures_time_size_and_this_runs_peak_memory():
    import sys

    import pytest

    from pipeline.training import speed

    model = _scratch()
    measured = speed.measure(model)
    assert measured["model_size_mb"] == pytest.approx(model.count_params() * 4 / 1e6)
    assert measured["inference_ms_per_image/batch_1"] > 0 and measured["inference_ms_per_image/batch_128"] > 0
    if sys.platform == "linux":  # the peak starts afresh for each run of a process
        speed.reset_peak_memory()
        big = np.ones(40_000_000)  # 320 MB
        before = speed.peak_rss_mb()
        del big
        speed.reset_peak_memory()
        assert speed.peak_rss_mb() < before - 200
