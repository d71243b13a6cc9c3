"""A run killed mid-training resumes from its checkpoint into the same MLflow run, and ends as an
uninterrupted run would have; a resume that cannot be is one line before training."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline.config.errors import ConfigError
from pipeline.tracking import sweep_runs
from pipeline.training import checkpoint
from tests.conftest import cli, compose, write_image_folder

EPOCHS = 6
# augmentation and dropout: the shuffle, the augmentation and the dropout masks of epoch 4 must
# be the uninterrupted run's, in a new process
RUN = [f"trainer.epochs={EPOCHS}", "dataset.max_samples=300", "trainer.batch_size=32",
       "augmentation=flip_shift", "regularization=dropout", "tracking.log_model=false",
       "tracking.system_metrics=false", "trainer.checkpoint.every_seconds=0"]  # fmt: skip


def _val_accuracy(store, run_id):
    history = store.client().get_metric_history(run_id, "val_accuracy")
    return [m.value for m in sorted(history, key=lambda m: m.step)], sorted(m.step for m in history)


def _kill_after_epoch(store, overrides, cwd, epoch: int) -> tuple[str, int]:
    """Starts a run (or a sweep), SIGKILLs it once its checkpoint holds ``epoch`` or a later one
    (the first checkpoint waits for the run to be created); returns its run id and that epoch."""
    command = [sys.executable, "-m", "pipeline", *overrides]
    process = subprocess.Popen(command, cwd=cwd, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and process.poll() is None:
            for path in (cwd / "checkpoints").glob("*/state.json"):
                with contextlib.suppress(OSError, ValueError):
                    saved = json.loads(path.read_text())["epoch"]
                    if saved >= epoch:
                        os.killpg(process.pid, signal.SIGKILL)
                        process.wait()
                        return path.parent.name, saved
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    raise AssertionError(f"no checkpoint of epoch {epoch} (exit code {process.returncode})")


@pytest.mark.slow
def test_a_killed_run_resumes_into_the_same_run_with_the_uninterrupted_metrics(store, tmp_path):
    overrides = [*RUN, *store.overrides, f"trainer.checkpoint.dir={tmp_path / 'checkpoints'}"]
    run_id, epoch = _kill_after_epoch(store, overrides, tmp_path, epoch=3)
    assert epoch < EPOCHS and store.client().get_run(run_id).info.status == "RUNNING"  # nothing ended it
    result = cli(*overrides, f"trainer.resume={run_id}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming run {run_id} after epoch {epoch}" in result.stdout
    uninterrupted = cli(*overrides, "tracking.run_name=uninterrupted", cwd=tmp_path)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]

    runs = {run.info.run_name: run for run in store.runs()}
    assert len(runs) == 2  # the resumed run is the killed one, not a third
    resumed, reference = store.client().get_run(run_id), runs["uninterrupted"]
    assert resumed.info.status == "FINISHED" and "convlab.error" not in resumed.data.tags
    values, steps = _val_accuracy(store, run_id)
    expected, _ = _val_accuracy(store, reference.info.run_id)
    assert steps == list(range(1, EPOCHS + 1))  # every epoch once: no step twice, none missing
    assert values == pytest.approx(expected, abs=1e-6)
    assert resumed.data.metrics["loss"] == pytest.approx(reference.data.metrics["loss"], abs=1e-6)
    assert not (tmp_path / "checkpoints" / run_id).exists()  # FINISHED: its checkpoint is gone

    # a FINISHED run is not resumed again: one line, before training
    again = cli(*overrides, f"trainer.resume={run_id}", cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines()[-1] == (
        f"convlab: trainer.resume={run_id}: the run is FINISHED, nothing to resume "
        "(drop trainer.resume for a new run)"
    )


def test_a_resume_without_a_checkpoint_or_under_another_config_is_one_line(store, tmp_path):
    from omegaconf import OmegaConf

    from pipeline import run

    overrides = [*RUN, "trainer.epochs=1", *store.overrides, f"trainer.checkpoint.dir={tmp_path}"]
    run_id = sweep_runs.start_parent_run(store.uri, store.experiment, "killed", {})  # RUNNING, no checkpoint
    with pytest.raises(ConfigError, match=f"trainer.resume={run_id}: no checkpoint in "):
        run([*overrides, f"trainer.resume={run_id}"])
    folder = tmp_path / run_id
    folder.mkdir()
    (folder / "training_metadata.json").write_text('{"epoch": 2, "batch": 0}')
    identity = checkpoint.identity(OmegaConf.to_container(compose(overrides), resolve=True))
    identity["optimizer.learning_rate"] = "0.01"  # the checkpoint's run had another rate
    state = {"epoch": 2, "history": [], "identity": identity, "callbacks": {}}
    (folder / "state.json").write_text(json.dumps(state))
    with pytest.raises(
        ConfigError, match=r"another config: .*optimizer\.learning_rate \(was 0\.01, now 0\.001\)"
    ):
        run([*overrides, f"trainer.resume={run_id}"])
    assert store.client().get_run(run_id).info.status == "RUNNING"  # untouched: nothing trained


@pytest.mark.slow
def test_a_resumed_sweep_continues_its_killed_job_in_the_same_run(store, tmp_path):
    overrides = ["-m", "seed=0", *RUN, *store.overrides, f"trainer.checkpoint.dir={tmp_path / 'checkpoints'}"]
    run_id, epoch = _kill_after_epoch(store, overrides, tmp_path, epoch=3)
    resumed = cli(*overrides, "sweep.resume=last", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming run {run_id} after epoch {epoch}" in resumed.stdout + resumed.stderr
    children = [run for run in store.runs() if run.data.tags.get("convlab.role") == "job"]
    assert [child.info.run_id for child in children] == [run_id]  # no second run for the job
    assert children[0].info.status == "FINISHED"
    _, steps = _val_accuracy(store, run_id)
    assert steps == list(range(1, EPOCHS + 1))


# two-stage fine-tuning (MobileNetV2 alpha 0.35, random weights, 32x32): 2 epochs on the frozen
# backbone, then 4 with its last 10 layers unfrozen, augmented
TWO_STAGES = ["backbone=mobilenet_v2", "backbone.alpha=0.35", "backbone.weights=null",
              "backbone.input_size=[32,32]", "augmentation=flip_shift", "trainer.epochs=2",
              "fine_tune.epochs=4", "fine_tune.layers=10", "trainer.batch_size=8", "tracking.log_model=false",
              "tracking.system_metrics=false", "trainer.checkpoint.every_seconds=0"]  # fmt: skip


@pytest.mark.slow
def test_a_two_stage_run_killed_in_its_second_stage_resumes_there_with_the_uninterrupted_metrics(
    store, tmp_path
):
    images = write_image_folder(tmp_path / "images", per_class=16, size=32)
    checkpoints = tmp_path / "checkpoints"
    overrides = ["dataset=image_folder", f"dataset.path={images}", *TWO_STAGES, *store.overrides,
                 f"trainer.checkpoint.dir={checkpoints}"]  # fmt: skip
    run_id, epoch = _kill_after_epoch(store, overrides, tmp_path, epoch=3)  # stage 2's first epoch
    assert 3 <= epoch < 6
    assert json.loads((checkpoints / run_id / "state.json").read_text())["stage"] == 2
    result = cli(*overrides, f"trainer.resume={run_id}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming run {run_id} after epoch {epoch}" in result.stdout
    uninterrupted = cli(*overrides, "tracking.run_name=uninterrupted", cwd=tmp_path)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]

    reference = next(run for run in store.runs() if run.info.run_name == "uninterrupted")
    assert store.client().get_run(run_id).info.status == "FINISHED"
    values, steps = _val_accuracy(store, run_id)
    expected, _ = _val_accuracy(store, reference.info.run_id)
    assert steps == list(range(1, 7))  # both stages' epochs, each once
    assert values == pytest.approx(expected, abs=1e-6)
    stage = sorted((m.step, m.value) for m in store.client().get_metric_history(run_id, "stage"))
    assert [value for _, value in stage] == [1, 1, 2, 2, 2, 2]
    assert not (checkpoints / run_id).exists()
