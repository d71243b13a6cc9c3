"""One training run, top to bottom: seed, data, model, fit, evaluate, log.

``train(run, info)`` takes a validated ``RunConfig`` plus what Hydra knows about the run
(choices, overrides, output folder, sweep) and returns a ``RunResult``. It is called by the
CLI (``python -m pipeline``) and by the Python API (``pipeline.run``) alike.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import subprocess
import time
from pathlib import Path

import numpy as np

from pipeline import config as config_module
from pipeline.schemas import RunConfig

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What the launcher knows about a run, beyond its config."""

    choices: dict[str, str]  # group -> chosen option
    overrides: list[str]  # as typed on the command line (or passed to ``run``)
    output_dir: Path | None  # holds Hydra's .hydra/ folder
    params: dict  # the whole composed config, to log as params
    variant: str  # short label: the overrides that define the variant, seed left out
    sweep_tags: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RunResult:
    run_id: str
    experiment_id: str
    status: str
    metrics: dict[str, float]  # final epoch's metrics, plus best_val_accuracy / best_epoch
    history: dict[str, list[float]]
    model_uri: str | None = None


def train(run: RunConfig, info: RunInfo) -> RunResult:
    """Trains and logs one run; the MLflow run ends FINISHED, FAILED or KILLED."""
    from pipeline import tracking

    started = time.perf_counter()
    tags = _tags(run, info)
    run_name = run.tracking.run_name or info.variant
    with tracking.run_context(run.tracking.uri, run.tracking.experiment_name, run_name, tags) as active:
        tracking.log_params(tracking.flatten(info.params))
        if info.output_dir is not None:
            tracking.log_artifacts(info.output_dir / ".hydra", ".hydra")
        if run.task == "predict":
            from pipeline import predict

            result = predict.predict_and_log(run, active)
        else:
            result = _fit_and_log(run, info, active)
        tracking.log_metrics({"run_seconds": time.perf_counter() - started})
    return dataclasses.replace(result, status="FINISHED")


def _fit_and_log(run: RunConfig, info: RunInfo, active) -> RunResult:
    from pipeline import data as data_module
    from pipeline import tracking
    from pipeline.augment import build_augmentation

    acc = run.accelerator
    strategy = setup_keras(run)

    data = _load_data(run)
    tracking.log_dataset(data.name, data.source, data.digest(), data.x_train, data.y_train, "training")
    if data.from_files:
        tracking.log_metrics({"dataset.skipped_files": data.skipped_files})
    _warn_on_flips(run)
    aug = run.augmentation
    augment = build_augmentation(
        aug.horizontal_flip, aug.width_shift, aug.height_shift, aug.rotation, run.seed
    )
    with strategy.scope():
        model = build_model(run, (*data.image_size, data.channels), data.num_classes)
        # What fit() trains: the whole model on images, or its head on backbone features computed once.
        trainee, fit_data = _head_and_features(run, model, data) if _caches_features(run) else (model, data)
    train_ds, val_ds = data_module.to_tf_datasets(fit_data, run.trainer.batch_size, run.seed, augment)
    if run.trainer.steps_per_epoch:
        train_ds = train_ds.repeat()
    with strategy.scope():
        trainee.compile(
            optimizer=build_optimizer(run.optimizer),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=acc.jit_compile,
        )
    trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    tracking.log_metrics({"parameter_count": model.count_params(), "trainable_parameter_count": trainable})
    train_images = len(data.y_train)
    if run.trainer.steps_per_epoch:
        train_images = min(train_images, run.trainer.steps_per_epoch * run.trainer.batch_size)
    fit = trainee.fit(
        train_ds,
        validation_data=val_ds,
        epochs=run.trainer.epochs,
        steps_per_epoch=run.trainer.steps_per_epoch,
        shuffle=False,  # the tf.data pipeline shuffles, seeded
        callbacks=[tracking.epoch_logger(train_images)],
        verbose=2 if os.environ.get("CONVLAB_VERBOSE") else 0,
    )
    history = {k: [float(v) for v in values] for k, values in fit.history.items() if k != "learning_rate"}

    probabilities = trainee.predict(val_ds, verbose=0)
    _log_figures(model, data, history, probabilities)
    best = int(np.argmax(history["val_accuracy"]))
    metrics = {k: values[-1] for k, values in history.items()}
    metrics |= {"best_val_accuracy": history["val_accuracy"][best], "best_epoch": best + 1}
    tracking.log_metrics({"best_val_accuracy": metrics["best_val_accuracy"], "best_epoch": best + 1})
    if data.x_test is not None:
        _log_predictions(model, data.x_test)
    model_uri = None
    if run.tracking.log_model:
        example = _first_val_image(data)[None]
        model_uri = tracking.log_keras_model(model, example, probabilities[:1])
    log.info("run %s: val_accuracy=%.4f", active.info.run_id, metrics["val_accuracy"])
    return RunResult(active.info.run_id, active.info.experiment_id, "RUNNING", metrics, history, model_uri)


