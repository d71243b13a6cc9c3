"""Model builders: pure functions from plain values to a functional ``keras.Model``.

A model takes raw 0-255 pixels; its first layer scales them, so the logged model can be fed
the same values the data source holds (a Kaggle CSV row, a decoded JPEG).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def scratch_cnn(
    inputs,
    conv_layers: int,
    filters: int | Sequence[int],
    kernel_size: int | Sequence[int],
    activation: str,
    strides: int,
    pool_size: int | None,
    dropout_rate: float,
):
    """The course's from-scratch stack: ``conv_layers`` x [Conv2D, optional MaxPool, Dropout].

    Args:
        inputs: the image tensor, 0-255 pixel values.
        filters: one count for every layer, or one per layer.
        kernel_size: ``3`` or ``(height, width)``; non-square kernels such as ``(4, 7)`` work.
        strides: 2 for the course's "strides" downsampling, 1 otherwise.
        pool_size: MaxPooling2D after each conv when set (the "max-pool" downsampling).
        dropout_rate: Dropout after each conv block when above 0.

    Returns:
        The last block's feature maps.
    """
    import keras

    per_layer = list(filters) if isinstance(filters, Sequence) else [filters] * conv_layers
    x = keras.layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    for index, count in enumerate(per_layer, start=1):
        x = keras.layers.Conv2D(
            count, kernel_size, strides=strides, activation=activation, name=f"conv{index}"
        )(x)
        if pool_size:
            x = keras.layers.MaxPooling2D(pool_size, name=f"maxpool{index}")(x)
        if dropout_rate:
            x = keras.layers.Dropout(dropout_rate, name=f"dropout{index}")(x)
    return x


def classifier_head(features, num_classes: int, units: int | None, activation: str | None):
    """Flatten, an optional hidden Dense layer, then softmax over ``num_classes``.

    The softmax runs in float32 even under mixed precision, so probabilities stay exact.
    """
    import keras

    x = keras.layers.Flatten(name="flatten")(features)
    if units:
        x = keras.layers.Dense(units, activation=activation, name="dense")(x)
    return keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)


def build_model(
    input_shape: Sequence[int],
    num_classes: int,
    backbone: Callable,
    head_units: int | None,
    head_activation: str | None,
    name: str = "convlab",
):
    """Wires ``backbone(inputs) -> features`` to a softmax head.

    Args:
        input_shape: ``(height, width, channels)`` of the raw images.
        backbone: a function from the input tensor to a feature tensor, e.g.
            ``functools.partial(scratch_cnn, strides=2)``.
        head_units: width of the hidden Dense layer; None for softmax straight on features.
        head_activation: the hidden layer's activation; None without one.
    """
    import keras

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    outputs = classifier_head(backbone(inputs), num_classes, head_units, head_activation)
    return keras.Model(inputs, outputs, name=name)
