"""Transfer learning end to end: image folders, the feature cache, task=predict, bad image files.

Small and real: MobileNetV2 (alpha 0.35) with random weights on 32x32 images written by the
tests, a temporary MLflow store, a fake ImageNet class index in a temporary KERAS_HOME.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import Store, cli, write_image_folder

from pipeline import run
from pipeline.config import composition
from pipeline.config.errors import DataError
from pipeline.model import features
from pipeline.tracking import contract

PRETRAINED = [
    "backbone=mobilenet_v2",
    "backbone.alpha=0.35",
    "backbone.weights=null",
    "backbone.input_size=[32,32]",
]
LESSON = ["experiment=transfer_learning", *PRETRAINED, "trainer.epochs=2", "trainer.batch_size=4"]


def _course_images(folder):
    """The course's layout, two classes, plus a file that is not an image."""
    root = write_image_folder(folder / "images", classes=("rural", "urban"), per_class=8, size=40)
    (root / "train" / "rural" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture
def images(tmp_path):
    return _course_images(tmp_path)


@pytest.fixture(scope="module")
def lesson(tracking_uri, tmp_path_factory):
    """The lesson on an image folder, run once for the tests that read it: the head (with dropout)
    trained on the frozen backbone's features computed once, 2 epochs, its model logged.
    Returns ``(result, Store, images)``; its experiment is this run's alone."""
    folder = tmp_path_factory.mktemp("lesson")
    lesson_store, images = Store(tracking_uri, "transfer_lesson"), _course_images(folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
        overrides = [*LESSON, "regularization=dropout", f"dataset.path={images}", *lesson_store.overrides]
        result = run([*overrides, "trainer.cache_features=true"])
    return result, lesson_store, images


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """A fake ImageNet class index where Keras would cache the real one."""
    (tmp_path / "keras_home" / "models").mkdir(parents=True)
    index = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}
    (tmp_path / "keras_home" / "models" / "imagenet_class_index.json").write_text(json.dumps(index))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return tmp_path / "keras_home"


def logged(store, result):
    return store.client().get_run(result.run_id).data


@pytest.mark.slow
def test_an_image_folder_trains_end_to_end_and_the_logged_model_takes_raw_pixels(lesson):
    import mlflow

    result, store, _ = lesson
    assert result.status == "FINISHED" and len(result.history[contract.LOSS]) == 2
    assert 0.0 <= result.metrics[contract.VAL_ACCURACY] <= 1.0
    data = logged(store, result)
    assert data.metrics[contract.SKIPPED_FILES] == 1  # notes.txt
    assert data.tags[contract.FEATURE_CACHE] == "computed"
    assert (data.params["backbone.name"], data.params["head.name"]) == ("mobilenet_v2", "softmax")
    model = mlflow.pyfunc.load_model(result.model_uri)
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    probabilities = np.asarray(model.predict(pixels))
    assert probabilities.shape == (3, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_the_head_trained_on_cached_features_matches_training_the_whole_model(lesson, tmp_path, monkeypatch):
    cached, store, images = lesson  # the head with dropout: the same draws on features or on images
    monkeypatch.chdir(tmp_path)
    overrides = [*LESSON, "regularization=dropout", "tracking.log_model=false", f"dataset.path={images}"]
    whole = run([*overrides, *store.overrides, "trainer.cache_features=false"])
    assert len(whole.history[contract.LOSS]) == 2  # the same epochs, compared one by one
    for key, values in whole.history.items():
        np.testing.assert_allclose(cached.history[key], values, rtol=1e-4, atol=1e-5, err_msg=key)
    assert logged(store, cached).tags[contract.FEATURE_CACHE] == "computed"
    assert contract.FEATURE_CACHE not in logged(store, whole).tags


@pytest.mark.slow
def test_grayscale_digits_feed_a_pretrained_backbone(store):
    overrides = [*PRETRAINED, "dataset.max_samples=60", "trainer.epochs=1", "tracking.log_model=false"]
    result = run([*overrides, *store.overrides])
    assert result.status == "FINISHED"
    # the grayscale digits went through the RGB backbone: its features, and a 10-class head on them
    data = logged(store, result)
    assert data.tags[contract.FEATURE_CACHE] == "computed"
    head = 1280 * 128 + 128 + 128 * 10 + 10  # MobileNetV2's 1280 features -> Dense(128) -> 10 digits
    assert data.metrics[contract.TRAINABLE_PARAMETER_COUNT] == head
    assert 0.0 < result.metrics[contract.VAL_ACCURACY] <= 1.0 and np.isfinite(result.metrics[contract.LOSS])


@pytest.mark.slow
@pytest.mark.parametrize("cache", ["true", "false"])
def test_a_corrupt_image_is_named_in_a_data_error(store, images, cache):
    from PIL import Image

    broken = images / "train" / "urban" / "broken.jpg"
    Image.fromarray(np.zeros((40, 40, 3), dtype="uint8")).save(broken)
    broken.write_bytes(broken.read_bytes()[:200])  # a valid JPEG header, then nothing
    overrides = [*LESSON, f"dataset.path={images}", f"trainer.cache_features={cache}", *store.overrides]
    with pytest.raises(DataError, match=r"broken.jpg: cannot be decoded"):
        run(overrides)


@pytest.mark.slow
def test_predict_names_what_is_in_each_image(store, tmp_path, keras_home):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(5):
        write_one_png(folder / f"photo{i}.png", seed=i)
    (folder / "readme.txt").write_text("skipped")
    overrides = [
        "task=predict",
        *PRETRAINED,
        "dataset=image_folder",
        f"dataset.path={folder}",
        "predict.top_k=2",
    ]
    result = run([*overrides, *store.overrides])
    assert result.metrics[contract.IMAGES] == 5 and result.model_uri is None
    data = logged(store, result)
    assert data.metrics[contract.SKIPPED_FILES] == 1
    table = store.client().load_table(result.experiment_id, "predictions/top_k.json", run_ids=[result.run_id])
    assert len(table) == 10 and set(table["image"]) == {f"photo{i}.png" for i in range(5)}
    assert table["label"].str.startswith("class_").all() and table["class_id"].str.startswith("n").all()
    first = table[table["image"] == "photo0.png"]
    assert list(first["rank"]) == [1, 2] and first["probability"].is_monotonic_decreasing
    artifacts = [a.path for a in store.client().list_artifacts(result.run_id, "figures")]
    assert "figures/predictions.png" in artifacts


@pytest.mark.slow
def test_predict_from_the_command_line(tmp_path, keras_home, store):
    folder = tmp_path / "photos"
    folder.mkdir()
    write_one_png(folder / "dog.png")
    args = ["task=predict", *PRETRAINED, "dataset=image_folder", f"dataset.path={folder}", *store.overrides]
    done = cli(*args, cwd=tmp_path, env={"KERAS_HOME": str(keras_home)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "dog.png" in done.stdout + done.stderr and "class_" in done.stdout + done.stderr


def write_one_png(path, seed=0):
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (36, 36, 3), dtype="uint8")
    Image.fromarray(pixels).save(path)
    return path


# --- the feature cache and when it applies -------------------------------------------------
class CountingExtractor:
    def __init__(self):
        self.calls = 0

    def predict(self, images, verbose=0):
        self.calls += 1
        return np.asarray(images, dtype="float32") * 2


def test_features_are_computed_once_then_found_in_memory_then_on_disk(tmp_path):
    extractor, key = CountingExtractor(), "test-key-0001"
    features._memory.pop(key, None)
    first = features.extract(extractor, [[1.0], [2.0]], [[3.0]], key, str(tmp_path))
    second = features.extract(extractor, [[1.0], [2.0]], [[3.0]], key, str(tmp_path))
    features._memory.pop(key)
    third = features.extract(extractor, [[1.0], [2.0]], [[3.0]], key, str(tmp_path))
    assert [first[2], second[2], third[2]] == ["computed", "memory", "disk"]
    assert extractor.calls == 2  # train and val, once
    np.testing.assert_array_equal(third[0], [[2.0], [4.0]])
    # no partial file left; the empty lock file stays (removing it could let two processes compute)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{key}.lock", f"{key}.npz"]


def test_the_cache_key_follows_weights_and_data(tmp_path):
    def key(weights, seed=0, digest="d1"):
        return features.cache_key(
            {"name": "resnet50", "weights": weights}, digest, (32, 32, 3), "float32", seed
        )

    assert key("imagenet", seed=0) == key("imagenet", seed=1)  # pretrained: the seed does not matter
    assert key(None, seed=0) != key(None, seed=1)  # random weights: it does
    assert key("imagenet", digest="d1") != key("imagenet", digest="d2")
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"1")
    before = key(str(weights))
    weights.write_bytes(b"22")
    assert key(str(weights)) != before


@pytest.mark.parametrize(
    ("overrides", "cached"),
    [
        (["backbone=resnet50"], True),
        (["backbone=resnet50", "augmentation=flip_shift"], False),  # new images every epoch
        (["backbone=resnet50", "backbone.trainable=5"], False),  # the backbone changes
        (["backbone=resnet50", "trainer.cache_features=false"], False),
        ([], False),  # scratch_cnn
    ],
)
def test_features_are_cached_only_for_a_frozen_backbone_without_augmentation(overrides, cached, run_config):
    assert run_config(*overrides).caches_features is cached


def test_the_transfer_learning_preset_is_the_course_lesson(run_config):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    lesson = run_config("experiment=transfer_learning", "dataset.path=images")
    backbone = lesson.backbone
    assert (backbone.name, backbone.weights, backbone.trainable, lesson.caches_features) == (
        "resnet50", "imagenet", 0, True,
    )  # fmt: skip
    assert (lesson.head.name, lesson.optimizer.name, lesson.dataset.name) == (
        "softmax",
        "sgd",
        "image_folder",
    )
    assert (lesson.trainer.epochs, lesson.trainer.batch_size) == (3, 12)  # the course's fit
    assert lesson.tracking.experiment_name == "transfer_learning"
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(composition.CONF_DIR)):
        cfg = hydra_compose("config", ["experiment=transfer_learning"], return_hydra_config=True)
    assert dict(cfg.hydra.sweeper.params) == {"augmentation": "none,flip_shift", "seed": "0,1,2"}
