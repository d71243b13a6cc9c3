"""A study's trial, reported from inside the training loop: each epoch's val_accuracy, and pruning.

``callbacks(epochs)`` is empty outside a study (``hydra/sweeper=optuna``). In a trial it returns
one Keras callback that tags the run with its study and trial, reports val_accuracy to the
study's storage at every epoch end (step = epoch), and, when the study's pruner says so, stops
training after that epoch: the run ends FINISHED, tagged ``convlab.pruned_at_epoch``, and the
comparison never counts it (``pipeline.compare``).
"""

from __future__ import annotations

import logging
import os

from pipeline import contract
from pipeline._study import studies
from pipeline import tracking

log = logging.getLogger(__name__)


def callbacks(epochs: int) -> list:
    trial = studies.current_trial(epochs)
    if trial is None:
        return []
    import keras

    class ReportToStudy(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            tracking.set_tags(
                {contract.STUDY: os.environ[contract.ENV_STUDY], contract.TRIAL: str(trial.number)}
            )

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(contract.VAL_ACCURACY)
            if value is None:
                return
            trial.report(float(value), step=epoch + 1)
            if epoch + 1 < epochs and trial.should_prune():
                trial.set_user_attr(studies.PRUNED_AT_ATTR, epoch + 1)
                tracking.set_tags({contract.PRUNED_AT_EPOCH: str(epoch + 1)})
                log.info("trial %d pruned after epoch %d (val_accuracy %.4f)", trial.number, epoch + 1, value)
                self.model.stop_training = True

    return [ReportToStudy()]
