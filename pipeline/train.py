"""The fit step of a training run: data -> model -> compile -> fit -> evaluate and log.

``runner.execute`` opens the MLflow run, sets up Keras and calls ``train(run, strategy)``;
``wiring`` turns the config into the data, model, optimizer and augmentation used here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time

import numpy as np

from pipeline import contract
from pipeline.schemas import PretrainedConfig, RunConfig

EPSILON = 1e-7  # Keras clips probabilities so in its cross-entropy
Outcome = tuple[dict[str, float], dict[str, list[float]], str | None]  # metrics, history, model URI


def train(run: RunConfig, strategy) -> Outcome:
    """Trains the configured model under ``strategy``; returns final metrics, history and model URI."""
    from pipeline import artifacts, lifecycle, tracking, wiring
    from pipeline import data as data_module

    data = wiring.load_data(run)
    _log_data(data)
    augment = wiring.build_augmentation(run)
    with strategy.scope():
        model = wiring.build_model(run, (*data.image_size, data.channels), data.num_classes)
        # What fit() trains: the whole model on images, or its head on backbone features computed once.
        trainee, fit_data = _cached_head(run, model, data) if run.caches_features else (model, data)
        # Frozen backbone with augmentation: the validation images never change, nor their features.
        on_features = _val_features(run, model, data) if _scores_val_on_features(run) else None
    lifecycle.open_in_background()  # MLflow loads while the model trains (TensorFlow lets go of the GIL)
    train_ds, val_ds = data_module.to_tf_datasets(
        fit_data, run.trainer.batch_size, run.seed, augment, val=on_features is None
    )
    if run.trainer.steps_per_epoch:
        train_ds = train_ds.repeat()
    with strategy.scope():
        trainee.compile(
            optimizer=wiring.build_optimizer(run.optimizer),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=run.accelerator.jit_compile,
        )
    _log_parameter_counts(model)
    # Validation scored by a callback that keeps the last epoch's probabilities (for the figures
    # and the logged model's signature): no second pass over the validation set after fit().
    logger = tracking.epoch_logger(_train_images(run, len(data.y_train)))
    batches = on_features or (trainee, val_ds)
    scorer = val_scorer(*batches, np.asarray(fit_data.y_val), started=logger.on_test_begin)
    fit = trainee.fit(
        train_ds,
        epochs=run.trainer.epochs,
        steps_per_epoch=run.trainer.steps_per_epoch,
        shuffle=False,  # the tf.data pipeline shuffles, seeded
        callbacks=[scorer, logger],  # val_* into the epoch's logs, then logged
        verbose=2 if os.environ.get("CONVLAB_VERBOSE") else 0,
    )
    history = {k: [float(v) for v in values] for k, values in fit.history.items() if k != "learning_rate"}

    probabilities = scorer.probabilities
    artifacts.log_figures(model, data, history, probabilities)
    metrics = _final_metrics(history)
    if data.x_test is not None:
        artifacts.log_submission(model, data.x_test)
    model_uri = None
    if run.tracking.log_model:  # at the last epoch's step: the logged model carries the final metrics
        example, epochs = artifacts.first_val_image(data)[None], len(history[contract.LOSS])
        model_uri = tracking.log_keras_model(model, example, probabilities[:1], epochs, data.class_names)
    return metrics, history, model_uri


def _log_data(data) -> None:
    """The training and validation sets as MLflow inputs, and the files skipped while reading."""
    from pipeline import tracking

    digest = data.digest()
    tracking.log_dataset(data.name, data.source, digest, data.x_train, data.y_train, contract.TRAINING)
    # MLflow keeps one input per (name, digest): the validation set gets a digest of its own.
    val_digest = hashlib.sha256(f"{digest}:{contract.VALIDATION}".encode()).hexdigest()[:16]
    tracking.log_dataset(data.name, data.source, val_digest, data.x_val, data.y_val, contract.VALIDATION)
    if data.from_files:
        tracking.log_metrics({contract.SKIPPED_FILES: data.skipped_files})


def _log_parameter_counts(model) -> None:
    from pipeline import tracking

    trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    counts = {contract.PARAMETER_COUNT: model.count_params(), contract.TRAINABLE_PARAMETER_COUNT: trainable}
    tracking.log_metrics(counts)


def _train_images(run: RunConfig, available: int) -> int:
    """Training images seen per epoch: all of them, or ``steps_per_epoch`` batches."""
    if run.trainer.steps_per_epoch:
        return min(available, run.trainer.steps_per_epoch * run.trainer.batch_size)
    return available


def _final_metrics(history: dict[str, list[float]]) -> dict[str, float]:
    """The last epoch's metrics plus the best epoch's val_accuracy (logged once)."""
    from pipeline import tracking

    best = int(np.argmax(history[contract.VAL_ACCURACY]))
    best_metrics = {
        contract.BEST_VAL_ACCURACY: history[contract.VAL_ACCURACY][best],
        contract.BEST_EPOCH: best + 1,
    }
    tracking.log_metrics(best_metrics)
    return {k: values[-1] for k, values in history.items()} | best_metrics


def _cached_head(run: RunConfig, model, data):
    """``model``'s head, and ``data`` with images replaced by backbone features (computed once)."""
    import keras

    from pipeline import features, tracking

    started = time.perf_counter()
    policy = keras.mixed_precision.global_policy().name
    backbone = run.backbone.model_dump()
    head, x_train, x_val, source, key = features.head_and_features(
        model, data, backbone, policy, run.seed, run.trainer.batch_size, run.trainer.feature_cache_dir
    )
    tracking.set_tags({contract.FEATURE_CACHE: source, contract.FEATURE_CACHE_KEY: key})
    tracking.log_metrics({contract.FEATURE_SECONDS: time.perf_counter() - started})
    return head, dataclasses.replace(data, x_train=x_train, x_val=x_val)


