"""Two-stage fine-tuning (``fine_tune.epochs``): stage 2 unfreezes the backbone's last layers with
BatchNorm still frozen, both stages log into one run with each epoch's stage, and the
``fine_tune`` preset compares frozen with fine-tuned under one parent.

Small and real: MobileNetV2 (alpha 0.35) with random weights on 32x32 images written by the tests.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from conftest import Store, cli, compose, write_image_folder

from pipeline import run
from pipeline.config import composition
from pipeline.config.errors import ConfigError
from pipeline.model import backbones, scratch
from pipeline.tracking import contract

PRETRAINED = [
    "backbone=mobilenet_v2",
    "backbone.alpha=0.35",
    "backbone.weights=null",
    "backbone.input_size=[32,32]",
]
RATE = 1e-3


def history(store, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in store.client().get_metric_history(run_id, key))


@pytest.fixture(scope="module")
def two_stages(tracking_uri, tmp_path_factory):
    """2 epochs on the frozen backbone, then 2 with its last 10 layers unfrozen at a tenth of the
    rate, with augmentation: one run. Returns ``(result, Store)``."""
    folder = tmp_path_factory.mktemp("fine_tune")
    images = write_image_folder(folder / "images", per_class=8, size=32)
    store = Store(tracking_uri, "two_stages")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        result = run([
            "dataset=image_folder", f"dataset.path={images}", *PRETRAINED, "augmentation=flip_shift",
            "trainer.epochs=2", "trainer.batch_size=4", "fine_tune.epochs=2", "fine_tune.layers=10",
            "fine_tune.learning_rate_factor=0.1", "tracking.log_model=false", *store.overrides,
        ])  # fmt: skip
    return result, store


def test_unfreezing_trains_the_last_layers_and_keeps_batchnorm_statistics():
    import keras

    keras.utils.set_random_seed(0)
    backbone = functools.partial(
        backbones.pretrained, name="mobilenet_v2", weights=None, trainable=0, alpha=0.35, dropout_rate=0.0
    )
    model = scratch.build_model((32, 32, 3), 2, backbone, head_units=None, head_activation=None)
    network = model.get_layer("mobilenetv2_0.35_32")
    before = {w.path: np.array(w) for w in network.weights}
    backbones.unfreeze(model, 10)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    model.fit(images, np.arange(8) % 2, epochs=1, verbose=0)
    changed = {w.path for w in network.weights if not np.array_equal(before[w.path], np.array(w))}
    last = {w.path for layer in network.layers[-10:] for w in layer.trainable_weights}
    assert changed and changed <= last  # only the last 10 layers trained, BatchNorm statistics kept


@pytest.mark.slow
def test_both_stages_log_into_one_run_each_epoch_marked_with_its_stage(two_stages):
    result, store = two_stages
    (logged,) = store.runs()
    assert logged.info.status == contract.FINISHED and len(result.history[contract.VAL_ACCURACY]) == 4
    run_id = logged.info.run_id
    assert [step for step, _ in history(store, run_id, contract.VAL_ACCURACY)] == [1, 2, 3, 4]  # no duplicate
    assert history(store, run_id, contract.STAGE) == [(1, 1.0), (2, 1.0), (3, 2.0), (4, 2.0)]
    assert [v for _, v in history(store, run_id, contract.LEARNING_RATE)] == pytest.approx(
        [RATE] * 2 + [RATE / 10] * 2
    )
    counts = history(store, run_id, contract.TRAINABLE_PARAMETER_COUNT)
    assert [step for step, _ in counts] == [0, 3] and counts[1][1] > counts[0][1]  # the head, then more


@pytest.mark.slow
def test_the_fine_tune_preset_compares_frozen_and_fine_tuned_under_one_parent(store, tmp_path):
    images = write_image_folder(tmp_path / "images", per_class=6, size=32)
    result = cli(
        "-m", "experiment=fine_tune", f"dataset.path={images}", *PRETRAINED, "trainer.epochs=1",
        "trainer.batch_size=4", "fine_tune.epochs=0,1", "fine_tune.layers=5", "seed=0,1",
        "tracking.log_model=false", *store.overrides, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    runs = store.runs()
    (parent,) = [r for r in runs if r.data.tags.get(contract.ROLE) == contract.ROLE_SWEEP]
    children = [r for r in runs if r.data.tags.get(contract.PARENT) == parent.info.run_id]
    assert parent.info.status == contract.FINISHED and "fine_tune.epochs=1" in parent.data.tags[contract.NOTE]
    variants = sorted(c.data.tags[contract.VARIANT] for c in children)
    assert variants == ["fine_tune.epochs=0"] * 2 + ["fine_tune.epochs=1"] * 2
    for child in children:
        assert child.data.tags[contract.FEATURE_CACHE] in ("computed", "memory")  # stage 1 on cached features
        stages = [v for _, v in history(store, child.info.run_id, contract.STAGE)]
        assert stages == ([1.0, 2.0] if child.data.tags[contract.VARIANT].endswith("=1") else [])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["fine_tune.epochs=3"], r"^fine_tune.epochs=3: .*backbone=scratch_cnn trains whole"),
        (
            ["fine_tune.epochs=3", "backbone=resnet50", "backbone.trainable=5"],
            r"^backbone.trainable=5: with fine_tune",
        ),
        (
            ["fine_tune.learning_rate_factor=0"],
            r"^fine_tune.learning_rate_factor=0: Input should be greater than 0",
        ),
    ],
)
def test_fine_tune_mistakes_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        composition.validate(compose(overrides))


def test_a_fine_tune_stage_on_the_scratch_cnn_stops_the_cli_in_one_line_before_any_run(store, tmp_path):
    result = cli("fine_tune.epochs=2", *store.overrides, cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("convlab: fine_tune.epochs=2") and "scratch_cnn" in line
    assert store.runs() == []
