"""Every scratch-CNN option composes into a Keras model with the right shape and layers."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from pipeline.config import composition
from pipeline.model import optimizers, scratch
from pipeline.training import wiring

COMBOS = list(
    itertools.product(
        composition.group_options("head"),
        composition.group_options("downsample"),
        composition.group_options("regularization"),
    )
)


def build_model(run, input_shape, num_classes):
    """The model a run trains: the config's plan, then the pure builder."""
    plan = wiring.plan(run)
    return scratch.build_model(input_shape, num_classes, plan.backbone, plan.head_units, plan.head_activation)


@pytest.mark.parametrize(("head", "downsample", "regularization"), COMBOS, ids=["-".join(c) for c in COMBOS])
def test_every_option_builds_a_model_with_one_probability_per_class(
    head, downsample, regularization, run_config
):
    run = run_config(f"head={head}", f"downsample={downsample}", f"regularization={regularization}")
    model = build_model(run, (28, 28, 1), num_classes=10)
    probabilities = model.predict(np.random.rand(3, 28, 28, 1).astype("float32") * 255, verbose=0)
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    names = {layer.name for layer in model.layers}
    assert ("maxpool1" in names) == (downsample == "maxpool")
    assert ("dropout1" in names) == (regularization == "dropout")
    assert ("dense" in names) == (head == "dense_softmax")
    if downsample == "stride":
        assert model.get_layer("conv1").strides == (2, 2)


def test_default_is_the_course_model(run_config):
    model = build_model(run_config(), (28, 28, 1), num_classes=10)
    conv1, conv2 = model.get_layer("conv1"), model.get_layer("conv2")
    assert (conv1.filters, conv1.kernel_size, conv2.filters) == (20, (3, 3), 20)
    assert model.get_layer("dense").units == 128
    assert model.output_shape == (None, 10)
    # Conv(20,3x3) twice on 28x28 -> 24x24x20 -> Dense(128) -> 10: the course's parameter count
    assert model.count_params() == (9 * 20 + 20) + (9 * 20 * 20 + 20) + (24 * 24 * 20 * 128 + 128) + (
        128 * 10 + 10
    )


def test_non_square_kernels_and_per_layer_filters(run_config):
    run = run_config("backbone.kernel_size=[4,7]", "backbone.filters=[8,16]")
    model = build_model(run, (28, 28, 1), num_classes=3)
    assert model.get_layer("conv1").kernel_size == (4, 7)
    assert (model.get_layer("conv1").filters, model.get_layer("conv2").filters) == (8, 16)
    assert model.output_shape == (None, 3)


@pytest.mark.parametrize("name", composition.group_options("optimizer"))
def test_optimizers_carry_their_knobs(name, run_config):
    run = run_config(f"optimizer={name}", "optimizer.learning_rate=0.05")
    optimizer = optimizers.build(*wiring.plan(run).optimizer)
    # Keras numbers a name already taken in this process (adam_1): other tests may have built one
    assert re.fullmatch(rf"{name}(_\d+)?", optimizer.name), optimizer.name
    assert float(optimizer.learning_rate) == pytest.approx(0.05)
