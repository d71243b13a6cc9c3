"""A run's checkpoint at epoch ends, and a run resumed from it into the same MLflow run.

The folder ``trainer.checkpoint.dir/<run id>/`` holds what Keras' ``BackupAndRestore`` writes
(``latest.weights.h5``: the weights and the optimizer's state; ``training_metadata.json``: the
epoch) and what it leaves out, beside it:

- ``rng.npz``: the model's random-seed counters (Dropout's), which ``save_weights`` skips;
- ``state.json``: the epoch, every epoch's logs so far, the run's config (to refuse a resume
  under another one), and the state of each callback that has ``checkpoint_state()`` (the
  convention with the schedules: ``checkpoint_state() -> dict`` and
  ``restore_checkpoint_state(state)``; arrays, such as early stopping's best weights, through
  ``checkpoint_arrays()`` / ``restore_checkpoint_arrays(arrays)``), written last, atomically.

The shuffling and augmentation of epoch k depend on (seed, k) alone (``sources.to_tf_datasets``
with ``passes``), so they need no state. A checkpoint is written at an epoch's end once
``every_seconds`` have passed since the last one (0: every epoch), never after the last epoch,
and the folder is removed when the run ends FINISHED (``remove``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.config.errors import ConfigError
from pipeline.tracking import record

STATE = "state.json"
RNG = "rng.npz"
ARRAYS = "arrays-{}.npz"
# keys that may change between a run and its resume: where it is tracked and checkpointed
UNCHECKED = ("tracking.", "sweep.", "trainer.resume", "trainer.checkpoint.", "hydra.")


def folder(root: str, run_id: str) -> Path:
    return Path(root).expanduser().absolute() / run_id


def identity(params: dict) -> dict[str, str]:
    """The run's config as flat ``key: value`` strings, minus what a resume may change."""
    flat = record.flatten(params)
    return {k: v for k, v in flat.items() if not k.startswith(UNCHECKED)}


def read(root: str, run_id: str) -> dict | None:
    """The checkpoint's ``state.json``, or None when the run has none."""
    try:
        return json.loads((folder(root, run_id) / STATE).read_text())
    except (OSError, ValueError):
        return None


def check_resume(root: str, run_id: str, status: str | None, params: dict) -> dict:
    """The state to resume ``run_id`` from, or a ``ConfigError`` saying why it cannot be.

    Args:
        status: the run's MLflow status (None: no such run).
        params: the resumed run's composed config (compared with the checkpoint's).
    """
    key = f"trainer.resume={run_id}"
    if status is None:
        raise ConfigError(f"{key}: no such run in this tracking store")
    if status == "FINISHED":
        raise ConfigError(
            f"{key}: the run is FINISHED, nothing to resume (drop trainer.resume for a new run)"
        )
    state = read(root, run_id)
    if state is None:
        raise ConfigError(
            f"{key}: no checkpoint in {folder(root, run_id)} (the run stopped before its first, "
            "or trainer.checkpoint.dir differs): rerun it without trainer.resume"
        )
    try:  # BackupAndRestore's own record of the epoch its weights are from
        saved = json.loads((folder(root, run_id) / "training_metadata.json").read_text()).get("epoch")
    except (OSError, ValueError):
        saved = None
    if saved != state["epoch"]:
        raise ConfigError(
            f"{key}: its checkpoint was cut short while written: rerun it without trainer.resume"
        )
    now, then = identity(params), state["identity"]
    differ = sorted(k for k in now.keys() | then.keys() if now.get(k) != then.get(k))
    if differ:
        shown = ", ".join(f"{k} (was {then.get(k)}, now {now.get(k)})" for k in differ[:6])
        raise ConfigError(f"{key}: its checkpoint is from another config: {shown}")
    return state


def remove(root: str, run_id: str) -> None:
    """Drops a run's checkpoint folder (the run ended FINISHED)."""
    shutil.rmtree(folder(root, run_id), ignore_errors=True)


def checkpointer(
    root: str,
    run_id: Callable[[], str | None],
    every_seconds: float,
    epochs: int,
    identity_: dict[str, str],
    stateful: list,
    resumed: dict | None,
):
    """The Keras callback that writes the checkpoint and, resuming, restores it; last in ``fit``'s
    list (after early stopping resets itself in ``on_train_begin``, after val_* are in the logs).

    Args:
        run_id: the run's id, None until the run has been created (it opens in a thread while
            the first epochs train: no checkpoint waits for it).
        stateful: the callbacks whose state goes in too.
        resumed: the ``state.json`` to resume from (plus its run's ``run_id``), or None.
    """
    import keras

    resumed_run = resumed["run_id"] if resumed else None

    class RunCheckpoint(keras.callbacks.Callback):
        history: list[dict[str, float]]  # every epoch's logs, those before a resume included
        seconds = 0.0  # spent writing checkpoints

        def on_train_begin(self, logs=None):
            self.history = list(resumed["history"]) if resumed else []
            self._saved = time.monotonic()
            self._backup = None
            if resumed is None:
                return
            self._backup_for(resumed_run).on_train_begin()  # weights and optimizer, Keras' own way
            with np.load(self._dir / RNG) as rng:
                for variable, value in zip(_rng_variables(self.model), rng.values(), strict=True):
                    variable.assign(value)
            for index, callback in enumerate(stateful):
                name = _name(index, callback)
                callback.restore_checkpoint_state(resumed["callbacks"][name])
                if hasattr(callback, "restore_checkpoint_arrays"):
                    with np.load(self._dir / ARRAYS.format(name)) as arrays:
                        callback.restore_checkpoint_arrays(list(arrays.values()))

        def on_epoch_end(self, epoch, logs=None):
            self.history.append({k: float(v) for k, v in (logs or {}).items()})
            last = epoch + 1 >= epochs or self.model.stop_training
            run = resumed_run or run_id()
            if not last and run is not None and time.monotonic() - self._saved >= every_seconds:
                started = time.perf_counter()
                self._save(epoch, run)
                self.seconds += time.perf_counter() - started
                self._saved = time.monotonic()

        def _backup_for(self, run: str):
            if self._backup is None:
                self._dir = folder(root, run)
                self._backup = keras.callbacks.BackupAndRestore(str(self._dir), delete_checkpoint=False)
                self._backup.set_model(self.model)
            return self._backup

        def _save(self, epoch: int, run: str) -> None:
            self._backup_for(run).on_epoch_end(epoch)  # latest.weights.h5, training_metadata.json
            np.savez(self._dir / RNG, *[np.asarray(v) for v in _rng_variables(self.model)])
            states = {}
            for index, callback in enumerate(stateful):
                states[_name(index, callback)] = callback.checkpoint_state()
                if hasattr(callback, "checkpoint_arrays"):
                    np.savez(self._dir / ARRAYS.format(_name(index, callback)), *callback.checkpoint_arrays())
            state = {"epoch": epoch + 1, "history": self.history, "identity": identity_, "callbacks": states}
            partial = self._dir / f"{STATE}.partial"
            partial.write_text(json.dumps(state))
            os.replace(partial, self._dir / STATE)  # last: a checkpoint cut short is the previous one

    return RunCheckpoint()


def _name(index: int, callback) -> str:
    return f"{index}-{type(callback).__name__}"


def _rng_variables(model) -> list:
    """The model's variables that are not weights: its layers' random-seed counters."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]