def setup_keras(run: RunConfig):
    """Device, float policy, seed and determinism for a run; returns its ``tf.distribute`` strategy."""
    import keras
    import tensorflow as tf

    from pipeline import accelerator, tracking

    acc = run.accelerator
    strategy, device = accelerator.configure(acc.name, acc.mixed_precision, acc.devices, acc.logical_cpus)
    keras.config.disable_interactive_logging()  # no progress bars from predict() calls
    # Runs sharing a process (sweeps, scripts) retrace Keras' step functions: expected, not a bug.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    keras.backend.clear_session(free_memory=False)  # fresh layer names and graph per run
    keras.utils.set_random_seed(run.seed)
    _set_determinism(tf, run.trainer.deterministic, acc.jit_compile)
    tracking.set_tags({f"convlab.accelerator.{k}": v for k, v in device.items()})
    return strategy


def _set_determinism(tf, deterministic: bool, jit_compile: bool) -> None:
    """Same seed, same config, same machine: same metrics. XLA (jit_compile) refuses to run under
    op determinism, so with it on, runs are reproducible only up to float round-off."""
    from tensorflow.python.framework import config as tf_config

    if deterministic and jit_compile:
        log.warning("accelerator.jit_compile=true: op determinism is off, seeds reproduce runs approximately")
    if deterministic and not jit_compile:
        tf.config.experimental.enable_op_determinism()
    else:  # also between runs of one process: a previous run may have switched it on
        tf_config.disable_op_determinism()


def build_model(run: RunConfig, input_shape, num_classes: int):
    """The configured backbone + head, as a functional ``keras.Model``."""
    from pipeline import backbones, models

    down, reg, head = run.downsample, run.regularization, run.head
    if run.backbone.name in backbones.SPECS:  # pretrained: its own preprocessing and downsampling
        backbone = functools.partial(
            backbones.pretrained,
            **run.backbone.model_dump(exclude={"input_size"}),
            dropout_rate=getattr(reg, "rate", 0.0),
        )
    else:
        backbone = functools.partial(
            models.scratch_cnn,
            **run.backbone.model_dump(exclude={"name"}),
            strides=getattr(down, "strides", 1),
            pool_size=getattr(down, "pool_size", None),
            dropout_rate=getattr(reg, "rate", 0.0),
        )
    return models.build_model(
        input_shape, num_classes, backbone, getattr(head, "units", None), getattr(head, "activation", "relu")
    )


def _caches_features(run: RunConfig) -> bool:
    """A frozen pretrained backbone without augmentation gives the same features every epoch."""
    frozen = getattr(run.backbone, "trainable", None) == 0
    return run.trainer.cache_features and frozen and not run.augmentation.enabled


