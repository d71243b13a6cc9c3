"""Typed, validated run configs: the composed Hydra config checked before TensorFlow loads.

Each config group option has a schema (``pipeline.schemas``); ``validate`` turns the composed config into a
``RunConfig`` or raises ``ConfigError`` with one line naming the key, the value received and
what is allowed. This module imports neither TensorFlow nor MLflow.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pydantic

from pipeline.errors import ConfigError
from pipeline.schemas import (
    GROUPS,
    AugmentationConfig,
    PredictConfig,
    RunConfig,
    Schema,
    SweepConfig,
    TopLevelConfig,
    TrackingConfig,
    TrainerConfig,
)

PACKAGE_DIR = Path(__file__).resolve().parent
# A wheel carries conf/ and experiments/ inside the package; a source checkout has them beside it.
CONF_DIR = next(p for p in (PACKAGE_DIR / "conf", PACKAGE_DIR.parent / "conf") if p.is_dir())
EXPERIMENTS_DIR = CONF_DIR.parent / "experiments"


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
    typed["predict"] = _check(PredictConfig, data.pop("predict", {}), "predict")
    typed["sweep"] = _check(SweepConfig, data.pop("sweep", {}), "sweep")
    typed.update(_check(TopLevelConfig, data, "").model_dump())
    run = RunConfig(**typed)
    _check_feature_maps(run)
    _check_pretrained(run)
    return run


def _check_feature_maps(run: RunConfig) -> None:
    """A scratch CNN whose convs and pools shrink the image to nothing cannot be built."""
    from pipeline.models import scratch_output_size

    backbone = run.backbone
    if backbone.name != "scratch_cnn":
        return
    kernel = backbone.kernel_size
    kernels = (kernel, kernel) if isinstance(kernel, int) else kernel
    strides = getattr(run.downsample, "strides", 1)
    pool = getattr(run.downsample, "pool_size", None)
    for side, k in zip(run.dataset.image_size, kernels):
        if scratch_output_size(side, backbone.conv_layers, k, strides, pool) < 1:
            raise ConfigError(
                f"backbone.conv_layers={backbone.conv_layers}: with downsample={run.downsample.name} "
                f"and kernel {tuple(kernels)}, dataset.image_size={list(run.dataset.image_size)} is too "
                "small (the feature maps shrink to nothing); use fewer layers or larger images"
            )


def model_input_size(run: RunConfig) -> tuple[int, int]:
    """The image size the model sees: a pretrained backbone's ``input_size``, else the dataset's."""
    return tuple(getattr(run.backbone, "input_size", None) or run.dataset.image_size)


def _check_pretrained(run: RunConfig) -> None:
    """Pretrained backbones: input size, weights and the combinations Keras would reject."""
    from pipeline.backbones import SPECS

    backbone = run.backbone
    spec = SPECS.get(backbone.name)
    if spec is None:
        if run.task == "predict":
            raise ConfigError(
                f"task=predict needs an ImageNet classifier: choose backbone={', '.join(SPECS)} "
                f"(received backbone={backbone.name})"
            )
        return
    if run.task == "predict" and run.dataset.name != "image_folder":
        raise ConfigError(
            f"task=predict reads image files: use dataset=image_folder (received dataset={run.dataset.name})"
        )
    if run.downsample.name != "none":
        raise ConfigError(
            f"downsample={run.downsample.name} shapes the scratch CNN only; backbone={backbone.name} "
            "downsamples itself (use downsample=none)"
        )
    key = "backbone.input_size" if backbone.input_size else "dataset.image_size"
    size = model_input_size(run)
    if min(size) < spec.min_size:
        raise ConfigError(
            f"{key}={list(size)}: backbone={backbone.name} needs images of at least "
            f"{spec.min_size}x{spec.min_size} pixels; set backbone.input_size=[224, 224] (ImageNet's size) "
            f"or any size from [{spec.min_size}, {spec.min_size}] up"
        )
    if backbone.weights not in ("imagenet", None):
        _check_weights_file(backbone.weights)
    alpha = getattr(backbone, "alpha", None)
    if backbone.weights == "imagenet" and spec.imagenet_alphas and alpha not in spec.imagenet_alphas:
        raise ConfigError(
            f"backbone.alpha={alpha}: ImageNet weights for backbone={backbone.name} exist for alpha "
            f"{', '.join(map(str, spec.imagenet_alphas))}; use one of those or backbone.weights=null"
        )
    takes_size = size[0] == size[1] and size[0] in spec.imagenet_sizes
    if run.task == "predict" and backbone.weights == "imagenet" and not takes_size:
        sides = ", ".join(f"[{s}, {s}]" for s in spec.imagenet_sizes)
        raise ConfigError(
            f"{key}={list(size)}: backbone={backbone.name}'s ImageNet classifier takes {sides} (task=predict)"
        )


def _check_weights_file(weights: str) -> None:
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"backbone.weights={weights!r}: no such file (expected imagenet, null, or a weights file)"
        )
    if not path.name.endswith((".h5", ".hdf5", ".keras")):
        raise ConfigError(
            f"backbone.weights={weights!r}: Keras loads weights from .weights.h5, Keras 2 .h5 or .keras files"
        )


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


def check_overrides(lines: list[str]) -> None:
    """Rejects a group option or a config key that does not exist, in one line, before Hydra runs.

    ``optimizer=rmsprop`` lists the options; ``trainer.foo=1`` names the nearest valid keys.
    """
    from pipeline import overrides

    groups = {group: group_options(group) for group in (*GROUPS, "experiment")}
    overrides.check(lines, groups, known_keys())


@functools.cache
def known_keys() -> dict[str, set[str]]:
    """Every top-level node's dotted keys, from ``conf/`` (a group's keys: all its options')."""
    from omegaconf import OmegaConf

    root = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "config.yaml"))
    keys = {
        name: set(_dotted(node, name)) for name, node in root.items() if name not in ("defaults", "hydra")
    }
    for group in GROUPS:
        keys[group] = {key for p in (CONF_DIR / group).glob("*.yaml") for key in _dotted(_load(p), group)}
    keys["experiment"] = set()
    return keys


def _load(path: Path) -> dict:
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(OmegaConf.load(path))
    return {k: v for k, v in node.items() if k != "defaults"}


def _dotted(node: Any, prefix: str) -> list[str]:
    if not isinstance(node, dict):
        return []
    keys = []
    for key, value in node.items():
        keys.append(f"{prefix}.{key}")
        keys.extend(_dotted(value, f"{prefix}.{key}"))
    return keys


def register_resolvers() -> None:
    """``${convlab_uid:}``: a short random id, drawn once per config (Hydra copies the cache into
    every job's config), so two sweeps started in the same second get their own folders."""
    import uuid

    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("convlab_uid"):
        OmegaConf.register_new_resolver("convlab_uid", lambda: uuid.uuid4().hex[:6], use_cache=True)


register_resolvers()
