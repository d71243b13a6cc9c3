"""From a validated ``RunConfig`` to a ``Plan``: the one place that reads the config for data,
model, optimizer and augmentation, once, before anything is built.

``train`` then builds and fits from the plan's plain values alone: ``sources.load``,
``scratch.build_model``, ``backbones.pretrained``, ``augment.build_augmentation``,
``optimizers.build`` and ``accelerator.configure`` never see a config. Nothing here imports
TensorFlow.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

from pipeline.config.schemas import (
    CsvDatasetConfig,
    DenseSoftmaxConfig,
    ImageFolderConfig,
    MobileNetConfig,
    MultiGpuConfig,
    PretrainedConfig,
    RunConfig,
)
from pipeline.model import backbones, scratch


@dataclasses.dataclass(frozen=True)
class Plan:
    """One training run as plain values, in the order ``train`` uses them."""

    data: dict[str, Any]  # keyword arguments of ``sources.load``
    augmentation: dict[str, Any]  # of ``augment.build_augmentation`` (all zero: no augmentation)
    backbone: Callable  # ``inputs -> features``: the scratch CNN or a pretrained backbone
    head_units: int | None  # Dense(units) before the softmax; None: softmax on the features
    head_activation: str | None
    optimizer: tuple[str, dict[str, Any]]  # ``optimizers.build`` name and keywords
    seed: int
    batch_size: int
    epochs: int
    steps_per_epoch: int | None
    jit_compile: bool
    log_model: bool
    cache_features: bool  # frozen backbone, no augmentation: the head trains on features computed once
    val_on_features: bool  # frozen backbone with augmentation: validation features computed once
    backbone_identity: dict[str, Any]  # the backbone's config: part of the feature cache's key
    feature_cache_dir: str | None
    evaluate: bool  # the per-class evaluation after the last epoch (``training.evaluate``)
    class_weight: str | None  # "balanced": the loss weighted by inverse class frequency
    objective: str  # sweep.metric: what a study's trial reports per epoch
    checkpoint_dir: str  # a folder per run id: the checkpoint written at epoch ends
    checkpoint_every: float  # seconds between checkpoints (0: every epoch)
    early_stopping: tuple[str, int, float] | None  # monitor, patience, min_delta; None: off
    schedule: tuple[str, dict[str, Any]] = ("constant", {})  # ``schedules.optimizer``'s name and keys
    fine_tune: FineTune | None = None  # a second stage; None: one stage


@dataclasses.dataclass(frozen=True)
class FineTune:
    """Stage 2 of a two-stage run: ``epochs`` more with the backbone's last ``layers`` unfrozen."""

    epochs: int
    layers: int
    learning_rate_factor: float


def plan(run: RunConfig) -> Plan:
    """The plan of a training run."""
    head = run.head
    dense = isinstance(head, DenseSoftmaxConfig)
    units, activation = (head.units, head.activation) if dense else (None, None)
    aug = run.augmentation
    return Plan(
        data=data_arguments(run),
        augmentation={
            "horizontal_flip": aug.horizontal_flip,
            "width_shift": aug.width_shift,
            "height_shift": aug.height_shift,
            "rotation": aug.rotation,
            "seed": run.seed,
        },
        backbone=backbone_builder(run),
        head_units=units,
        head_activation=activation,
        optimizer=(run.optimizer.name, run.optimizer.model_dump(exclude={"name"})),
        seed=run.seed,
        batch_size=run.trainer.batch_size,
        epochs=run.trainer.epochs,
        steps_per_epoch=run.trainer.steps_per_epoch,
        jit_compile=run.accelerator.jit_compile,
        log_model=run.tracking.log_model,
        cache_features=run.caches_features,
        val_on_features=_scores_val_on_features(run),
        backbone_identity=run.backbone.model_dump(),
        feature_cache_dir=run.trainer.feature_cache_dir,
        evaluate=run.trainer.evaluate,
        class_weight=run.trainer.class_weight,
        objective=run.sweep.metric,
        checkpoint_dir=run.trainer.checkpoint.dir,
        checkpoint_every=run.trainer.checkpoint.every_seconds,
        early_stopping=_early_stopping(run),
        schedule=(run.schedule.name, run.schedule.model_dump(exclude={"name"})),
        fine_tune=FineTune(**run.fine_tune.model_dump()) if run.fine_tune.epochs else None,
    )


def _early_stopping(run: RunConfig) -> tuple[str, int, float] | None:
    stopping = run.trainer.early_stopping
    if stopping.patience is None:
        return None
    return stopping.monitor, stopping.patience, stopping.min_delta


def data_arguments(run: RunConfig) -> dict[str, Any]:
    """Keyword arguments of ``sources.load`` for the configured source."""
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
        scratch.scratch_cnn,
        conv_layers=backbone.conv_layers,
        filters=backbone.filters,
        kernel_size=backbone.kernel_size,
        activation=backbone.activation,
        strides=run.conv_strides,
        pool_size=run.pool_size,
        dropout_rate=run.dropout_rate,
    )


def _scores_val_on_features(run: RunConfig) -> bool:
    """A frozen pretrained backbone with augmentation: only the training images change per epoch."""
    backbone = run.backbone
    frozen = isinstance(backbone, PretrainedConfig) and backbone.trainable == 0
    return run.trainer.cache_features and frozen and run.augmentation.enabled and not run.caches_features
