"""The schema of every config group's options: dataset, backbone, head, downsample,
regularization, augmentation, optimizer, accelerator.

Each group is a union discriminated on ``name`` (``Head`` is a ``DenseSoftmaxConfig`` or a
``SoftmaxConfig``); ``GROUPS`` lists them all. ``schemas.RunConfig`` holds one of each, beside the
run-level settings (``schemas``, which re-exports every name here). Defaults live in ``conf/``.
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
    image_size: Size  # [height, width] images are resized to (backbone.input_size wins when set)
    max_samples: PositiveInt | None  # at most this many labelled images, stratified by class; null: all
    mirror_invariant: bool  # a mirrored image keeps its label (photos: yes; digits: no)


class DigitsConfig(DatasetConfig):
    name: Literal["digits"]


class KerasDatasetConfig(DatasetConfig):
    name: Literal["mnist", "fashion_mnist"]


class CsvDatasetConfig(DatasetConfig):
    name: Literal["digit_recognizer"]
    path: str  # the labelled CSV (Kaggle's train.csv); ??? : required
    test_path: str | None  # the unlabelled CSV (test.csv): its predictions are logged as submission.csv


class ImageFolderConfig(DatasetConfig):
    name: Literal["image_folder"]
    path: str  # the folder: train/<class>/*, val/ and test/ optional; ??? : required
    color_mode: Literal["rgb", "grayscale"]  # images decoded with 3 channels or 1
    cache: Literal["memory", "disk", "none"]  # decoded: once per process, once per machine, every epoch


# --- model ---------------------------------------------------------------------------------
def _square(value: object) -> object:
    """``kernel_size: 3`` means ``[3, 3]``."""
    return (value, value) if isinstance(value, int) and not isinstance(value, bool) else value


class ScratchCnnConfig(Schema):
    name: Literal["scratch_cnn"]
    conv_layers: PositiveInt  # Conv2D layers, each followed by the downsampling and dropout chosen
    filters: PositiveInt | list[PositiveInt]  # one count for every layer, or one per layer
    kernel_size: Annotated[Size, pydantic.BeforeValidator(_square)]  # [height, width]; one number: square
    activation: Activation  # each conv layer's activation

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
    # imagenet, null (random), or a weights file (.weights.h5, Keras 2 .h5, .keras)
    weights: Annotated[Literal["imagenet"] | Path | None, pydantic.BeforeValidator(_weights)]
    trainable: NonNegativeInt  # 0: frozen; N: fine-tune the last N layers
    input_size: Size | None  # None: dataset.image_size


class MobileNetConfig(PretrainedConfig):
    name: Literal["mobilenet", "mobilenet_v2"]  # type: ignore[assignment]
    alpha: float = Field(gt=0.0)  # width multiplier


class DenseSoftmaxConfig(Schema):
    name: Literal["dense_softmax"]
    units: PositiveInt  # the hidden Dense layer's units, before the softmax
    activation: Activation  # the hidden Dense layer's activation


class SoftmaxConfig(Schema):
    name: Literal["softmax"]


class NoDownsampleConfig(Schema):
    name: Literal["none"]


class StrideConfig(Schema):
    name: Literal["stride"]
    strides: int = Field(ge=2)  # every conv's stride: 2 halves the feature maps at each layer


class MaxPoolConfig(Schema):
    name: Literal["maxpool"]
    pool_size: int = Field(ge=2)  # MaxPooling2D's window and stride after each conv: 2 halves the maps


class NoRegularizationConfig(Schema):
    name: Literal["none"]


class DropoutConfig(Schema):
    name: Literal["dropout"]
    rate: Fraction  # the fraction dropped: after each conv (scratch CNN), of the pooled features (pretrained)


class AugmentationConfig(Schema):
    name: Literal["none", "flip_shift", "flip_shift_rotate", "shift_rotate"]
    horizontal_flip: bool  # mirror training images left-right at random
    width_shift: Fraction  # the largest random horizontal shift, a fraction of the width (0.1: 10%)
    height_shift: Fraction  # the largest random vertical shift, a fraction of the height
    rotation: float = Field(ge=0.0, le=180.0)  # the largest random rotation, in degrees either way

    @property
    def enabled(self) -> bool:
        return self.horizontal_flip or any((self.width_shift, self.height_shift, self.rotation))


# --- training ------------------------------------------------------------------------------
class AdamConfig(Schema):
    name: Literal["adam"]
    learning_rate: float = Field(gt=0.0)  # the step size (a schedule's peak rate)
    beta_1: Fraction  # decay of the running mean of the gradients
    beta_2: Fraction  # decay of the running mean of the squared gradients
    epsilon: float = Field(gt=0.0)  # added to the denominator for numerical stability


class SgdConfig(Schema):
    name: Literal["sgd"]
    learning_rate: float = Field(gt=0.0)  # the step size (a schedule's peak rate)
    momentum: Fraction  # the share of the last update kept in the next; 0: plain SGD
    nesterov: bool  # Nesterov momentum (the gradient taken after the momentum step)


# --- learning-rate schedule (conf/schedule/; built by pipeline.training.schedules) -------------
class ConstantScheduleConfig(Schema):
    name: Literal["constant"]


class CosineScheduleConfig(Schema):
    name: Literal["cosine"]
    warmup_epochs: NonNegativeInt  # linear warmup from 0 to optimizer.learning_rate
    alpha: float = Field(ge=0.0, le=1.0)  # the last epoch's rate, as a fraction of the peak


class StepScheduleConfig(Schema):
    name: Literal["step"]
    every: PositiveInt  # epochs between two drops
    factor: float = Field(gt=0.0, lt=1.0)  # each drop multiplies the rate by this


class PlateauScheduleConfig(Schema):
    name: Literal["plateau"]
    monitor: Literal["val_loss", "val_accuracy"]  # the validation metric watched
    factor: float = Field(gt=0.0, lt=1.0)  # each drop multiplies the rate by this
    patience: NonNegativeInt  # epochs without improvement before the rate drops
    min_delta: float = Field(ge=0.0)  # a smaller change of the monitored metric is no improvement
    cooldown: NonNegativeInt  # epochs after a drop before counting again
    min_lr: float = Field(ge=0.0)  # the rate never drops below this


class AcceleratorConfig(Schema):
    name: Literal["auto", "cpu", "gpu"]
    mixed_precision: bool  # float16 compute on a GPU, bfloat16 on the CPU; the softmax stays float32
    jit_compile: bool  # compile the train step with XLA; seeds then reproduce runs only approximately


class MultiGpuConfig(AcceleratorConfig):
    name: Literal["multi_gpu"]  # type: ignore[assignment]
    devices: list[str] | None  # None: every visible GPU
    logical_cpus: NonNegativeInt  # split the CPU first (testing distribution without GPUs)


Dataset = Annotated[
    DigitsConfig | KerasDatasetConfig | CsvDatasetConfig | ImageFolderConfig, Field(discriminator="name")
]
Backbone = Annotated[ScratchCnnConfig | PretrainedConfig | MobileNetConfig, Field(discriminator="name")]
Head = Annotated[DenseSoftmaxConfig | SoftmaxConfig, Field(discriminator="name")]
Downsample = Annotated[NoDownsampleConfig | StrideConfig | MaxPoolConfig, Field(discriminator="name")]
Regularization = Annotated[NoRegularizationConfig | DropoutConfig, Field(discriminator="name")]
Optimizer = Annotated[AdamConfig | SgdConfig, Field(discriminator="name")]
Accelerator = Annotated[AcceleratorConfig | MultiGpuConfig, Field(discriminator="name")]
Schedule = Annotated[
    ConstantScheduleConfig | CosineScheduleConfig | StepScheduleConfig | PlateauScheduleConfig,
    Field(discriminator="name"),
]

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
    "schedule": (ConstantScheduleConfig, CosineScheduleConfig, StepScheduleConfig, PlateauScheduleConfig),
}


def option_names(group: str) -> list[str]:
    """The ``name`` values a group's schemas accept, e.g. ``["adam", "sgd"]``."""
    names: list[str] = []
    for schema in GROUPS[group]:
        names += list(schema.model_fields["name"].annotation.__args__)
    return names
