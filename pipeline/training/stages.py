"""Two-stage fine-tuning, as in Keras' transfer-learning guide: stage 1 (``train``) fits the head on
the frozen backbone, from cached features when it can; stage 2 (here) unfreezes the backbone's
last ``fine_tune.layers`` layers, BatchNorm still frozen, and fits the whole model on images
(augmented if ``augmentation`` is set) at ``optimizer.learning_rate x fine_tune.learning_rate_factor``
for ``fine_tune.epochs`` more epochs, the schedule restarting from that rate.

Both stages log into the same run at consecutive steps (stage 2's first epoch is step
``trainer.epochs + 1``), each epoch marked with its ``stage``. Both write the run's checkpoint
(``checkpoint``): a run killed in stage 2 resumes in stage 2, from its last checkpoint; one
killed before stage 2's first checkpoint resumes from stage 1's last and trains stage 2 again.

    python -m pipeline dataset=image_folder dataset.path=DIR backbone=mobilenet_v2 fine_tune.epochs=3
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from pipeline.data import sources
from pipeline.model import backbones
from pipeline.tracking import contract, lifecycle, record
from pipeline.training import callbacks, checkpoint, schedules
from pipeline.training.wiring import Plan

FIRST, SECOND = 1, 2


def first_stage(plan: Plan) -> int | None:
    """The stage mark of the first fit's epochs: None in a one-stage run."""
    return FIRST if plan.fine_tune else None


def total_epochs(plan: Plan) -> int:
    return plan.epochs + (plan.fine_tune.epochs if plan.fine_tune else 0)


def resumes_second(plan: Plan, resumed: dict | None) -> bool:
    """A two-stage run resumed from a checkpoint of its second stage: its first stage is done."""
    return bool(plan.fine_tune and resumed and resumed.get("stage") == SECOND)


def passes(plan: Plan, images: int, first: int, end: int) -> tuple[int, tuple[int, int], int]:
    """Batches per epoch, the passes over the training set that epochs ``first..end`` need, and the
    batches of the first pass already trained (``trainer.steps_per_epoch`` cuts passes)."""
    per_pass = -(-images // plan.batch_size)
    steps = plan.steps_per_epoch or per_pass
    done, total = first * steps, end * steps
    return steps, (done // per_pass, -(-total // per_pass)), done % per_pass


def second_stage(plan: Plan, strategy, model, data, augmentation, fitted: Fitted, run: dict) -> Fitted:
    """Unfreezes ``model``'s backbone and fits it on ``data``'s images for the second stage.

    Args:
        fitted: the first stage's outcome (its epochs' logs), or a second-stage checkpoint's.
        run: what every fit of the run shares: ``train_images``, ``reporters``, ``identity``
            and ``resumed`` (the checkpoint's state, or None).

    Returns:
        The stage's validation scorer (its last probabilities), every epoch's history (the first
        stage's included) and its epochs' training seconds.
    """
    tuning, resumed = plan.fine_tune, run["resumed"]
    late = resumes_second(plan, resumed)  # the checkpoint is this stage's: continue it
    first, end = (resumed["epoch"] if late else plan.epochs), total_epochs(plan)
    steps, span, skip = passes(plan, len(data.y_train), first, end)
    train_ds, val_ds = sources.to_tf_datasets(
        data, plan.batch_size, plan.seed, augmentation, passes=span, skip=skip
    )  # each pass seeded by its place in the run: a resumed stage sees the uninterrupted batches
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
    if not late:
        trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
        record.log_metrics({contract.TRAINABLE_PARAMETER_COUNT: trainable}, step=plan.epochs + 1)
    # the run's params are logged; steps a killed process logged past its checkpoint are not again
    logger = callbacks.epoch_logger(
        run["train_images"], log_setup=False, logged_through=(resumed or {}).get("logged_through", 0)
    )
    scorer = callbacks.val_scorer(model, val_ds, np.asarray(data.y_val), started=logger.on_test_begin)
    fitting = [scorer, *schedules.callbacks(plan.schedule, SECOND), logger, *run["reporters"]]
    stateful = [callback for callback in fitting if hasattr(callback, "checkpoint_state")]
    saver = checkpoint.checkpointer(
        plan.checkpoint_dir, lifecycle.run_id, plan.checkpoint_every, end, run["identity"], stateful,
        resumed if late else None, before=fitted.epochs, stage=SECOND,
    )  # fmt: skip
    model.fit(
        train_ds,
        initial_epoch=first,
        epochs=end,
        steps_per_epoch=steps,
        shuffle=False,
        callbacks=[*fitting, saver],  # the checkpoint last: it saves what the others did
        verbose=2 if os.environ.get("CONVLAB_VERBOSE") else 0,
    )
    return Fitted(scorer, saver.history, logger.train_seconds, saver.seconds)


@dataclasses.dataclass
class Fitted:
    """What a stage's fit leaves: its scorer (the last epoch's probabilities), every epoch's logs
    so far (each a dict, as Keras' ``logs``), its own epochs' training seconds, and what its
    checkpoints took."""

    scorer: object
    epochs: list[dict[str, float]]
    train_seconds: list[float]
    checkpoint_seconds: float = 0.0
