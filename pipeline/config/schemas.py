"""The schema of every config group option, and ``RunConfig``: a validated run.

Pydantic models, strict (unknown keys are errors) and frozen. ``pipeline.config.validate``
builds a ``RunConfig`` from the composed Hydra config. Imports neither TensorFlow nor MLflow.

Defaults have one source: the YAML files in ``conf/``. Hydra needs every key there (an override
can only change a key the composed config has), so the schemas declare types and constraints
only, never a default value, and the builders below the config take required arguments.

Each group is a union discriminated on ``name``: ``RunConfig.head`` is a ``DenseSoftmaxConfig``
or a ``SoftmaxConfig``, so ``run.head.units`` exists exactly where it means something.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
Size = tuple[PositiveInt, PositiveInt]
Activation = Literal["relu", "elu", "gelu", "selu", "swish", "tanh", "sigmoid"]
WEIGHTS_SUFFIXES = (".h5", ".hdf5", ".keras")


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- dataset -------------------------------------------------------------------------------
class DatasetConfig(Schema):
    image_size: Size
    max_samples: PositiveInt | None
    mirror_invariant: bool  # a mirrored image keeps its label (photos: yes; digits: no)


class DigitsConfig(DatasetConfig):
    name: Literal["digits"]


class KerasDatasetConfig(DatasetConfig):
    name: Literal["mnist", "fashion_mnist"]


class CsvDatasetConfig(DatasetConfig):
    name: Literal["digit_recognizer"]
    path: str
    test_path: str | None


class ImageFolderConfig(DatasetConfig):
    name: Literal["image_folder"]
    path: str
    color_mode: Literal["rgb", "grayscale"]
    cache: Literal["memory", "disk", "none"]  # decoded images: in memory, a temp file, or every epoch


# --- model ---------------------------------------------------------------------------------
def _square(value: object) -> object:
    """``kernel_size: 3`` means ``[3, 3]``."""
    return (value, value) if isinstance(value, int) and not isinstance(value, bool) else value


class ScratchCnnConfig(Schema):
    name: Literal["scratch_cnn"]
    conv_layers: PositiveInt
    filters: PositiveInt | list[PositiveInt]
    kernel_size: Annotated[Size, pydantic.BeforeValidator(_square)]
    activation: Activation

    @pydantic.model_validator(mode="after")
    def _one_filter_count_per_layer(self) -> ScratchCnnConfig:
        if isinstance(self.filters, list) and len(self.filters) != self.conv_layers:
            raise ValueError(f"filters lists {len(self.filters)} values but conv_layers={self.conv_layers}")
        return self


def _weights(value: object) -> object:
    """``imagenet``, None (random) or a weights file, made an absolute path here, once."""
    if value is None or value == "imagenet":
        return value
    path = Path(str(value)).expanduser()
    if not path.is_file():
        raise ValueError("no such file (expected imagenet, null, or a weights file)")
    if not path.name.endswith(WEIGHTS_SUFFIXES):
        raise ValueError("Keras loads weights from .weights.h5, Keras 2 .h5 or .keras files")
    return path.resolve()


class PretrainedConfig(Schema):
    """A ``keras.applications`` backbone without its ImageNet top (see ``pipeline.model.backbones``)."""

    name: Literal["resnet50", "vgg16", "efficientnet_b0"]
    weights: Annotated[Literal["imagenet"] | Path | None, pydantic.BeforeValidator(_weights)]
    trainable: NonNegativeInt  # 0: frozen; N: fine-tune the last N layers
    input_size: Size | None  # None: dataset.image_size


class MobileNetConfig(PretrainedConfig):
    name: Literal["mobilenet", "mobilenet_v2"]  # type: ignore[assignment]
    alpha: float = Field(gt=0.0)  # width multiplier


class DenseSoftmaxConfig(Schema):
    name: Literal["dense_softmax"]
    units: PositiveInt
    activation: Activation


class SoftmaxConfig(Schema):
    name: Literal["softmax"]


class NoDownsampleConfig(Schema):
    name: Literal["none"]


class StrideConfig(Schema):
    name: Literal["stride"]
    strides: int = Field(ge=2)


class MaxPoolConfig(Schema):
    name: Literal["maxpool"]
    pool_size: int = Field(ge=2)


class NoRegularizationConfig(Schema):
    name: Literal["none"]


class DropoutConfig(Schema):
    name: Literal["dropout"]
    rate: Fraction


class AugmentationConfig(Schema):
    name: Literal["none", "flip_shift", "flip_shift_rotate", "shift_rotate"]
    horizontal_flip: bool
    width_shift: Fraction
    height_shift: Fraction
    rotation: float = Field(ge=0.0, le=180.0)  # degrees

    @property
    def enabled(self) -> bool:
        return self.horizontal_flip or any((self.width_shift, self.height_shift, self.rotation))


# --- training ------------------------------------------------------------------------------
class AdamConfig(Schema):
    name: Literal["adam"]
    learning_rate: float = Field(gt=0.0)
    beta_1: Fraction
    beta_2: Fraction
    epsilon: float = Field(gt=0.0)


class SgdConfig(Schema):
    name: Literal["sgd"]
    learning_rate: float = Field(gt=0.0)
    momentum: Fraction
    nesterov: bool


class AcceleratorConfig(Schema):
    name: Literal["auto", "cpu", "gpu"]
    mixed_precision: bool
    jit_compile: bool


class MultiGpuConfig(AcceleratorConfig):
    name: Literal["multi_gpu"]  # type: ignore[assignment]
    devices: list[str] | None  # None: every visible GPU
    logical_cpus: NonNegativeInt  # split the CPU first (testing distribution without GPUs)


class CheckpointConfig(Schema):
    """A run's checkpoint at epoch ends (weights, optimizer, epoch, RNG, callbacks' state)."""

    dir: str  # one folder per run id under it; removed when the run ends FINISHED
    every_seconds: float = Field(ge=0)  # at an epoch's end if this long since the last one (0: every epoch)


class EarlyStoppingConfig(Schema):
    """Keras' ``EarlyStopping(restore_best_weights=True)``; off while ``patience`` is null."""

    monitor: Literal["val_accuracy", "val_loss"]  # a validation metric: the training ones only improve
    patience: PositiveInt | None  # epochs without improvement before stopping; null: off
    min_delta: float = Field(ge=0)  # a smaller change is no improvement


