"""Data sources -> ``ImageData`` (arrays or file lists, split) -> seeded ``tf.data`` pipelines.

Every source yields images with 0-255 pixel values; scaling to what a model expects happens
inside the model, so a logged model takes raw pixels (a Kaggle CSV row, a decoded JPEG).
The validation split is stratified and seeded by ``split_seed`` alone, so every variant and
every seed of a sweep holds out the same images.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

import numpy as np

from pipeline.config import folders
from pipeline.config.errors import DataError
from pipeline.data import epochs
from pipeline.data.decode import decode_files, decode_image  # noqa: F401  (part of this module's API)

log = logging.getLogger(__name__)

SHUFFLE_BUFFER = 1024  # images shuffled at a time when they stream from disk (dataset.cache=disk|none)


@dataclasses.dataclass(frozen=True)
class ImageData:
    """A split data set. ``x_*`` hold images (N, H, W, C) or, for image folders, file paths."""

    name: str
    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    class_names: list[str]
    image_size: tuple[int, int]
    channels: int
    x_test: np.ndarray | None = None  # Kaggle's test.csv, or an image folder's test/ (file paths)
    skipped_files: int = 0
    cache: str = "memory"  # decoded image files kept in memory, on disk or not at all (decode.CACHES)
    y_test: np.ndarray | None = None  # labels of a held-out test set (test/<class>/); None: unlabelled

    @property
    def from_files(self) -> bool:
        return self.x_train.dtype.kind in "OUS"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def digest(self) -> str:
        """A short content hash of the split, stable across runs on the same data."""
        h = hashlib.sha256()
        for part in (self.x_train, self.y_train, self.x_val, self.y_val):
            h.update(
                np.ascontiguousarray(part).tobytes() if part.dtype.kind != "O" else "\n".join(part).encode()
            )
        return h.hexdigest()[:16]


def load(
    name: str,
    image_size: tuple[int, int],
    validation_split: float,
    split_seed: int,
    max_samples: int | None = None,
    path: str | None = None,
    test_path: str | None = None,
    color_mode: str = "grayscale",
    cache: str = "memory",
) -> ImageData:
    """Loads one source by name and splits it; its files have passed ``checks.check_data``.

    What only reading them tells (a malformed row, a bad pixel value) is a ``DataError`` here.
    """
    if name == "image_folder":
        folder = _image_folder(Path(path), image_size, color_mode, validation_split, split_seed, max_samples)
        return dataclasses.replace(folder, cache=cache)
    if name == "digits":
        x, y, classes, source = _digits()
    elif name == "digit_recognizer":
        x, y, classes, source = _kaggle_csv(Path(path))
    elif name in ("mnist", "fashion_mnist"):
        x, y, classes, source = _keras_dataset(name)
    else:
        raise DataError(f"unknown dataset {name!r}")
    x, y = _subsample(x, y, max_samples, split_seed)
    x_train, x_val, y_train, y_val = _split(x, y, validation_split, split_seed)
    x_test = _resize(_kaggle_csv(Path(test_path))[0], image_size) if test_path else None
    return ImageData(
        name, source, _resize(x_train, image_size), y_train, _resize(x_val, image_size), y_val, classes,
        tuple(image_size), 1, x_test,
    )  # fmt: skip


def _digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype("float32")[..., None] * (255.0 / 16.0)  # 0..16 -> 0..255
    return images, bunch.target.astype("int64"), [str(c) for c in range(10)], "sklearn.datasets.load_digits"


def _keras_dataset(name: str):
    import keras

    module = getattr(keras.datasets, name)
    try:
        (x, y), _ = module.load_data()
    except Exception as err:  # network, proxy or cache problems all land here
        raise DataError(f"could not load keras.datasets.{name} (it downloads on first use): {err}") from None
    classes = [str(c) for c in range(10)]
    if name == "fashion_mnist":
        classes = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat"]
        classes += ["Sandal", "Shirt", "Sneaker", "Bag", "Boot"]
    return x.astype("float32")[..., None], y.astype("int64"), classes, f"keras.datasets.{name}"


def _kaggle_csv(path: Path):
    """Reads Kaggle's digit-recognizer layout: ``label,pixel0..pixelN`` (0-255, N+1 square).

    The header and labels were checked by ``checks.check_data``; the pixels are checked here.
    """
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except pd.errors.ParserError as err:  # e.g. a row with more fields than the header
        raise DataError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None
    labels = frame.pop("label").to_numpy() if "label" in frame.columns else None
    side = int(round(np.sqrt(frame.shape[1])))
    try:  # all numbers: one conversion (10k rows of 784 columns one by one took a second)
        pixels = frame.to_numpy(dtype="float32")
    except ValueError:  # text somewhere: find it below
        pixels = frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype="float32")
    if np.isnan(pixels).any():
        row = int(np.argwhere(np.isnan(pixels))[0][0]) + 2  # 1-based, after the header
        raise DataError(f"{path}: line {row} has an empty or non-numeric pixel value")
    if pixels.min() < 0 or pixels.max() > 255:
        raise DataError(f"{path}: pixel values must lie in 0..255, found {pixels.min():g}..{pixels.max():g}")
    images = pixels.reshape(-1, side, side, 1)
    if labels is None:
        return images, None, [], str(path)
    classes = [str(c) for c in range(int(labels.max()) + 1)]
    return images, labels.astype("int64"), classes, str(path)


def _image_folder(root, image_size, color_mode, validation_split, split_seed, max_samples) -> ImageData:
    """An image folder laid out as ``folders.image_folder_layout`` finds it: ``root/<class>/``, or
    ``root/train/<class>/`` with ``val/`` (or ``valid/``, ``validation/``) and ``test/``."""
    layout = folders.image_folder_layout(root)
    classes = layout.classes
    x, y, skipped = _list_images(layout.train, classes)
    x, y = _subsample(x, y, max_samples, split_seed)
    if layout.val is not None:
        x_val, y_val, skipped_val = _list_images(layout.val, classes)
        x_train, y_train, skipped = x, y, skipped + skipped_val
    else:
        x_train, x_val, y_train, y_val = _split(x, y, validation_split, split_seed)
    x_test = y_test = None
    if layout.test_labelled:  # a held-out test set: scored once, at the end
        x_test, y_test, skipped_test = _list_images(layout.test, classes)
        skipped += skipped_test
    elif layout.test is not None:  # unlabelled images: predicted, at the end
        files = [file for file in sorted(layout.test.iterdir()) if file.is_file()]
        x_test = np.array([str(file) for file in files if _is_image(file)], dtype=object)
    channels = 1 if color_mode == "grayscale" else 3
    return ImageData(
        "image_folder", str(root), x_train, y_train, x_val, y_val, classes,
        tuple(image_size), channels, x_test, skipped_files=skipped, y_test=y_test,
    )  # fmt: skip


def _list_images(folder: Path, classes: list[str]):
    paths, labels, skipped = [], [], 0
    for label, name in enumerate(classes):
        for file in sorted((folder / name).glob("*")) if (folder / name).is_dir() else []:
            if not file.is_file():
                continue
            if _is_image(file):
                paths.append(str(file))
                labels.append(label)
            else:
                skipped += 1
    return np.array(paths, dtype=object), np.array(labels, dtype="int64"), skipped


def find_images(root: Path) -> tuple[list[str], int]:
    """Every image file under ``root``, sub-folders included, sorted; and how many were skipped."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    paths = [str(file) for file in files if _is_image(file)]
    return paths, len(files) - len(paths)