def _scores_val_on_features(run: RunConfig) -> bool:
    """A frozen pretrained backbone with augmentation: only the training images change per epoch."""
    backbone = run.backbone
    frozen = isinstance(backbone, PretrainedConfig) and backbone.trainable == 0
    return run.trainer.cache_features and frozen and run.augmentation.enabled and not run.caches_features


def _val_features(run: RunConfig, model, data):
    """``model``'s head and the validation images' backbone features, computed once."""
    from pipeline import backbones
    from pipeline import data as data_module

    extractor, head = backbones.split_at_features(model)
    images = data_module.image_dataset(data, data.x_val, data.y_val).batch(run.trainer.batch_size)
    features = predict_eagerly(extractor, images.prefetch(2))
    return head, [(features,)]


def val_scorer(model, batches, labels: np.ndarray, started=lambda: None):
    """A callback adding ``val_loss``/``val_accuracy`` to each epoch's logs, as ``fit``'s
    ``validation_data`` would (same numbers, float tolerance), keeping the epoch's probabilities.

    ``batches``: the validation inputs, ``(x, ...)`` tuples in order (a batched ``tf.data``
    pipeline, or one precomputed array of features, which goes through the model in one eager
    call). Batches go through one ``tf.function`` of the model, traced once: about twice as fast
    as Keras' own validation pass, four times an eager call per batch. ``started()`` is called
    as validation starts (the epoch's training ended).
    """
    import keras
    import tensorflow as tf

    call = model if isinstance(batches, list) else tf.function(model, reduce_retracing=True)

    class ValScorer(keras.callbacks.Callback):
        probabilities: np.ndarray

        def on_epoch_end(self, epoch, logs=None):
            started()
            self.probabilities = np.concatenate(
                [keras.ops.convert_to_numpy(call(x, training=False)) for x, *_ in batches]
            )
            probabilities = self.probabilities.astype("float64")
            picked = np.clip(probabilities[np.arange(len(labels)), labels], EPSILON, 1 - EPSILON)
            logs[contract.VAL_LOSS] = float(-np.log(picked).mean())
            logs[contract.VAL_ACCURACY] = float((probabilities.argmax(axis=1) == labels).mean())

    return ValScorer()


def predict_eagerly(model, dataset) -> np.ndarray:
    """``model.predict`` without tracing a predict function (seconds for a backbone, used once)."""
    import keras

    batches = [keras.ops.convert_to_numpy(model(x, training=False)) for x, *_ in dataset]
    return np.concatenate(batches)
