"""From a validated ``RunConfig`` to plain values and built objects: the one place that reads
the config for data, model, optimizer and augmentation.

Below this module nothing sees a config: ``data.load``, ``models.build_model``,
``backbones.pretrained``, ``augment.build_augmentation`` and ``accelerator.configure`` take
plain values. TensorFlow is imported inside the functions that build Keras objects.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from pipeline.schemas import (
    AdamConfig,
    CsvDatasetConfig,
    DenseSoftmaxConfig,
    ImageFolderConfig,
    MobileNetConfig,
    MultiGpuConfig,
    PretrainedConfig,
    RunConfig,
    SgdConfig,
)


def data_arguments(run: RunConfig) -> dict[str, Any]:
    """Keyword arguments of ``data.load`` for the configured source."""
    ds = run.dataset
    arguments: dict[str, Any] = {
        "name": ds.name,
        "image_size": run.model_input_size,
        "validation_split": run.trainer.validation_split,
        "split_seed": run.split_seed,
        "max_samples": ds.max_samples,
    }
    if isinstance(ds, CsvDatasetConfig):
        arguments |= {"path": ds.path, "test_path": ds.test_path}
    if isinstance(ds, ImageFolderConfig):
        arguments |= {"path": ds.path, "color_mode": ds.color_mode, "cache": ds.cache}
    return arguments


def load_data(run: RunConfig):
    """The configured data set, split: an ``ImageData``."""
    from pipeline import data

    return data.load(**data_arguments(run))


def accelerator_arguments(run: RunConfig) -> dict[str, Any]:
    """Keyword arguments of ``accelerator.configure``."""
    acc = run.accelerator
    devices, logical_cpus = (acc.devices, acc.logical_cpus) if isinstance(acc, MultiGpuConfig) else (None, 0)
    return {
        "name": acc.name,
        "mixed_precision": acc.mixed_precision,
        "devices": devices,
        "logical_cpus": logical_cpus,
    }


def alpha(run: RunConfig) -> float | None:
    """The MobileNets' width multiplier; None for every other backbone."""
    return run.backbone.alpha if isinstance(run.backbone, MobileNetConfig) else None


def backbone_builder(run: RunConfig) -> Callable:
    """``inputs -> features`` for the configured backbone, downsampling and regularization."""
    from pipeline import backbones, models

    backbone = run.backbone
    if isinstance(backbone, PretrainedConfig):  # its own preprocessing and downsampling
        return functools.partial(
            backbones.pretrained,
            name=backbone.name,
            weights=backbone.weights,
            trainable=backbone.trainable,
            alpha=alpha(run),
            dropout_rate=run.dropout_rate,
        )
    return functools.partial(
        models.scratch_cnn,
        conv_layers=backbone.conv_layers,
        filters=backbone.filters,
        kernel_size=backbone.kernel_size,
        activation=backbone.activation,
        strides=run.conv_strides,
        pool_size=run.pool_size,
        dropout_rate=run.dropout_rate,
    )


def build_model(run: RunConfig, input_shape, num_classes: int):
    """The configured backbone + head, as a functional ``keras.Model``."""
    from pipeline import models

    head = run.head
    units, activation = (
        (head.units, head.activation) if isinstance(head, DenseSoftmaxConfig) else (None, None)
    )
    return models.build_model(input_shape, num_classes, backbone_builder(run), units, activation)


def build_optimizer(optimizer: AdamConfig | SgdConfig):
    """The Keras optimizer, with every knob the config sets."""
    import keras

    kwargs = optimizer.model_dump(exclude={"name"})
    return keras.optimizers.Adam(**kwargs) if optimizer.name == "adam" else keras.optimizers.SGD(**kwargs)


def build_augmentation(run: RunConfig):
    """The augmentation layers (a ``keras.Sequential``), or None when ``augmentation=none``."""
    from pipeline.augment import build_augmentation

    aug = run.augmentation
    return build_augmentation(aug.horizontal_flip, aug.width_shift, aug.height_shift, aug.rotation, run.seed)
