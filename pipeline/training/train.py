"""One training run, top to bottom: data, model, fit, log.

``runner.execute`` opens the MLflow run, sets up Keras and calls ``train(plan, strategy)`` with
the ``wiring.Plan`` read from the config once; every step below takes the plan's plain values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time

import numpy as np

from pipeline.config.errors import DataError
from pipeline.data import augment, sources
from pipeline.model import backbones, features, scratch
from pipeline.tracking import contract, lifecycle, record
from pipeline.training import artifacts, callbacks, checkpoint, evaluate, mistakes, schedules, speed, stages
from pipeline.training.wiring import Plan

Outcome = tuple[dict[str, float], dict[str, list[float]], str | None]  # metrics, history, model URI


def train(plan: Plan, strategy, identity: dict[str, str], resumed: dict | None = None) -> Outcome:
    """Trains the planned model under ``strategy``; returns final metrics, history and model URI.

    ``identity``: the run's config, kept in its checkpoint; ``resumed``: the checkpoint's state to
    continue from (its epoch, history and callbacks' state), or None.
    """
    speed.reset_peak_memory()  # this run's peak, not an earlier run's in the same process
    first = resumed["epoch"] if resumed else 0  # epochs already trained
    # Data
    data = sources.load(**plan.data)
    if not resumed:  # logged by the run's first process
        _log_data(data)
    class_weight = _class_weight(data) if plan.class_weight else None
    augmentation = augment.build_augmentation(**plan.augmentation)
    # Model: what fit() trains is the whole model on images, or its head on backbone features
    # computed once; a frozen backbone with augmentation scores validation on features computed once.
    with strategy.scope():
        model = scratch.build_model(
            (*data.image_size, data.channels), data.num_classes, plan.backbone, plan.head_units,
            plan.head_activation,
        )  # fmt: skip
        trainee, fit_data = _cached_head(plan, model, data) if plan.cache_features else (model, data)
        on_features = _val_features(plan, model, data) if plan.val_on_features else None
    lifecycle.open_in_background()  # MLflow loads while the model trains (TensorFlow lets go of the GIL)
    steps, passes, skip = _passes(plan, len(fit_data.y_train), first)
    train_ds, val_ds = sources.to_tf_datasets(
        fit_data, plan.batch_size, plan.seed, augmentation, val=on_features is None, passes=passes, skip=skip
    )
    with strategy.scope():
        trainee.compile(
            optimizer=schedules.optimizer(plan.optimizer, plan.schedule, plan.epochs, steps),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=plan.jit_compile,
        )
    if not resumed:
        _log_parameter_counts(model)
    # Fit: validation scored by a callback that keeps the last epoch's probabilities (for the
    # figures and the logged model's signature), so there is no second pass after fit().
    train_images = _train_images(plan, len(data.y_train))
    logger = callbacks.epoch_logger(
        train_images, log_setup=resumed is None, logged_through=(resumed or {}).get("logged_through", 0)
    )
    scorer = callbacks.val_scorer(
        *(on_features or (trainee, val_ds)),
        np.asarray(fit_data.y_val),
        started=logger.on_test_begin,
        f1=plan.objective.endswith("_f1"),  # a study's objective: per epoch
    )
    reporters = callbacks.trial_reporters(stages.total_epochs(plan), plan.objective)
    stopper = [callbacks.early_stopping(*plan.early_stopping, plan.epochs)] if plan.early_stopping else []
    rates = schedules.callbacks(plan.schedule, stages.first_stage(plan))  # the rate (and its plateau)
    fitting = [scorer, *rates, logger, *reporters, *stopper]  # val_*, the rate, logged, reported
    stateful = [callback for callback in fitting if hasattr(callback, "checkpoint_state")]
    # a two-stage run writes no checkpoint: its second stage is a fit of its own (a resume reruns it)
    every = math.inf if plan.fine_tune else plan.checkpoint_every
    saver = checkpoint.checkpointer(
        plan.checkpoint_dir, lifecycle.run_id, every, plan.epochs, identity, stateful, resumed
    )
    trainee.fit(
        train_ds,
        epochs=plan.epochs,
        initial_epoch=first,
        steps_per_epoch=steps,
        shuffle=False,  # the tf.data pipeline shuffles, seeded
        callbacks=[*fitting, saver],  # the checkpoint last: it saves what the others did
        class_weight=class_weight,
        verbose=2 if os.environ.get("CONVLAB_VERBOSE") else 0,
    )
    record.log_metrics({contract.CHECKPOINT_SECONDS: saver.seconds})
    history = _history({k: [epoch[k] for epoch in saver.history] for k in saver.history[-1]})
    if plan.fine_tune and not trainee.stop_training:  # a trial pruned in stage 1 ends there
        scorer, more = stages.second_stage(plan, strategy, model, data, augmentation, train_images, reporters)
        history = {k: values + _history(more).get(k, []) for k, values in history.items()}
    # Log: figures, final metrics, the Kaggle submission, the model
    if stopper:  # the model holds the best epoch's weights: score them, log when it stopped
        scorer.on_epoch_end(-1, {})
        record.log_metrics(
            {contract.STOPPED_EPOCH: stopper[0].stopped_epoch + 1 if stopper[0].stopped_epoch else 0}
        )
    probabilities = scorer.probabilities
    artifacts.log_figures(model, data, history, probabilities)
    # early stopping's best epoch (its min_delta counts) is the one whose weights the model holds;
    # a two-stage run's model holds its second stage's, which that stopper did not watch
    held = stopper[0].best_epoch if stopper and not plan.fine_tune else None
    metrics = _final_metrics(history, held)
    metrics |= _evaluate(plan, model, data, probabilities, history, logger.train_seconds)
    if data.y_test is not None:  # a held-out test set: scored once, never used to choose
        test_metrics, test_probabilities = artifacts.log_test_set(model, data, plan.batch_size)
        metrics |= test_metrics
        if plan.evaluate:
            metrics |= _evaluate_test(data, test_probabilities, metrics[contract.EVALUATION_SECONDS])
    elif data.x_test is not None and data.from_files:
        artifacts.log_test_predictions(model, data, plan.batch_size)
    elif data.x_test is not None:
        artifacts.log_submission(model, data.x_test)
    model_uri = None
    if plan.log_model:  # at the last epoch's step: the logged model carries the final metrics
        example, epochs = artifacts.first_val_image(data)[None], len(history[contract.LOSS])
        model_uri = record.log_keras_model(model, example, probabilities[:1], epochs, data.class_names)
    return metrics, history, model_uri


def _history(found: dict) -> dict[str, list[float]]:
    """A fit's per-epoch metrics, without the marks logged beside them (rate, stage)."""
    marks = (contract.LEARNING_RATE, contract.STAGE)
    return {k: [float(v) for v in values] for k, values in found.items() if k not in marks}


def _evaluate(plan: Plan, model, data, probabilities, history, train_seconds: list[float]) -> dict:
    """Per class, the mistakes with Grad-CAM, speed and memory: once, on the probabilities the
    scorer kept (no second pass); ``evaluation_seconds`` is what it added to the run."""
    started, metrics = time.perf_counter(), {}
    if plan.evaluate:
        names, prefix = data.class_names, contract.VAL_PREFIX
        metrics |= evaluate.log_evaluation(data.y_val, probabilities, names, prefix, skip=set(history))
        mistakes.log_mistakes(model, data, probabilities)  # Grad-CAM on the shown images only
        metrics |= speed.measure(model)  # inference time, size, peak memory
    timed = train_seconds[1:] or train_seconds  # the first epoch traces
    if timed:  # a resumed run times the epochs its own process trained
        metrics[contract.TRAIN_SECONDS_PER_EPOCH] = float(np.median(timed))
    record.log_metrics({k: metrics[k] for k in speed.LOGGED if k in metrics})
    if plan.evaluate:
        metrics[contract.EVALUATION_SECONDS] = time.perf_counter() - started
        record.log_metrics({contract.EVALUATION_SECONDS: metrics[contract.EVALUATION_SECONDS]})
    return metrics


def _evaluate_test(data, probabilities, seconds_before: float) -> dict:
    """The test set's per-class evaluation; its time added to ``evaluation_seconds``."""
    started = time.perf_counter()
    metrics = evaluate.log_evaluation(data.y_test, probabilities, data.class_names, contract.TEST_PREFIX)
    metrics[contract.EVALUATION_SECONDS] = seconds_before + time.perf_counter() - started
    record.log_metrics({contract.EVALUATION_SECONDS: metrics[contract.EVALUATION_SECONDS]})
    return metrics


def _passes(plan: Plan, images: int, first: int) -> tuple[int, tuple[int, int], int]:
    """Batches per epoch, the passes over the training set that epochs ``first..`` need, and the
    batches of the first pass already trained (``trainer.steps_per_epoch`` cuts passes)."""
    per_pass = -(-images // plan.batch_size)
    steps = plan.steps_per_epoch or per_pass
    done, total = first * steps, plan.epochs * steps
    return steps, (done // per_pass, -(-total // per_pass)), done % per_pass


def _log_data(data) -> None:
    """The training and validation sets as MLflow inputs, and the files skipped while reading."""
    digest = data.digest()
    record.log_dataset(data.name, data.source, digest, data.x_train, data.y_train, contract.TRAINING)
    # MLflow keeps one input per (name, digest): the validation set gets a digest of its own.
    val_digest = hashlib.sha256(f"{digest}:{contract.VALIDATION}".encode()).hexdigest()[:16]
    record.log_dataset(data.name, data.source, val_digest, data.x_val, data.y_val, contract.VALIDATION)
    if data.from_files:
        record.log_metrics({contract.SKIPPED_FILES: data.skipped_files})
    counts = np.bincount(np.asarray(data.y_train), minlength=len(data.class_names))
    names = map(contract.metric_safe, data.class_names)
    record.log_metrics({f"{contract.CLASS_COUNT}/{name}": int(count) for name, count in zip(names, counts)})


def _class_weight(data) -> dict[int, float]:
    """Inverse class frequency, as scikit-learn's ``balanced``: ``images / (classes * count)``."""
    counts = np.bincount(np.asarray(data.y_train), minlength=len(data.class_names))
    if np.count_nonzero(counts) < 2:
        raise DataError(
            f"trainer.class_weight=balanced needs at least 2 classes in the training set; "
            f"found {np.count_nonzero(counts)} ({', '.join(map(str, data.class_names))})"
        )
    weights = counts.sum() / (np.count_nonzero(counts) * np.maximum(counts, 1))
    return {index: float(weight) for index, weight in enumerate(weights)}


def _log_parameter_counts(model) -> None:
    trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    counts = {contract.PARAMETER_COUNT: model.count_params(), contract.TRAINABLE_PARAMETER_COUNT: trainable}
    record.log_metrics(counts)


def _train_images(plan: Plan, available: int) -> int:
    """Training images seen per epoch: all of them, or ``steps_per_epoch`` batches."""
    if plan.steps_per_epoch:
        return min(available, plan.steps_per_epoch * plan.batch_size)
    return available


def _final_metrics(history: dict[str, list[float]], best: int | None = None) -> dict[str, float]:
    """The last epoch's metrics plus the best epoch's val_accuracy (logged once). ``best``: the
    0-based epoch whose weights the model holds (early stopping's); else the highest val_accuracy's."""
    best = int(np.argmax(history[contract.VAL_ACCURACY])) if best is None else int(best)
    best_metrics = {
        contract.BEST_VAL_ACCURACY: history[contract.VAL_ACCURACY][best],
        contract.BEST_EPOCH: best + 1,
    }
    record.log_metrics(best_metrics)
    return {k: values[-1] for k, values in history.items()} | best_metrics


def _cached_head(plan: Plan, model, data):
    """``model``'s head, and ``data`` with images replaced by backbone features (computed once)."""
    import keras

    started = time.perf_counter()
    policy = keras.mixed_precision.global_policy().name
    head, x_train, x_val, source, key = features.head_and_features(
        model, data, plan.backbone_identity, policy, plan.seed, plan.batch_size, plan.feature_cache_dir
    )
    record.set_tags({contract.FEATURE_CACHE: source, contract.FEATURE_CACHE_KEY: key})
    record.log_metrics({contract.FEATURE_SECONDS: time.perf_counter() - started})
    return head, dataclasses.replace(data, x_train=x_train, x_val=x_val)


def _val_features(plan: Plan, model, data):
    """``model``'s head and the validation images' backbone features, computed once."""
    extractor, head = backbones.split_at_features(model)
    images = sources.image_dataset(data, data.x_val, data.y_val).batch(plan.batch_size)
    return head, [(callbacks.predict_eagerly(extractor, images.prefetch(2)),)]
