"""What the config alone tells about a model's size: the pretrained families convlab knows, the
scratch CNN's feature-map side and parameter count, and the cost guard built on them.

Plain arithmetic on the typed config, checked before TensorFlow loads; ``pipeline.model`` builds
from the same ``SPECS``, and a test checks the count against Keras' own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pipeline.config.errors import ConfigError
from pipeline.config.schemas import DenseSoftmaxConfig, ImageFolderConfig, RunConfig, ScratchCnnConfig


@dataclasses.dataclass(frozen=True)
class Spec:
    """What convlab needs to know about one ``keras.applications`` family."""

    application: str  # the constructor in keras.applications
    module: str  # the keras.applications submodule holding its preprocess_input
    min_size: int = 32  # the smallest input side Keras accepts
    imagenet_sizes: tuple[int, ...] = (224,)  # input sides the ImageNet classifier (with top) takes
    imagenet_alphas: tuple[float, ...] = ()  # width multipliers ImageNet weights exist for


SPECS = {
    "resnet50": Spec("ResNet50", "resnet50"),
    "vgg16": Spec("VGG16", "vgg16"),
    "mobilenet": Spec(
        "MobileNet", "mobilenet", imagenet_sizes=(128, 160, 192, 224), imagenet_alphas=(0.25, 0.5, 0.75, 1.0)
    ),
    "mobilenet_v2": Spec(
        "MobileNetV2",
        "mobilenet_v2",
        imagenet_sizes=(96, 128, 160, 192, 224),
        imagenet_alphas=(0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
    ),
    "efficientnet_b0": Spec("EfficientNetB0", "efficientnet"),
}


def scratch_output_size(size: int, conv_layers: int, kernel: int, strides: int, pool_size: int | None) -> int:
    """The side length the scratch stack leaves of ``size`` pixels ('valid' padding)."""
    for _ in range(conv_layers):
        size = (size - kernel) // strides + 1
        if pool_size:
            size //= pool_size
    return size


def scratch_parameter_count(run: RunConfig, num_classes: int) -> int:
    """The scratch CNN's parameter count, from the config alone: convs, then Flatten -> Dense -> softmax."""
    backbone, head = run.backbone, run.head
    layers = backbone.conv_layers
    filters = backbone.filters if isinstance(backbone.filters, list) else [backbone.filters] * layers
    dataset = run.dataset
    channels = 3 if isinstance(dataset, ImageFolderConfig) and dataset.color_mode == "rgb" else 1
    kernel_h, kernel_w = backbone.kernel_size
    count = 0
    for count_in, count_out in zip([channels, *filters], filters):
        count += (kernel_h * kernel_w * count_in + 1) * count_out
    sides = [
        scratch_output_size(side, layers, kernel, run.conv_strides, run.pool_size)
        for side, kernel in zip(run.dataset.image_size, backbone.kernel_size)
    ]
    flat = sides[0] * sides[1] * filters[-1]
    units = head.units if isinstance(head, DenseSoftmaxConfig) else None
    if units:
        count += (flat + 1) * units
        flat = units
    return count + (flat + 1) * num_classes


def check_parameter_count(run: RunConfig) -> None:
    """Refuses a scratch CNN over ``trainer.max_parameters``, before TensorFlow loads or a run opens.

    On 224x224 photos the course's CNN flattens into a Dense layer of 124 million weights: a
    1.4 GB model logged per run, nothing learned. Called by ``runner.execute`` (after the data
    checks, so a missing folder is named first).

    Raises:
        ConfigError: one line naming the count and the fixes.
    """
    if not isinstance(run.backbone, ScratchCnnConfig):
        return  # keras.applications backbones have fixed, known sizes (VGG16: 15 million)
    count = scratch_parameter_count(run, _class_count(run))
    if count > run.trainer.max_parameters:
        size = list(run.dataset.image_size)
        raise ConfigError(
            f"the model would have {count:,} parameters, over trainer.max_parameters="
            f"{run.trainer.max_parameters:,}: use a smaller dataset.image_size (now {size}), "
            "downsample=stride, or a pretrained backbone (e.g. backbone=mobilenet)"
        )


def _class_count(run: RunConfig) -> int:
    """Classes as an image folder's ``train/`` sub-folders tell; 10 digits for every other source."""
    if not isinstance(run.dataset, ImageFolderConfig):
        return 10
    train = Path(run.dataset.path).expanduser() / "train"
    return max(2, sum(1 for p in train.iterdir() if p.is_dir())) if train.is_dir() else 2