class TrainerConfig(Schema):
    epochs: PositiveInt
    batch_size: PositiveInt
    steps_per_epoch: PositiveInt | None
    validation_split: float = Field(gt=0.0, lt=1.0)
    split_seed: NonNegativeInt | None
    deterministic: bool  # TensorFlow op determinism: same seed, same metrics
    cache_features: bool  # frozen pretrained backbone, no augmentation: features computed once
    feature_cache_dir: str | None  # also keep them on disk here, shared across runs
    max_parameters: PositiveInt  # a scratch CNN estimated over this is refused before TensorFlow loads
    resume: str | None  # a run id: continue that KILLED (or dead RUNNING) run from its last checkpoint
    checkpoint: CheckpointConfig
    early_stopping: EarlyStoppingConfig


class PredictConfig(Schema):
    top_k: PositiveInt  # task=predict: ImageNet labels shown per image
    model: str | None  # a model URI to score dataset.path with; None: the backbone's ImageNet classifier
    output: str | None  # the CSV written with ``model``; None: submission.csv or predictions.csv


class SweepConfig(Schema):
    """How a multirun sweep runs (see ``pipeline.sweep``); ignored by single runs."""

    resume: str | None  # a sweep id, a parent run id, or "last"
    fail_fast: bool  # after a job fails, the jobs not yet started are skipped
    stale_after: float = Field(gt=0)  # seconds without a heartbeat: a RUNNING run elsewhere is dead
    max_seeds: PositiveInt | None  # adaptive seeding: add seeds to undecided variants up to this
    # sweep.register: the decided winner's model registered under this name (``register`` would
    # shadow pydantic's BaseModel.register)
    register_as: str | None = Field(alias="register", min_length=1)
    register_undecided: bool  # no decided winner: register the best mean anyway, marked undecided


