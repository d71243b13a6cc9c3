"""Typed, validated run configs: the composed Hydra config checked before TensorFlow loads.

Each config group option has a schema (``schemas``); ``validate`` turns the composed config into a
``RunConfig`` or raises ``ConfigError`` with one line naming the key, the value received and
what is allowed. ``check_overrides`` refuses, before Hydra runs, an override that names an
option or a key ``conf/`` does not offer (``catalog``). This module imports neither TensorFlow
nor MLflow.
"""

from __future__ import annotations

import logging
from typing import Any

import pydantic

from pipeline.config import overrides, stages
from pipeline.config.catalog import (  # CONF_DIR, group_options...: composition.X still names them
    CONF_DIR,  # noqa: F401
    EXPERIMENTS_DIR,
    PACKAGE_DIR,  # noqa: F401
    chosen_options,
    default_options,  # noqa: F401
    group_options,
    known_keys,
    option_keys,
)
from pipeline.config.errors import ConfigError
from pipeline.config.schemas import (
    GROUPS,
    MobileNetConfig,
    PretrainedConfig,
    RunConfig,
    ScratchCnnConfig,
    option_names,
)
from pipeline.config.sizes import SPECS, scratch_output_size

log = logging.getLogger(__name__)


def validate(cfg: Any) -> RunConfig:
    """Checks a composed config (DictConfig or dict, without ``hydra``) and types it.

    Raises:
        ConfigError: one line naming the key, the value received and what is allowed.
    """
    data = _to_plain_dict(cfg)
    data.pop("hydra", None)
    for group in GROUPS:
        node = data.get(group)
        if not isinstance(node, dict):
            raise ConfigError(f"{group}: missing from the config (choose one of the {group}/ options)")
        if node.get("name") not in option_names(group):
            allowed = ", ".join(option_names(group))
            raise ConfigError(f"{group}.name={node.get('name')!r} is not one of: {allowed}")
    try:
        run = RunConfig.model_validate(data)
    except pydantic.ValidationError as err:
        raise ConfigError(_one_line(err.errors()[0])) from None
    if run.task == "predict" and run.predict.model is not None:
        _check_scoring(run)
        return run
    if run.sweep.register_as is not None and not run.tracking.log_model:
        raise ConfigError(
            f"sweep.register={run.sweep.register_as} needs the runs' models: drop tracking.log_model=false"
        )
    _check_feature_maps(run)
    _check_pretrained(run)
    stages.check(run)  # the schedule and the fine-tuning stages
    _warn_on_flips(run)
    return run


def _check_scoring(run: RunConfig) -> None:
    """``task=predict predict.model=URI`` scores a Kaggle CSV or an image folder."""
    if run.dataset.name not in ("digit_recognizer", "image_folder"):
        raise ConfigError(
            f"predict.model scores a CSV (dataset=digit_recognizer dataset.path=test.csv) or a folder "
            f"(dataset=image_folder dataset.path=DIR); received dataset={run.dataset.name}"
        )


def _one_line(error: dict) -> str:
    """``backbone.kernel_size[0]=0: Input should be greater than 0``: key, value received, rule."""
    loc = list(error["loc"])
    if len(loc) > 1 and len(GROUPS.get(loc[0], ())) > 1:
        del loc[1]  # the discriminated union's tag: the option name, not a key
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else f".{part}"
    received = error.get("input")
    shown = "" if error["type"] == "missing" or isinstance(received, dict) else f"={received!r}"
    return f"{key.lstrip('.')}{shown}: {error['msg'].removeprefix('Value error, ')}"


def _check_feature_maps(run: RunConfig) -> None:
    """A scratch CNN whose convs and pools shrink the image to nothing cannot be built."""
    backbone = run.backbone
    if not isinstance(backbone, ScratchCnnConfig):
        return
    for side, kernel in zip(run.dataset.image_size, backbone.kernel_size):
        if scratch_output_size(side, backbone.conv_layers, kernel, run.conv_strides, run.pool_size) < 1:
            raise ConfigError(
                f"backbone.conv_layers={backbone.conv_layers}: with downsample={run.downsample.name} "
                f"and kernel {tuple(backbone.kernel_size)}, "
                f"dataset.image_size={list(run.dataset.image_size)} is too small "
                "(the feature maps shrink to nothing); use fewer layers or larger images"
            )


def _warn_on_flips(run: RunConfig) -> None:
    """Flipping images whose labels are not mirror-invariant changes labels: a warning, not an error."""
    if run.augmentation.horizontal_flip and not run.dataset.mirror_invariant:
        log.warning(
            "augmentation=%s flips images left-right, but dataset=%s labels are not "
            "mirror-invariant (a mirrored digit is not the same digit): consider augmentation=shift_rotate",
            run.augmentation.name,
            run.dataset.name,
        )


def _check_pretrained(run: RunConfig) -> None:
    """Pretrained backbones: input size, weights and the combinations Keras would reject."""
    backbone = run.backbone
    if not isinstance(backbone, PretrainedConfig):
        if run.task == "predict":
            raise ConfigError(
                f"task=predict needs an ImageNet classifier: choose backbone={', '.join(SPECS)} "
                f"(received backbone={backbone.name})"
            )
        return
    spec = SPECS[backbone.name]
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
    size = run.model_input_size
    if min(size) < spec.min_size:
        raise ConfigError(
            f"{key}={list(size)}: backbone={backbone.name} needs images of at least "
            f"{spec.min_size}x{spec.min_size} pixels; set backbone.input_size=[224, 224] (ImageNet's size) "
            f"or any size from [{spec.min_size}, {spec.min_size}] up"
        )
    mobilenet = isinstance(backbone, MobileNetConfig)
    if mobilenet and backbone.weights == "imagenet" and backbone.alpha not in spec.imagenet_alphas:
        raise ConfigError(
            f"backbone.alpha={backbone.alpha}: ImageNet weights for backbone={backbone.name} exist for alpha "
            f"{', '.join(map(str, spec.imagenet_alphas))}; use one of those or backbone.weights=null"
        )
    takes_size = size[0] == size[1] and size[0] in spec.imagenet_sizes
    if run.task == "predict" and backbone.weights == "imagenet" and not takes_size:
        sides = ", ".join(f"[{s}, {s}]" for s in spec.imagenet_sizes)
        raise ConfigError(
            f"{key}={list(size)}: backbone={backbone.name}'s ImageNet classifier takes {sides} (task=predict)"
        )


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

    ``optimizer=rmsprop`` lists the options; ``trainer.foo=1`` names the nearest valid keys of
    the chosen options; ``downsample.strides=3`` with ``downsample=none`` names the option that has it.
    """

    groups = {group: group_options(group) for group in (*GROUPS, "experiment")}
    overrides.check(lines, groups, known_keys(), option_keys(), chosen_options(lines))


def register_resolvers() -> None:
    """``${convlab_uid:}``: a short random id, drawn once per config (Hydra copies the cache into
    every job's config), so two sweeps started in the same second get their own folders."""
    import uuid

    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("convlab_uid"):
        OmegaConf.register_new_resolver("convlab_uid", lambda: uuid.uuid4().hex[:6], use_cache=True)


register_resolvers()
