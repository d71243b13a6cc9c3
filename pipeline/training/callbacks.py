"""The Keras callbacks of a training run: validation scored once per epoch, each epoch logged,
and in a study's trial each epoch reported to the study, which may prune it.

``train`` hands them to ``fit``; they call ``pipeline.tracking`` to write, so nothing in the
tracking floor needs Keras.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from pipeline.tracking import contract, lifecycle, record, studies

log = logging.getLogger(__name__)

EPSILON = 1e-7  # Keras clips probabilities so in its cross-entropy


def epoch_logger(train_images: int, log_setup: bool = True, logged_through: int = 0):
    """A Keras callback logging each epoch: loss, accuracy, val_*, learning_rate, epoch_seconds and
    images_per_second (training images over training time, validation excluded), step = epoch; at
    the start, the optimizer's settings (params ``opt_*``) and the model's summary
    (``model_summary.txt``), as MLflow's own ``MlflowCallback`` does, unless ``log_setup`` is False
    (a second fit in the same run, or a resumed run: MLflow params cannot change). The epochs up to
    ``logged_through``, which a killed process logged after its last checkpoint, are not logged
    again: no step twice. Calls made before the run is open are queued."""
    import keras

    class EpochLogger(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            if not log_setup:
                return
            config = self.model.optimizer.get_config()
            record.log_params({f"opt_{k}": v for k, v in config.items()})
            lines: list[str] = []
            self.model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
            record.log_text("\n".join(lines), "model_summary.txt")

        train_seconds: list[float] = []  # per epoch, validation excluded

        def on_epoch_begin(self, epoch, logs=None):
            self._started = self._trained = time.perf_counter()

        def on_test_begin(self, logs=None):
            self._trained = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            train_seconds = (self._trained if self._trained > self._started else now) - self._started
            metrics = {k: float(v) for k, v in (logs or {}).items()}
            metrics[contract.EPOCH_SECONDS] = now - self._started
            metrics[contract.IMAGES_PER_SECOND] = train_images / max(train_seconds, 1e-9)
            self.train_seconds = [*self.train_seconds, train_seconds]
            if epoch + 1 > logged_through:
                record.log_metrics(metrics, step=epoch + 1)

        def on_train_end(self, logs=None):
            lifecycle.wait()  # what waited for the run is logged now, in order

    return EpochLogger()


def val_scorer(model, batches, labels: np.ndarray, started=lambda: None, f1: bool = False):
    """A callback adding ``val_loss``/``val_accuracy`` to each epoch's logs, as ``fit``'s
    ``validation_data`` would (same numbers, float tolerance), keeping the epoch's probabilities.

    ``batches``: the validation inputs, ``(x, ...)`` tuples in order (a batched ``tf.data``
    pipeline, or one precomputed array of features, which goes through the model in one eager
    call). Batches go through one ``tf.function`` of the model, traced once: about twice as fast
    as Keras' own validation pass, four times an eager call per batch. ``started()`` is called
    as validation starts (the epoch's training ended). ``f1``: also ``val_macro_f1`` and
    ``val_weighted_f1`` each epoch (scikit-learn's), for a study whose objective is one of them.
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
            if f1:
                logs.update(_f1_scores(labels, probabilities))

    return ValScorer()


def _f1_scores(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    from sklearn import metrics

    classes, predicted = np.arange(probabilities.shape[1]), probabilities.argmax(axis=1)
    return {
        f"{contract.VAL_PREFIX}{average}_f1": float(
            metrics.f1_score(labels, predicted, labels=classes, average=average, zero_division=0)
        )
        for average in ("macro", "weighted")
    }


def predict_eagerly(model, dataset) -> np.ndarray:
    """``model.predict`` without tracing a predict function (seconds for a backbone, used once)."""
    import keras

    batches = [keras.ops.convert_to_numpy(model(x, training=False)) for x, *_ in dataset]
    return np.concatenate(batches)


def trial_reporters(epochs: int, metric: str = contract.VAL_ACCURACY) -> list:
    """In a study's trial (``hydra/sweeper=optuna``), a callback that tags the run with its study
    and trial, reports each epoch's ``metric`` to the study's storage (step = epoch) and, when
    the study's pruner says so, stops training after that epoch: the run ends FINISHED, tagged
    ``convlab.pruned_at_epoch``, and no comparison counts it. Outside a study: none."""
    trial = studies.current_trial(epochs)
    if trial is None:
        return []
    import keras

    class ReportToStudy(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            study = os.environ[contract.ENV_STUDY]
            record.set_tags({contract.STUDY: study, contract.TRIAL: str(trial.number)})

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(metric)
            if value is None:
                return
            trial.report(float(value), step=epoch + 1)
            if epoch + 1 < epochs and trial.should_prune():
                trial.set_user_attr(studies.PRUNED_AT_ATTR, epoch + 1)
                record.set_tags({contract.PRUNED_AT_EPOCH: str(epoch + 1)})
                log.info("trial %d pruned after epoch %d (%s %.4f)", trial.number, epoch + 1, metric, value)
                self.model.stop_training = True

    return [ReportToStudy()]


def early_stopping(monitor: str, patience: int, min_delta: float, epochs: int):
    """Keras' ``EarlyStopping(restore_best_weights=True)``, its state kept in the run's checkpoint.

    After ``fit`` the model holds the best epoch's weights (Keras restores them whatever ended
    training: patience or the last epoch). ``epochs``: for the log line.
    """
    import keras

    class BestWeights(keras.callbacks.EarlyStopping):
        def __init__(self):
            super().__init__(
                monitor=monitor, min_delta=min_delta, patience=patience, restore_best_weights=True
            )

        def on_train_end(self, logs=None):
            super().on_train_end(logs)
            if self.stopped_epoch:
                log.info("early stopping after epoch %d of %d: best %s at epoch %d",
                         self.stopped_epoch + 1, epochs, monitor, self.best_epoch + 1)  # fmt: skip

        def checkpoint_state(self) -> dict:
            best = None if self.best is None else float(self.best)
            return {"wait": self.wait, "best": best, "best_epoch": self.best_epoch,
                    "stopped_epoch": self.stopped_epoch}  # fmt: skip

        def restore_checkpoint_state(self, state: dict) -> None:
            self.wait, self.best_epoch, self.stopped_epoch = (
                state["wait"],
                state["best_epoch"],
                state["stopped_epoch"],
            )
            self.best = state["best"]

        def checkpoint_arrays(self) -> list:
            return list(self.best_weights or [])

        def restore_checkpoint_arrays(self, arrays: list) -> None:
            self.best_weights = arrays or None

    return BestWeights()