def _is_image(file: Path) -> bool:
    """Judged by the first bytes, as browsers do; a file that is not an image is skipped, with a warning."""
    reason = folders.why_not_image(file)
    if reason is not None:
        log.warning("skipping %s: %s", file, reason)
    return reason is None


def _subsample(x, y, max_samples, seed):
    if max_samples is None or max_samples >= len(x):
        return x, y
    keep = _stratified_indices(y, max_samples, seed)
    return x[keep], y[keep]


def _split(x, y, validation_split, seed):
    from sklearn.model_selection import train_test_split

    if len(y) < 2:
        raise DataError(f"only {len(y)} labelled image(s): need at least 2 to hold out a validation set")
    stratify = _stratify_by(y, round(len(y) * validation_split))
    return train_test_split(
        x, y, test_size=validation_split, random_state=seed, shuffle=True, stratify=stratify
    )


def _stratified_indices(y, n, seed):
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(
        np.arange(len(y)), train_size=n, random_state=seed, shuffle=True, stratify=_stratify_by(y, n)
    )
    return np.sort(keep)


def _stratify_by(y, smaller_part: int):
    """``y`` when a stratified split can keep every class on both sides, else None (plain split)."""
    counts = np.bincount(y)
    return y if counts[counts > 0].min() >= 2 and smaller_part >= len(counts) else None


