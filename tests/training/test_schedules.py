"""Learning-rate schedules (``schedule=...``): the rate each epoch trained at, logged per epoch,
under XLA, mixed precision and a MirroredStrategy; plateau's state across a resume; bad input.

Small and real: 200-300 digits, 3 epochs, Adam at 1e-3, a temporary MLflow store.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TINY, cli, compose

import pipeline
from pipeline.config import composition
from pipeline.config.errors import ConfigError
from pipeline.tracking import contract
from pipeline.training import schedules

RATE = 1e-3
THREE = ["dataset.max_samples=200", "trainer.epochs=3", "tracking.log_model=false"]
# plateau that drops after every epoch but the first: no val_loss improves by 10
EVERY_EPOCH = ["schedule=plateau", "schedule.patience=0", "schedule.min_delta=10"]
# (overrides, the rate at each of the 3 epochs' first step)
EXPECTED = {
    "cosine": (["schedule=cosine"], [0.0, RATE, RATE / 2]),  # warmup 1 epoch, then half a cosine
    "plateau": (EVERY_EPOCH, [RATE, RATE, RATE / 2]),
}
ACCELERATORS = {
    "xla_bfloat16": ["accelerator=cpu", "accelerator.mixed_precision=true", "accelerator.jit_compile=true"],
    # (XLA with a MirroredStrategy over logical CPUs fails in TensorFlow whatever the schedule)
    "mirrored_bfloat16": [
        "accelerator=multi_gpu", "accelerator.devices=[/cpu:0,/cpu:1]", "accelerator.logical_cpus=2",
        "accelerator.mixed_precision=true",
    ],
}  # fmt: skip


def rates(store, run_id: str) -> list[tuple[int, float]]:
    history = store.client().get_metric_history(run_id, contract.LEARNING_RATE)
    return sorted((m.step, m.value) for m in history)


def test_the_default_keeps_one_rate_and_step_drops_it_every_epoch(store):
    constant = pipeline.run([*TINY, "trainer.epochs=3", *store.overrides])
    step = pipeline.run([*TINY, "trainer.epochs=3", "schedule=step", "schedule.every=1", *store.overrides])
    assert [v for _, v in rates(store, constant.run_id)] == pytest.approx([RATE] * 3)
    assert rates(store, step.run_id) == [(1, pytest.approx(RATE)), (2, pytest.approx(RATE / 2)),
                                         (3, pytest.approx(RATE / 4))]  # fmt: skip
    assert contract.LEARNING_RATE not in step.history  # a mark beside the metrics, not a learning curve


@pytest.mark.slow
@pytest.mark.parametrize("accelerator", list(ACCELERATORS))
@pytest.mark.parametrize("schedule", list(EXPECTED))
def test_each_schedule_trains_at_its_rates_under_xla_mixed_precision_and_a_mirrored_strategy(
    store, tmp_path, schedule, accelerator
):
    # a fresh process: XLA and a split CPU cannot be set once TensorFlow has started in this one
    overrides, expected = EXPECTED[schedule]
    result = cli(*THREE, *overrides, *ACCELERATORS[accelerator], *store.overrides, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = store.runs()
    assert run.info.status == contract.FINISHED and np.isfinite(run.data.metrics[contract.LOSS])
    assert run.data.tags[f"{contract.ACCELERATOR_PREFIX}policy"] == "mixed_bfloat16"
    assert rates(store, run.info.run_id) == [
        (i + 1, pytest.approx(v, abs=1e-9)) for i, v in enumerate(expected)
    ]


def test_plateaus_counters_survive_a_checkpoint():
    """An epoch without improvement before the checkpoint counts after it: the rate drops on time."""
    import keras

    def fit(callback, epochs: int, initial_epoch: int = 0):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        model.compile(optimizer=keras.optimizers.SGD(RATE), loss="sparse_categorical_crossentropy")
        x, y = np.zeros((8, 4), "float32"), np.zeros(8, "int64")  # nothing to learn: val_loss flat
        model.fit(x, y, validation_data=(x, y), epochs=epochs, initial_epoch=initial_epoch, verbose=0,
                  callbacks=[callback])  # fmt: skip
        return schedules.current_rate(model.optimizer)

    settings = {
        "monitor": "val_loss",
        "factor": 0.5,
        "patience": 2,
        "min_delta": 1.0,
        "cooldown": 0,
        "min_lr": 0.0,
    }
    first = schedules.plateau(**settings)
    assert fit(first, epochs=2) == pytest.approx(RATE)  # epoch 2 did not improve: wait 1 of 2
    state = first.checkpoint_state()
    assert state["wait"] == 1 and state["best"] is not None
    resumed, fresh = schedules.plateau(**settings), schedules.plateau(**settings)
    resumed.restore_checkpoint_state(state)
    assert fit(resumed, epochs=3, initial_epoch=2) == pytest.approx(RATE / 2)  # its second: dropped
    assert fit(fresh, epochs=3, initial_epoch=2) == pytest.approx(RATE)  # counting from scratch


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["schedule=cosine", "schedule.warmup_epochs=5", "trainer.epochs=5"],
            r"^schedule.warmup_epochs=5: the warmup must be shorter than the training \(trainer.epochs=5\)",
        ),
        (
            [
                "schedule=cosine",
                "schedule.warmup_epochs=2",
                "trainer.epochs=5",
                "fine_tune.epochs=2",
                "backbone=mobilenet_v2",
            ],
            r"^schedule.warmup_epochs=2: .*\(fine_tune.epochs=2\)",
        ),  # fmt: skip
        (["schedule=plateau", "schedule.monitor=accuracy"], r"^schedule.monitor='accuracy'"),
        (["schedule=step", "schedule.factor=1.5"], r"^schedule.factor=1.5: Input should be less than 1"),
    ],
)
def test_schedule_mistakes_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        composition.validate(compose(overrides))


def test_a_warmup_longer_than_the_training_stops_the_cli_in_one_line_before_any_run(store, tmp_path):
    result = cli(
        "schedule=cosine", "schedule.warmup_epochs=3", "trainer.epochs=2", *store.overrides, cwd=tmp_path
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("convlab: schedule.warmup_epochs=3") and "trainer.epochs=2" in line
    assert store.runs() == []
