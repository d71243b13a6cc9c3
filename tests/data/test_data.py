"""Data sources and tf.data pipelines, on files the tests write."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_digit_csv, write_image_folder

from pipeline.config.errors import DataError
from pipeline.data import sources
from pipeline.data.augment import build_augmentation


def load(name="digits", **kwargs):
    defaults = {"image_size": (28, 28), "validation_split": 0.2, "split_seed": 0}
    return sources.load(name, **(defaults | kwargs))


def test_digits_are_bundled_resized_and_in_pixel_range():
    split = load(max_samples=200)
    assert split.x_train.shape[1:] == (28, 28, 1) and split.x_val.shape[1:] == (28, 28, 1)
    assert len(split.y_train) + len(split.y_val) == 200 and split.num_classes == 10
    assert split.x_train.min() >= 0 and split.x_train.max() <= 255 and split.x_train.max() > 200


def test_validation_split_is_stratified_seeded_and_independent_of_the_run_seed():
    first, again, other = load(split_seed=0), load(split_seed=0), load(split_seed=1)
    np.testing.assert_array_equal(first.y_val, again.y_val)
    np.testing.assert_array_equal(first.x_val, again.x_val)
    assert not np.array_equal(first.x_val, other.x_val)
    shares = np.bincount(first.y_val) / len(first.y_val)
    assert np.allclose(shares, np.bincount(first.y_train) / len(first.y_train), atol=0.02)


def test_kaggle_csv_reads_the_course_layout(tmp_path):
    train = write_digit_csv(tmp_path / "train.csv", rows=50)
    test = write_digit_csv(tmp_path / "test.csv", rows=7, labelled=False)
    split = load("digit_recognizer", path=str(train), test_path=str(test))
    assert split.x_train.shape[1:] == (28, 28, 1) and len(split.y_train) + len(split.y_val) == 50
    assert split.x_test.shape == (7, 28, 28, 1)
    assert split.source == str(train)


PIXELS = ",".join(f"pixel{i}" for i in range(784))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (f"label,{PIXELS}\n1," + ",".join(["x"] * 784) + "\n", "line 2 has an empty or non-numeric pixel"),
        (f"label,{PIXELS}\n1," + ",".join(["300"] * 784) + "\n", "0..255"),
    ],
    ids=["non-numeric", "out-of-range"],
)
def test_bad_pixels_are_named_with_the_file(tmp_path, content, message):
    """What only reading the pixels tells; the layout and labels are ``checks``' (test_checks.py)."""
    path = tmp_path / "train.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        load("digit_recognizer", path=str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_image_folder_with_val_folder(tmp_path):
    root = write_image_folder(tmp_path / "images", per_class=6)
    split = load("image_folder", path=str(root), image_size=(16, 16), color_mode="rgb")
    assert split.class_names == ["cat", "dog"] and split.from_files and split.channels == 3
    assert (len(split.y_train), len(split.y_val)) == (12, 6)


def test_image_folder_without_val_is_split_seeded_and_skips_non_images(tmp_path, caplog):
    root = write_image_folder(tmp_path / "images", per_class=10, with_val=False)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    split = load("image_folder", path=str(root), image_size=(16, 16), validation_split=0.2)
    assert (len(split.y_train), len(split.y_val)) == (16, 4) and sorted(np.bincount(split.y_val)) == [2, 2]
    assert split.skipped_files == 1 and "notes.txt" in caplog.text


@pytest.mark.parametrize("color_mode", ["grayscale", "rgb"])
def test_a_cmyk_jpeg_is_converted_not_refused(tmp_path, color_mode):
    """Print workflows save CMYK JPEGs; TensorFlow decodes them to RGB but not to grayscale."""
    from PIL import Image

    root = write_image_folder(tmp_path / "images", per_class=3)
    red = Image.new("RGB", (20, 20), (255, 0, 0))
    red.convert("CMYK").save(root / "train" / "cat" / "cmyk.jpg", quality=95)
    split = load("image_folder", path=str(root), image_size=(20, 20), color_mode=color_mode)
    train, _ = sources.to_tf_datasets(split, batch_size=100, seed=0)
    images = next(iter(train))[0].numpy()  # every file decoded: none refused
    expected = np.asarray(red.convert("L" if color_mode == "grayscale" else "RGB"), dtype="float32")
    cmyk = list(split.x_train).index(str(root / "train" / "cat" / "cmyk.jpg"))
    decoded = sources.decode_image(split.x_train[cmyk], (20, 20), split.channels).numpy()
    assert len(images) == len(split.y_train) and decoded.shape == (20, 20, split.channels)
    np.testing.assert_allclose(decoded.reshape(expected.shape), expected, atol=3)


def test_augmentation_touches_training_batches_only():

    split = load(max_samples=100)
    augment = build_augmentation(True, 0.2, 0.2, 20.0, seed=0)
    train, val = sources.to_tf_datasets(split, batch_size=1000, seed=0, augment=augment)
    train_images = next(iter(train))[0].numpy()
    val_images = next(iter(val))[0].numpy()
    np.testing.assert_array_equal(val_images, split.x_val)  # validation: untouched, in order
    # training: same images (shuffled) but transformed, so no batch image equals its source
    originals = {img.tobytes() for img in split.x_train.astype("float32")}
    assert sum(img.tobytes() in originals for img in train_images) < len(train_images) * 0.1
    plain, _ = sources.to_tf_datasets(split, batch_size=1000, seed=0)
    assert all(img.tobytes() in originals for img in next(iter(plain))[0].numpy())


def test_image_folder_pipeline_decodes_and_resizes(tmp_path):
    root = write_image_folder(tmp_path / "images", per_class=4, size=20)
    split = load("image_folder", path=str(root), image_size=(8, 8), color_mode="grayscale")
    train, val = sources.to_tf_datasets(split, batch_size=4, seed=0)
    images, labels = next(iter(val))
    assert images.shape[1:] == (8, 8, 1) and images.dtype.name == "float32"
    assert float(images.numpy().min()) >= 0 and float(images.numpy().max()) <= 255
    # the pictures themselves: write_image_folder's cats are dark (0-60), its dogs bright (150-210)
    brightness = {int(label): float(image.numpy().mean()) for image, label in zip(images, labels)}
    names = split.class_names
    assert 10 < brightness[names.index("cat")] < 50 and 160 < brightness[names.index("dog")] < 200