def _resize(images: np.ndarray, size) -> np.ndarray:
    if tuple(images.shape[1:3]) == tuple(size):
        return images
    import tensorflow as tf

    return tf.image.resize(images, size, antialias=True).numpy().clip(0, 255)


def to_tf_datasets(
    data: ImageData, batch_size: int, seed: int, augment=None, val: bool = True, passes=None, skip: int = 0
):
    """Returns ``(train, val)`` ``tf.data`` pipelines: cached, seeded shuffle, prefetched.

    ``val=False``: no validation pipeline (None), when the caller scores validation otherwise.

    ``augment`` (a callable on image batches, e.g. a Keras ``Sequential`` of ``Random*``
    layers) runs on the training pipeline only: validation images are never augmented.

    ``passes=(first, end)``: the training pipeline is those passes over
    the training set, one after the other, and pass ``p``'s order and augmentation depend on
    ``(seed, p)`` and the batch's place alone, so a run resumed at pass ``p`` in a new process
    sees what an uninterrupted run would have; ``skip`` batches of the first pass are dropped.
    ``passes=None``: one pass, reshuffled at each iteration (a plain Keras ``fit(epochs=...)``).
    """
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    streamed = data.from_files and data.cache != "memory"  # a whole-set shuffle buffer would hold it all
    buffer = min(len(data.y_train), SHUFFLE_BUFFER) if streamed else len(data.y_train)
    # uint8 until batched: a whole-set shuffle buffer of float32 images held 4 times the decoded set
    images = image_dataset(data, data.x_train, data.y_train, as_float=False)
    if passes is None:
        train = images.shuffle(buffer, seed=seed).batch(batch_size)
        train = train.map(epochs.as_float, num_parallel_calls=autotune)
        if augment is not None:
            train = train.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=autotune)
    else:
        train = epochs.passes(images, len(data.y_train), buffer, batch_size, seed, passes, skip, augment)
    if not val:
        return train.prefetch(autotune), None
    val_ds = image_dataset(data, data.x_val, data.y_val, as_float=False).batch(batch_size)
    val_ds = val_ds.map(epochs.as_float, num_parallel_calls=autotune)
    return train.prefetch(autotune), val_ds.prefetch(autotune)


def image_dataset(data: ImageData, x: np.ndarray, y: np.ndarray, as_float: bool = True):
    """``(image, label)`` pairs in order; image files decoded up front and cached as ``data.cache``
    says, as float32 0-255 pixels (``as_float=False``: files' images stay uint8, to cast later)."""
    import tensorflow as tf

    if not data.from_files:
        return tf.data.Dataset.from_tensor_slices((x, y)).cache()
    images = decode_files(x, data.image_size, data.channels, data.cache, as_float=as_float)
    return tf.data.Dataset.zip((images, tf.data.Dataset.from_tensor_slices(y)))