def _head_and_features(run: RunConfig, model, data):
    """``model``'s head, and ``data`` with images replaced by backbone features (computed once)."""
    import keras

    from pipeline import backbones, features, tracking
    from pipeline import data as data_module

    started = time.perf_counter()
    extractor, head = backbones.split_at_features(model)
    shape = (*data.image_size, data.channels)
    files = [*data.x_train, *data.x_val] if data.from_files else []
    policy = keras.mixed_precision.global_policy().name
    key = features.cache_key(run.backbone.model_dump(), data.digest(), shape, policy, run.seed, files)

    def images(x, y):
        return data_module.image_dataset(data, x, y).batch(run.trainer.batch_size).prefetch(2)

    x_train, x_val, source = features.extract(
        extractor, images(data.x_train, data.y_train), images(data.x_val, data.y_val), key,
        run.trainer.feature_cache_dir,
    )  # fmt: skip
    tracking.set_tags({"convlab.feature_cache": source, "convlab.feature_cache_key": key})
    tracking.log_metrics({"feature_seconds": time.perf_counter() - started})
    return head, dataclasses.replace(data, x_train=x_train, x_val=x_val)


def build_optimizer(optimizer):
    import keras

    kwargs = optimizer.model_dump(exclude={"name"})
    return keras.optimizers.Adam(**kwargs) if optimizer.name == "adam" else keras.optimizers.SGD(**kwargs)


def _load_data(run: RunConfig):
    from pipeline import data as data_module

    ds = run.dataset
    return data_module.load(
        ds.name,
        config_module.model_input_size(run),
        run.trainer.validation_split,
        run.trainer.split_seed if run.trainer.split_seed is not None else run.seed,
        max_samples=ds.max_samples,
        path=getattr(ds, "path", None),
        test_path=getattr(ds, "test_path", None),
        color_mode=getattr(ds, "color_mode", "grayscale"),
    )


def _warn_on_flips(run: RunConfig) -> None:
    if run.augmentation.horizontal_flip and not run.dataset.mirror_invariant:
        log.warning(
            "augmentation=%s flips images left-right, but dataset=%s labels are not "
            "mirror-invariant (a mirrored digit is not the same digit): consider augmentation=shift_rotate",
            run.augmentation.name,
            run.dataset.name,
        )


def _log_figures(model, data, history, probabilities) -> None:
    from pipeline import figures, tracking

    tracking.log_figure(figures.learning_curves(history), "figures/learning_curves.png")
    predicted = probabilities.argmax(axis=1)
    tracking.log_figure(
        figures.confusion_matrix(data.y_val, predicted, data.class_names), "figures/confusion_matrix.png"
    )
    conv = next((layer for layer in model.layers if "conv" in type(layer).__name__.lower()), None)
    if conv is not None and len(conv.get_weights()[0].shape) == 4:
        import keras

        image = _first_val_image(data)
        probe = keras.Model(model.inputs, conv.output)
        maps = probe.predict(image[None], verbose=0)[0]
        fig = figures.filters_and_feature_maps(conv.get_weights()[0], image, maps)
        tracking.log_figure(fig, "figures/filters_and_feature_maps.png")


def _first_val_image(data) -> np.ndarray:
    if not data.from_files:
        return np.asarray(data.x_val[0], dtype="float32")
    from pipeline.data import decode_image

    return decode_image(data.x_val[0], data.image_size, data.channels).numpy()


def _log_predictions(model, x_test) -> None:
    import pandas as pd

    from pipeline import tracking

    labels = model.predict(x_test, verbose=0, batch_size=256).argmax(axis=1)
    frame = pd.DataFrame({"ImageId": np.arange(1, len(labels) + 1), "Label": labels})
    tracking.log_text(frame.to_csv(index=False), "predictions/submission.csv")


def _tags(run: RunConfig, info: RunInfo) -> dict[str, str]:
    tags = {f"convlab.group.{group}": option for group, option in info.choices.items()}
    tags |= {
        "convlab.variant": info.variant,
        "convlab.seed": str(run.seed),
        "convlab.overrides": " ".join(info.overrides) or "(defaults)",
    }
    commit = _git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags | info.sweep_tags


@functools.cache
def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=config_module.PACKAGE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
