"""Speed without surprises: cost guards, images decoded at the size used, features computed once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import ROOT, cli, write_image_folder

import pipeline
from pipeline import app
from pipeline.config import sizes
from pipeline.data import decoded, sources
from pipeline.model import scratch
from pipeline.tracking import contract
from pipeline.training import wiring

SCRATCH_VARIANTS = [
    [],
    ["downsample=stride"],
    ["downsample=maxpool", "head=softmax"],
    ["backbone.conv_layers=3", "backbone.filters=[4,8,16]", "backbone.kernel_size=[4,7]"],
    ["dataset=image_folder", "dataset.image_size=[40,32]", "downsample=stride"],
]


@pytest.mark.parametrize("overrides", SCRATCH_VARIANTS, ids=lambda o: " ".join(o) or "default")
def test_the_estimate_from_the_config_is_the_keras_models_count(overrides, run_config, tmp_path_factory):

    if "dataset=image_folder" in overrides:
        root = tmp_path_factory.mktemp("images")
        write_image_folder(root, classes=("cat", "dog", "owl"), per_class=2)
        overrides = [*overrides, f"dataset.path={root}"]
    run = run_config(*overrides)
    classes = 3 if "dataset=image_folder" in overrides else 10
    channels = 3 if "dataset=image_folder" in overrides else 1
    plan = wiring.plan(run)
    model = scratch.build_model(
        (*run.dataset.image_size, channels), classes, plan.backbone, plan.head_units, plan.head_activation
    )
    assert sizes.scratch_parameter_count(run, classes) == model.count_params()


def test_the_course_cnn_on_224_pixel_photos_is_refused_in_one_line_naming_the_fixes(tmp_path):
    root = write_image_folder(tmp_path / "images", per_class=4)
    result = cli("dataset=image_folder", f"dataset.path={root}", cwd=tmp_path, timeout=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert lines[0].startswith("convlab: the model would have 123,908,566 parameters")
    for fix in ("trainer.max_parameters=25,000,000", "dataset.image_size", "downsample=stride", "backbone="):
        assert fix in lines[0]
    assert not (tmp_path / "mlflow.db").exists()  # refused before a run opened


def test_a_lower_limit_refuses_the_digit_cnn_and_a_strided_one_still_trains(store):
    limit = "trainer.max_parameters=1000000"  # the course's digit CNN has 1,479,798
    with pytest.raises(pipeline.ConfigError, match="1,479,798 parameters"):
        pipeline.run([limit, *store.overrides])
    assert store.runs() == []
    result = pipeline.run([limit, "downsample=stride", "dataset.max_samples=100", "trainer.epochs=1",
                           "tracking.log_model=false", *store.overrides])  # fmt: skip
    assert result.status == contract.FINISHED


# --- images: decoded at reduced scale, kept as uint8, in memory, on disk or streamed ----------
def test_a_large_jpeg_decoded_at_reduced_scale_matches_a_full_decode(tmp_path):
    import tensorflow as tf
    from PIL import Image

    y, x = np.mgrid[0:1200, 0:1600]
    pixels = np.stack([x % 255, y % 255, (x + y) // 12 % 255], axis=-1).astype("uint8")
    Image.fromarray(pixels).save(tmp_path / "big.jpg", quality=95)
    scaled = sources.decode_image(str(tmp_path / "big.jpg"), (100, 120), 3).numpy()
    full = tf.io.decode_jpeg(tf.io.read_file(str(tmp_path / "big.jpg")), channels=3)
    reference = tf.image.resize(tf.cast(full, tf.float32), (100, 120), antialias=True).numpy()
    assert scaled.shape == (100, 120, 3) and scaled.dtype == np.float32
    assert np.abs(scaled - reference).mean() < 4  # of 255: the same picture


@pytest.mark.parametrize("cache", ["disk", "none"])
def test_images_streamed_from_disk_or_decoded_each_epoch_are_the_ones_kept_in_memory(
    cache, tmp_path, monkeypatch
):

    root = write_image_folder(tmp_path / "images", per_class=6, size=24)

    def epoch(mode):
        split = sources.load("image_folder", (16, 16), 0.2, 0, path=str(root), color_mode="rgb", cache=mode)
        train, val = sources.to_tf_datasets(split, batch_size=100, seed=0)
        return [np.concatenate([b[0].numpy() for b in ds]) for ds in (train, val)]

    folder = tmp_path / "cache"
    monkeypatch.setenv(decoded.CACHE_VARIABLE, str(folder))
    (train_memory, val_memory), (train_other, val_other) = epoch("memory"), epoch(cache)
    written = set(folder.glob("*.npy"))
    assert bool(written) == (cache == "disk")  # disk: a cache file holds the decoded images
    np.testing.assert_array_equal(val_other, val_memory)  # in order
    assert sorted(i.tobytes() for i in train_other) == sorted(i.tobytes() for i in train_memory)


# --- the frozen backbone's features: computed once ---------------------------------------------
PRETRAINED = [
    "experiment=transfer_learning",
    "backbone=mobilenet_v2",
    "backbone.alpha=0.35",
    "backbone.input_size=[32,32]",
    "trainer.batch_size=4",
    "tracking.log_model=false",
]


@pytest.fixture
def weights_file(tmp_path):
    """Pretrained weights from a local file: random, but the same for every seed, like ImageNet's."""
    import keras

    path = tmp_path / "mobilenet_v2_035.weights.h5"
    keras.applications.MobileNetV2(
        alpha=0.35, include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg"
    ).save_weights(path)
    return path


