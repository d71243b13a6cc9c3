"""Typed, validated run configs: the composed Hydra config checked before TensorFlow loads.

Each config group option has a schema below; ``validate`` turns the composed config into a
``RunConfig`` or raises ``ConfigError`` with one line naming the key, the value received and
what is allowed. This module imports neither TensorFlow nor MLflow.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

from pipeline.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
# A wheel carries conf/ and experiments/ inside the package; a source checkout has them beside it.
CONF_DIR = next(p for p in (PACKAGE_DIR / "conf", PACKAGE_DIR.parent / "conf") if p.is_dir())
EXPERIMENTS_DIR = CONF_DIR.parent / "experiments"

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
            raise ValueError(
                f"filters lists {len(self.filters)} values but conv_layers={self.conv_layers}"
            )
        return self


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
    "backbone": {"scratch_cnn": ScratchCnnConfig},
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


def validate(cfg: Any) -> RunConfig:
    """Checks a composed config (DictConfig or dict, without ``hydra``) and types it.

    Raises:
        ConfigError: one line naming the key, the value received and what is allowed.
    """
    data = _to_plain_dict(cfg)
    data.pop("hydra", None)
    typed: dict[str, Any] = {}
    for group, options in GROUPS.items():
        node = data.pop(group, None)
        if not isinstance(node, dict):
            raise ConfigError(f"{group}: missing from the config (choose one of the {group}/ options)")
        schema = AugmentationConfig if group == "augmentation" else options.get(node.get("name"))
        if schema is None:
            allowed = ", ".join(options)
            raise ConfigError(f"{group}.name={node.get('name')!r} is not one of: {allowed}")
        typed[group] = _check(schema, node, group)
    typed["trainer"] = _check(TrainerConfig, data.pop("trainer", {}), "trainer")
    typed["tracking"] = _check(TrackingConfig, data.pop("tracking", {}), "tracking")
    typed.update(_check(_TopLevel, data, "").model_dump())
    return RunConfig(**typed)


class _TopLevel(Schema):
    seed: NonNegativeInt = 0
    task: Literal["train"] = "train"


def _check(schema: type[Schema], node: dict, prefix: str) -> Schema:
    try:
        return schema.model_validate(node)
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(part) for part in (prefix, *first["loc"]) if part != "")
        received = first.get("input")
        shown = f"={received!r}" if first["type"] != "missing" else ""
        raise ConfigError(f"{key or prefix}{shown}: {first['msg']}") from None


def _to_plain_dict(cfg: Any) -> dict:
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import MissingMandatoryValue

    if not isinstance(cfg, DictConfig):
        return dict(cfg)
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as err:
        key = getattr(err, "full_key", None) or str(err)
        raise ConfigError(f"{key} is required: pass {key}=...") from None


def group_options(group: str) -> list[str]:
    """The option names of a config group, as ``python -m pipeline --help`` lists them."""
    if group == "experiment":
        return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def register_experiments() -> None:
    """Makes every ``experiments/NAME.yaml`` selectable as ``experiment=NAME``.

    The presets live outside ``conf/`` (top-level ``experiments/``), so they are stored in
    Hydra's ConfigStore as the ``experiment`` group, in the global package like any
    ``# @package _global_`` preset.
    """
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    store = ConfigStore.instance()
    for path in sorted(EXPERIMENTS_DIR.glob("*.yaml")):
        store.store(group="experiment", name=path.stem, node=OmegaConf.load(path), package="_global_")


def check_choices(overrides: list[str]) -> None:
    """Rejects ``group=option`` overrides naming an option that does not exist.

    Hydra would reject them too, with a multi-line search-path dump; this says it in one line.
    """
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if not sep or "/" in key or key.startswith("hydra"):
            continue
        options = group_options(key) if key == "experiment" or (CONF_DIR / key).is_dir() else None
        if not options or value in ("null", ""):
            continue
        for choice in value.split(","):
            if choice and not any(ch in choice for ch in "()[]*$") and choice not in options:
                raise ConfigError(f"{key}={choice!r} is not an option; choose one of: {', '.join(options)}")
