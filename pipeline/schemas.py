"""The schema of every config group option, and ``RunConfig``: a validated run.

Pydantic models, strict (unknown keys are errors) and frozen. ``pipeline.config.validate``
builds them from the composed Hydra config. Imports neither TensorFlow nor MLflow.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

Fraction = Field(ge=0.0, lt=1.0)


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- dataset -------------------------------------------------------------------------------
class DatasetConfig(Schema):
    name: str
    image_size: tuple[PositiveInt, PositiveInt] = (28, 28)
    max_samples: PositiveInt | None = None
    mirror_invariant: bool = False


class DigitsConfig(DatasetConfig):
    name: Literal["digits"]


class KerasDatasetConfig(DatasetConfig):
    name: Literal["mnist", "fashion_mnist"]


class CsvDatasetConfig(DatasetConfig):
    name: Literal["digit_recognizer"]
    path: str
    test_path: str | None = None


class ImageFolderConfig(DatasetConfig):
    name: Literal["image_folder"]
    path: str
    color_mode: Literal["rgb", "grayscale"] = "rgb"


# --- model ---------------------------------------------------------------------------------
class ScratchCnnConfig(Schema):
    name: Literal["scratch_cnn"]
    conv_layers: PositiveInt = 2
    filters: PositiveInt | list[PositiveInt] = 20
    kernel_size: PositiveInt | tuple[PositiveInt, PositiveInt] = (3, 3)
    activation: Literal["relu", "elu", "gelu", "selu", "swish", "tanh", "sigmoid"] = "relu"

    @pydantic.model_validator(mode="after")
    def _one_filter_count_per_layer(self) -> ScratchCnnConfig:
        if isinstance(self.filters, list) and len(self.filters) != self.conv_layers:
            raise ValueError(f"filters lists {len(self.filters)} values but conv_layers={self.conv_layers}")
        return self


class PretrainedConfig(Schema):
    """A ``keras.applications`` backbone without its ImageNet top (see ``pipeline.backbones``)."""

    name: Literal["resnet50", "vgg16", "efficientnet_b0"]
    weights: str | None = "imagenet"  # "imagenet", None (random) or a weights file
    trainable: NonNegativeInt = 0  # 0: frozen; N: fine-tune the last N layers
    input_size: tuple[PositiveInt, PositiveInt] | None = (224, 224)  # None: dataset.image_size


class MobileNetConfig(PretrainedConfig):
    name: Literal["mobilenet", "mobilenet_v2"]
    alpha: float = Field(1.0, gt=0.0)  # width multiplier


class DenseSoftmaxConfig(Schema):
    name: Literal["dense_softmax"]
    units: PositiveInt = 128
    activation: Literal["relu", "elu", "gelu", "selu", "swish", "tanh", "sigmoid"] = "relu"


class SoftmaxConfig(Schema):
    name: Literal["softmax"]


class NoDownsampleConfig(Schema):
    name: Literal["none"]


class StrideConfig(Schema):
    name: Literal["stride"]
    strides: int = Field(2, ge=2)


class MaxPoolConfig(Schema):
    name: Literal["maxpool"]
    pool_size: int = Field(2, ge=2)


class NoRegularizationConfig(Schema):
    name: Literal["none"]


class DropoutConfig(Schema):
    name: Literal["dropout"]
    rate: float = Fraction


class AugmentationConfig(Schema):
    name: str
    horizontal_flip: bool = False
    width_shift: float = Fraction
    height_shift: float = Fraction
    rotation: float = Field(0.0, ge=0.0, le=180.0)  # degrees

    @property
    def enabled(self) -> bool:
        return self.horizontal_flip or any((self.width_shift, self.height_shift, self.rotation))


# --- training ------------------------------------------------------------------------------
class AdamConfig(Schema):
    name: Literal["adam"]
    learning_rate: float = Field(0.001, gt=0.0)
    beta_1: float = Fraction
    beta_2: float = Fraction
    epsilon: float = Field(1e-7, gt=0.0)


class SgdConfig(Schema):
    name: Literal["sgd"]
    learning_rate: float = Field(0.01, gt=0.0)
    momentum: float = Fraction
    nesterov: bool = False


class AcceleratorConfig(Schema):
    name: Literal["auto", "cpu", "gpu", "multi_gpu"]
    mixed_precision: bool = False
    jit_compile: bool = False
    devices: list[str] | None = None
    logical_cpus: NonNegativeInt = 0


class TrainerConfig(Schema):
    epochs: PositiveInt = 5
    batch_size: PositiveInt = 128
    steps_per_epoch: PositiveInt | None = None
    validation_split: float = Field(0.2, gt=0.0, lt=1.0)
    split_seed: NonNegativeInt | None = 0
    deterministic: bool = True  # TensorFlow op determinism: same seed, same metrics
    cache_features: bool = True  # frozen pretrained backbone, no augmentation: features computed once
    feature_cache_dir: str | None = None  # also keep them on disk here, shared across runs


class PredictConfig(Schema):
    top_k: PositiveInt = 3  # task=predict: ImageNet labels shown per image


class SweepConfig(Schema):
    """How a multirun sweep runs (see ``pipeline.sweep``); ignored by single runs."""

    resume: str | None = None  # a sweep id, a parent run id, or "last"
    fail_fast: bool = False  # after a job fails, the jobs not yet started are skipped
    stale_after: float = Field(900.0, gt=0)  # seconds without a heartbeat: a RUNNING run elsewhere is dead
    max_seeds: PositiveInt | None = None  # adaptive seeding: add seeds to undecided variants up to this


class TrackingConfig(Schema):
    uri: str = "sqlite:///mlflow.db"
    experiment_name: str = Field("convlab", min_length=1)
    run_name: str | None = None
    log_model: bool = True


# Every group and its options. Pretrained backbones register themselves here too.
GROUPS: dict[str, dict[str, type[Schema]]] = {
    "dataset": {
        "digits": DigitsConfig,
        "digit_recognizer": CsvDatasetConfig,
        "mnist": KerasDatasetConfig,
        "fashion_mnist": KerasDatasetConfig,
        "image_folder": ImageFolderConfig,
    },
    "backbone": {
        "scratch_cnn": ScratchCnnConfig,
        "resnet50": PretrainedConfig,
        "vgg16": PretrainedConfig,
        "mobilenet": MobileNetConfig,
        "mobilenet_v2": MobileNetConfig,
        "efficientnet_b0": PretrainedConfig,
    },
    "head": {"dense_softmax": DenseSoftmaxConfig, "softmax": SoftmaxConfig},
    "downsample": {"none": NoDownsampleConfig, "stride": StrideConfig, "maxpool": MaxPoolConfig},
    "regularization": {"none": NoRegularizationConfig, "dropout": DropoutConfig},
    "augmentation": {},  # every option shares AugmentationConfig
    "optimizer": {"adam": AdamConfig, "sgd": SgdConfig},
    "accelerator": {name: AcceleratorConfig for name in ("auto", "cpu", "gpu", "multi_gpu")},
}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A validated run: one schema instance per group plus the run-level settings."""

    seed: int
    task: str
    dataset: DatasetConfig
    backbone: Schema
    head: Schema
    downsample: Schema
    regularization: Schema
    augmentation: AugmentationConfig
    optimizer: Schema
    accelerator: AcceleratorConfig
    trainer: TrainerConfig
    tracking: TrackingConfig
    predict: PredictConfig = PredictConfig()
    sweep: SweepConfig = SweepConfig()


class TopLevelConfig(Schema):
    seed: NonNegativeInt = 0
    task: Literal["train", "predict"] = "train"