@pytest.mark.slow
def test_a_sweep_over_seeds_computes_the_backbones_features_once(store, tmp_path, weights_file):
    root = write_image_folder(tmp_path / "images", classes=("rural", "urban"), per_class=6, size=40)
    result = cli(
        "-m", *PRETRAINED, f"backbone.weights={weights_file}", f"dataset.path={root}",
        "augmentation=none", "seed=0,1", "trainer.epochs=1", *store.overrides, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = [r for r in store.runs() if r.data.tags.get(contract.ROLE) == contract.ROLE_JOB]
    passes = sorted(r.data.tags[contract.FEATURE_CACHE] for r in jobs)
    assert passes == ["computed", "memory"]  # one backbone pass for both seeds, in one process


@pytest.mark.slow
def test_a_parallel_sweep_over_seeds_computes_the_backbones_features_once(store, tmp_path, weights_file):
    root = write_image_folder(tmp_path / "images", classes=("rural", "urban"), per_class=6, size=40)
    result = cli(
        "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *PRETRAINED,
        f"backbone.weights={weights_file}", f"dataset.path={root}", "augmentation=none",
        "seed=0,1", "trainer.epochs=1", *store.overrides, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = [r for r in store.runs() if r.data.tags.get(contract.ROLE) == contract.ROLE_JOB]
    passes = sorted(r.data.tags[contract.FEATURE_CACHE] for r in jobs)
    # one backbone pass for two seeds run at once in two processes: the other waits for it and
    # reads it from the sweep's folder (or from memory, if one worker process ran both)
    assert len(passes) == 2 and passes.count("computed") == 1, passes
    assert set(passes) <= {"computed", "disk", "memory"}, passes
    assert list(tmp_path.glob("multirun/*/*/.features/*.npz"))  # inside the sweep's own folder


def test_a_sweeps_jobs_keep_features_in_the_sweeps_folder_unless_the_user_named_one(run_config, tmp_path):

    sweep_dir = tmp_path / "multirun" / "2026-01-01" / "12-00-00-abc123"
    default = app._with_sweep_feature_cache(run_config(*PRETRAINED, "dataset.path=images"), str(sweep_dir))
    assert default.trainer.feature_cache_dir == str(sweep_dir / ".features")
    mine = run_config(*PRETRAINED, "dataset.path=images", f"trainer.feature_cache_dir={tmp_path / 'mine'}")
    assert app._with_sweep_feature_cache(mine, str(sweep_dir)) == mine


# Run in two processes at once: each waits for the other, then asks for the same features.
EXTRACT_AT_ONCE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import numpy as np
    from pipeline.model import features

    folder, me, other = Path(sys.argv[1]), sys.argv[2], sys.argv[3]

    class SlowExtractor:
        def predict(self, images, verbose=0):
            with open(folder / "passes.txt", "a") as passes:
                passes.write(f"{me}\\n")
            time.sleep(2)  # long enough for the other process to want the same features
            return np.asarray(images, dtype="float32") * 2

    (folder / f"ready-{me}").touch()
    while not (folder / f"ready-{other}").exists():
        time.sleep(0.01)
    train, val = np.ones((4, 3)), np.ones((2, 3))
    *_, source = features.extract(SlowExtractor(), train, val, "same key", str(folder / "cache"))
    print(source)
""")


def test_two_processes_wanting_the_same_features_at_once_compute_them_once(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    started = [
        subprocess.Popen([sys.executable, "-c", EXTRACT_AT_ONCE, str(tmp_path), me, other],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for me, other in (("a", "b"), ("b", "a"))
    ]  # fmt: skip
    outputs = [process.communicate(timeout=60) for process in started]
    assert all(process.returncode == 0 for process in started), [err for _, err in outputs]
    assert sorted(out.strip() for out, _ in outputs) == ["computed", "disk"]
    assert len((tmp_path / "passes.txt").read_text().splitlines()) == 2  # one pass: train, then val


@pytest.mark.slow
def test_with_augmentation_validation_on_features_computed_once_gives_the_same_metrics(store, tmp_path):
    root = write_image_folder(tmp_path / "images", classes=("rural", "urban"), per_class=6, size=40)
    overrides = [*PRETRAINED, "backbone.weights=null", f"dataset.path={root}", "augmentation=flip_shift"]
    overrides += ["trainer.epochs=2", *store.overrides]
    once = pipeline.run([*overrides, "trainer.cache_features=true"])
    every_epoch = pipeline.run([*overrides, "trainer.cache_features=false"])
    for key, values in every_epoch.history.items():
        np.testing.assert_allclose(once.history[key], values, rtol=1e-4, atol=1e-5, err_msg=key)
