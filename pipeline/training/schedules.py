"""Learning-rate schedules (``schedule=constant|cosine|step|plateau``) from plain values.

    optimizer = schedules.optimizer(("adam", {"learning_rate": 1e-3}), ("cosine", {...}), epochs=5,
                                    steps_per_epoch=10)
    model.fit(..., callbacks=[scorer, *schedules.callbacks(("plateau", {...})), logger])

``cosine`` and ``step`` are Keras ``LearningRateSchedule``s: the optimizer evaluates them at every
step inside the compiled train step, so they hold under ``jit_compile``, mixed precision and a
``MirroredStrategy`` alike. ``plateau`` is Keras' ``ReduceLROnPlateau``, which assigns the
optimizer's learning-rate variable between epochs; its counters travel with a checkpoint
(``checkpoint_state`` / ``restore_checkpoint_state``). Every schedule puts the epoch's rate (at its
first step) into the epoch's logs as ``learning_rate``, and a two-stage run its ``stage``.
"""

from __future__ import annotations

import math
from typing import Any

from pipeline.model import optimizers
from pipeline.tracking import contract

Setting = tuple[str, dict[str, Any]]  # an option's name and its keys, as the plan holds it


def steps_per_epoch(images: int, batch_size: int, steps: int | None) -> int:
    """Optimizer steps per epoch: ``trainer.steps_per_epoch``, else one pass in batches."""
    return steps or math.ceil(images / batch_size)


def optimizer(opt: Setting, schedule: Setting, epochs: int, steps: int, factor: float = 1.0):
    """The optimizer ``opt`` at ``learning_rate x factor``, following ``schedule`` over ``epochs``."""
    name, settings = opt
    rate = learning_rate(schedule, settings["learning_rate"] * factor, epochs, steps)
    return optimizers.build(name, {**settings, "learning_rate": rate})


def learning_rate(schedule: Setting, peak: float, epochs: int, steps: int):
    """A float (``constant``, ``plateau``) or a ``keras.optimizers.schedules`` object.

    Args:
        schedule: ``("cosine", {"warmup_epochs": 1, "alpha": 0.0})``, ``("step", {"every": 2,
            "factor": 0.5})``, ...
        peak: the configured rate (``optimizer.learning_rate``, times a stage's factor).
        epochs: the epochs the schedule spans; steps: optimizer steps per epoch.
    """
    import keras

    name, settings = schedule
    if name == "cosine":
        warmup = settings["warmup_epochs"] * steps
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else peak,  # a linear warmup from 0 to the peak
            decay_steps=max(epochs * steps - warmup, 1),
            alpha=settings["alpha"],
            warmup_target=peak if warmup else None,
            warmup_steps=warmup,
        )
    if name == "step":
        return keras.optimizers.schedules.ExponentialDecay(
            peak, decay_steps=settings["every"] * steps, decay_rate=settings["factor"], staircase=True
        )
    return peak


def callbacks(schedule: Setting, stage: int | None = None) -> list:
    """The fit's schedule callbacks, after the validation scorer (``plateau`` reads val_*):
    one that logs each epoch's rate (and ``stage``, in a two-stage run), and ``plateau``'s."""
    name, settings = schedule
    found = [_marks(stage)]
    if name == "plateau":
        found.append(plateau(**settings))
    return found


def _marks(stage: int | None):
    import keras

    class EpochMarks(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._rate = current_rate(self.model.optimizer)

        def on_epoch_end(self, epoch, logs=None):
            logs[contract.LEARNING_RATE] = self._rate
            if stage is not None:
                logs[contract.STAGE] = float(stage)

    return EpochMarks()


def current_rate(optimizer) -> float:
    """The rate the optimizer's next step uses (a schedule evaluated at its step count)."""
    import keras

    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def plateau(monitor: str, factor: float, patience: int, min_delta: float, cooldown: int, min_lr: float):
    """``keras.callbacks.ReduceLROnPlateau`` whose counters (and rate) survive a resume."""
    import keras

    class Plateau(keras.callbacks.ReduceLROnPlateau):
        _pending: dict | None = None

        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)  # Keras resets its counters here: a restored state goes back on
            if self._pending is not None:
                self._apply(self._pending)
                self.model.optimizer.learning_rate = self._pending["learning_rate"]
                self._pending = None

        def checkpoint_state(self) -> dict:
            best = None if self.best is None else float(self.best)
            rate = current_rate(self.model.optimizer)
            counters = {"wait": self.wait, "cooldown_counter": self.cooldown_counter}
            return {"best": best, **counters, "learning_rate": rate}

        def restore_checkpoint_state(self, state: dict) -> None:
            self._pending = dict(state)
            self._apply(state)

        def _apply(self, state: dict) -> None:
            self.best = state["best"]
            self.wait, self.cooldown_counter = int(state["wait"]), int(state["cooldown_counter"])

    mode = "max" if monitor == contract.VAL_ACCURACY else "min"
    return Plateau(
        monitor, factor, patience, mode=mode, min_delta=min_delta, cooldown=cooldown, min_lr=min_lr
    )