class TrackingConfig(Schema):
    uri: str
    experiment_name: str = Field(min_length=1)
    run_name: str | None
    log_model: bool
    system_metrics: bool  # MLflow's system metrics (CPU, memory, disk, network, GPU) on the run
    outage_seconds: float = Field(ge=0)  # a server that stops answering mid-run: how long to wait


Dataset = Annotated[
    DigitsConfig | KerasDatasetConfig | CsvDatasetConfig | ImageFolderConfig, Field(discriminator="name")
]
Backbone = Annotated[ScratchCnnConfig | PretrainedConfig | MobileNetConfig, Field(discriminator="name")]
Head = Annotated[DenseSoftmaxConfig | SoftmaxConfig, Field(discriminator="name")]
Downsample = Annotated[NoDownsampleConfig | StrideConfig | MaxPoolConfig, Field(discriminator="name")]
Regularization = Annotated[NoRegularizationConfig | DropoutConfig, Field(discriminator="name")]
Optimizer = Annotated[AdamConfig | SgdConfig, Field(discriminator="name")]
Accelerator = Annotated[AcceleratorConfig | MultiGpuConfig, Field(discriminator="name")]

# Every group and its options' schemas, in the order errors are reported.
GROUPS: dict[str, tuple[type[Schema], ...]] = {
    "dataset": (DigitsConfig, KerasDatasetConfig, CsvDatasetConfig, ImageFolderConfig),
    "backbone": (ScratchCnnConfig, PretrainedConfig, MobileNetConfig),
    "head": (DenseSoftmaxConfig, SoftmaxConfig),
    "downsample": (NoDownsampleConfig, StrideConfig, MaxPoolConfig),
    "regularization": (NoRegularizationConfig, DropoutConfig),
    "augmentation": (AugmentationConfig,),
    "optimizer": (AdamConfig, SgdConfig),
    "accelerator": (AcceleratorConfig, MultiGpuConfig),
}


def option_names(group: str) -> list[str]:
    """The ``name`` values a group's schemas accept, e.g. ``["adam", "sgd"]``."""
    names: list[str] = []
    for schema in GROUPS[group]:
        names += list(schema.model_fields["name"].annotation.__args__)
    return names


class RunConfig(Schema):
    """A validated run: one schema instance per group plus the run-level settings."""

    dataset: Dataset
    backbone: Backbone
    head: Head
    downsample: Downsample
    regularization: Regularization
    augmentation: AugmentationConfig
    optimizer: Optimizer
    accelerator: Accelerator
    trainer: TrainerConfig
    tracking: TrackingConfig
    predict: PredictConfig
    sweep: SweepConfig
    seed: NonNegativeInt
    task: Literal["train", "predict"]

    @property
    def pretrained(self) -> bool:
        """A ``keras.applications`` backbone (not the scratch CNN)."""
        return isinstance(self.backbone, PretrainedConfig)

    @property
    def model_input_size(self) -> tuple[int, int]:
        """The image size the model sees: a pretrained backbone's ``input_size``, else the dataset's."""
        backbone = self.backbone
        size = backbone.input_size if isinstance(backbone, PretrainedConfig) else None
        return tuple(size or self.dataset.image_size)

    @property
    def caches_features(self) -> bool:
        """A frozen pretrained backbone without augmentation gives the same features every epoch."""
        backbone = self.backbone
        frozen = isinstance(backbone, PretrainedConfig) and backbone.trainable == 0
        return self.trainer.cache_features and frozen and not self.augmentation.enabled

    @property
    def split_seed(self) -> int:
        """The validation split's seed: ``trainer.split_seed``, or the run's seed when that is null."""
        return self.seed if self.trainer.split_seed is None else self.trainer.split_seed

    @property
    def conv_strides(self) -> int:
        """The scratch CNN's conv strides: ``downsample=stride``'s, else 1."""
        return self.downsample.strides if isinstance(self.downsample, StrideConfig) else 1

    @property
    def pool_size(self) -> int | None:
        """MaxPooling2D after each conv with ``downsample=maxpool``, else None."""
        return self.downsample.pool_size if isinstance(self.downsample, MaxPoolConfig) else None

    @property
    def dropout_rate(self) -> float:
        return self.regularization.rate if isinstance(self.regularization, DropoutConfig) else 0.0
