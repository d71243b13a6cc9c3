"""A run's checkpoint at epoch ends, and a run resumed from it into the same MLflow run.

The folder ``trainer.checkpoint.dir/<run id>/`` holds, after epoch N:

- ``N-model.npz``: every model variable, the weights and the Dropout layers' seed counters;
- ``N-optimizer.npz``: the optimizer's variables (its step count, its moments);
- ``N-<callback>.npz``: a callback's arrays (early stopping's best weights);
- ``state.json``: the epoch, every epoch's logs so far, the run's config (to refuse a resume
  under another one), and the state of each callback that has ``checkpoint_state()`` (the
  convention with the schedules: ``checkpoint_state() -> dict`` and
  ``restore_checkpoint_state(state)``; arrays through ``checkpoint_arrays()`` /
  ``restore_checkpoint_arrays(arrays)``), and the fine-tuning stage (``stages``: a checkpoint of
  the second stage holds the whole unfrozen model and its own optimizer, and a resume from it
  skips the first stage). Written last, atomically: it names the epoch whose arrays count, so a
  checkpoint cut short leaves the previous one whole.

Why not Keras' ``BackupAndRestore``, which restores weights, optimizer and epoch the same way:
its ``save_weights`` walks Keras' object graph into an HDF5 file, 2 to 4 s for MobileNet alpha
0.25's 2.9 MB here (``get_weights`` takes 0.05 s), 11% of a fine-tuning's time at a checkpoint
per epoch; it leaves the seed counters out, writes weights and epoch in two unrelated files,
learns the epoch only inside ``fit`` (the data pipeline must know it before), and deletes
its folder when ``fit`` returns, whatever becomes of the run. Its restore order is kept (build
the optimizer, then load).

The shuffling and augmentation of epoch k depend on (seed, k) alone (``data.epochs``), so
they need no state. A checkpoint is written at an epoch's end once ``every_seconds`` have passed
since the last one (0: every epoch), never after the last epoch, and the folder is removed when
the run ends FINISHED (``remove``).
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
MODEL = "{}-model.npz"  # after epoch N: every model variable (weights and Dropout's seed counters)
OPTIMIZER = "{}-optimizer.npz"  # the optimizer's variables (step count, moments)
ARRAYS = "{}-{}.npz"  # a callback's arrays (early stopping's best weights)
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
    now, then = identity(params), state["identity"]
    differ = sorted(k for k in now.keys() | then.keys() if now.get(k) != then.get(k))
    if differ:
        shown = ", ".join(f"{k} (was {then.get(k)}, now {now.get(k)})" for k in differ[:6])
        raise ConfigError(f"{key}: its checkpoint is from another config: {shown}")
    if not (folder(root, run_id) / MODEL.format(state["epoch"])).exists():
        raise ConfigError(f"{key}: its checkpoint lacks its weights: rerun it without trainer.resume")
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
    before: list[dict[str, float]] | None = None,
    stage: int | None = None,
):
    """The Keras callback that writes the checkpoint and, resuming, restores it; last in ``fit``'s
    list (after early stopping resets itself in ``on_train_begin``, after val_* are in the logs).

    Args:
        run_id: the run's id, None until the run has been created (it opens in a thread while
            the first epochs train: no checkpoint waits for it).
        epochs: the run's last epoch: no checkpoint after it.
        stateful: the callbacks whose state goes in too.
        resumed: the ``state.json`` to resume from (plus its run's ``run_id``), or None.
        before: the logs of the epochs an earlier fit of this run trained (a second stage's
            checkpoint holds the first stage's too); by default the resumed checkpoint's.
        stage: the fine-tuning stage this fit trains, kept in the state (None: one stage).
    """
    import keras

    resumed_run = resumed["run_id"] if resumed else None

    class RunCheckpoint(keras.callbacks.Callback):
        history: list[dict[str, float]]  # every epoch's logs, those before a resume included
        seconds = 0.0  # spent writing checkpoints

        def on_train_begin(self, logs=None):
            self.history = list(before if before is not None else (resumed or {}).get("history", []))
            self._saved = time.monotonic()
            if resumed is None:
                return
            where, epoch = folder(root, resumed_run), resumed["epoch"]
            optimizer = self.model.optimizer
            if not optimizer.built:  # as BackupAndRestore does before loading
                optimizer.build(self.model.trainable_variables)
            _assign(self.model.variables, where / MODEL.format(epoch))
            _assign(optimizer.variables, where / OPTIMIZER.format(epoch))
            for index, callback in enumerate(stateful):
                name = _name(index, callback)
                callback.restore_checkpoint_state(resumed["callbacks"][name])
                if hasattr(callback, "restore_checkpoint_arrays"):
                    callback.restore_checkpoint_arrays(_arrays(where / ARRAYS.format(epoch, name)))

        def on_epoch_end(self, epoch, logs=None):
            self.history.append({k: float(v) for k, v in (logs or {}).items()})
            last = epoch + 1 >= epochs or self.model.stop_training
            run = resumed_run or run_id()
            if not last and run is not None and time.monotonic() - self._saved >= every_seconds:
                started = time.perf_counter()
                self._save(folder(root, run), epoch + 1)
                self.seconds += time.perf_counter() - started
                self._saved = time.monotonic()

        def _save(self, where: Path, epoch: int) -> None:
            where.mkdir(parents=True, exist_ok=True)
            np.savez(where / MODEL.format(epoch), *[np.asarray(v) for v in self.model.variables])
            np.savez(
                where / OPTIMIZER.format(epoch), *[np.asarray(v) for v in self.model.optimizer.variables]
            )
            states = {}
            for index, callback in enumerate(stateful):
                name = _name(index, callback)
                states[name] = callback.checkpoint_state()
                if hasattr(callback, "checkpoint_arrays"):
                    np.savez(where / ARRAYS.format(epoch, name), *callback.checkpoint_arrays())
            state = {"epoch": epoch, "history": self.history, "identity": identity_, "callbacks": states}
            state["stage"] = stage
            partial = where / f"{STATE}.partial"
            partial.write_text(json.dumps(state))
            os.replace(partial, where / STATE)  # the switch: a checkpoint cut short leaves the previous one
            for old in where.glob("*.npz"):  # the previous epoch's arrays
                if not old.name.startswith(f"{epoch}-"):
                    old.unlink()

    return RunCheckpoint()


def _name(index: int, callback) -> str:
    return f"{index}-{type(callback).__name__}"


def _arrays(path: Path) -> list[np.ndarray]:
    with np.load(path) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def _assign(variables: list, path: Path) -> None:
    for variable, value in zip(variables, _arrays(path), strict=True):
        variable.assign(value)
