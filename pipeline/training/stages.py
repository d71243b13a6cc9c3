"""Two-stage fine-tuning, as in Keras' transfer-learning guide: stage 1 (``train``) fits the head on
the frozen backbone, from cached features when it can; stage 2 (here) unfreezes the backbone's
last ``fine_tune.layers`` layers, BatchNorm still frozen, and fits the whole model on images
(augmented if ``augmentation`` is set) at ``optimizer.learning_rate x fine_tune.learning_rate_factor``
for ``fine_tune.epochs`` more epochs, the schedule restarting from that rate.

Both stages log into the same run at consecutive steps (stage 2's first epoch is step
``trainer.epochs + 1``), each epoch marked with its ``stage``.

    python -m pipeline dataset=image_folder dataset.path=DIR backbone=mobilenet_v2 fine_tune.epochs=3
"""

from __future__ import annotations

import os

import numpy as np

from pipeline.data import sources
from pipeline.model import backbones
from pipeline.tracking import contract, record
from pipeline.training import callbacks, schedules
from pipeline.training.wiring import Plan

FIRST, SECOND = 1, 2


def first_stage(plan: Plan) -> int | None:
    """The stage mark of the first fit's epochs: None in a one-stage run."""
    return FIRST if plan.fine_tune else None


def total_epochs(plan: Plan) -> int:
    return plan.epochs + (plan.fine_tune.epochs if plan.fine_tune else 0)


def second_stage(plan: Plan, strategy, model, data, augmentation, train_images: int, reporters: list):
    """Unfreezes ``model``'s backbone and fits it on ``data``'s images for the second stage.

    Returns:
        ``(scorer, history)``: the stage's validation scorer (its last probabilities) and its
        per-epoch history, to append to the first stage's.
    """
    tuning = plan.fine_tune
    train_ds, val_ds = sources.to_tf_datasets(data, plan.batch_size, plan.seed, augmentation)
    if plan.steps_per_epoch:
        train_ds = train_ds.repeat()
    steps = schedules.steps_per_epoch(len(data.y_train), plan.batch_size, plan.steps_per_epoch)
    with strategy.scope():
        backbones.unfreeze(model, tuning.layers)
        model.compile(
            optimizer=schedules.optimizer(
                plan.optimizer, plan.schedule, tuning.epochs, steps, tuning.learning_rate_factor
            ),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=plan.jit_compile,
        )
    trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    record.log_metrics({contract.TRAINABLE_PARAMETER_COUNT: trainable}, step=plan.epochs + 1)
    logger = callbacks.epoch_logger(train_images, log_setup=False)  # the run's params are logged
    scorer = callbacks.val_scorer(model, val_ds, np.asarray(data.y_val), started=logger.on_test_begin)
    fit = model.fit(
        train_ds,
        initial_epoch=plan.epochs,
        epochs=plan.epochs + tuning.epochs,
        steps_per_epoch=plan.steps_per_epoch,
        shuffle=False,
        callbacks=[scorer, *schedules.callbacks(plan.schedule, SECOND), logger, *reporters],
        verbose=2 if os.environ.get("CONVLAB_VERBOSE") else 0,
    )
    return scorer, fit.history
