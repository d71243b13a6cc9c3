"""Data checks that run before anything starts: before TensorFlow loads, before any MLflow store.

    from pipeline.config import checks
    checks.check_data("train", "digit_recognizer", "train.csv", validation_split=0.2)

Each refuses data that cannot make a sensible classifier, in one line naming the file and the
problem (``DataError``). They read only what they need: a CSV's header and its label column, a
folder's listing and the first bytes of one image per class, so a 42,000-row Kaggle CSV is
checked in well under a second. What only decoding can tell (a corrupt image, a non-numeric
pixel) is left to the loaders in ``data``.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator
from pathlib import Path

from pipeline.config import folders
from pipeline.config.errors import DataError

KAGGLE_LAYOUT = "expected Kaggle's digit-recognizer CSV: label,pixel0,...,pixel783"


def check_data(
    task: str,
    name: str,
    path: str | None = None,
    test_path: str | None = None,
    *,
    validation_split: float = 0.2,
    max_samples: int | None = None,
) -> str | None:
    """Refuses a data set that cannot train (or, for ``task="predict"``, cannot be predicted on).

    Args:
        task: ``"train"`` or ``"predict"`` (a folder of images to label, any layout).
        name: the dataset option (``digit_recognizer``, ``image_folder``, ...). Bundled and
            downloaded data sets (``digits``, ``mnist``, ...) have nothing to check.
        path: the CSV file or image folder.
        test_path: a Kaggle ``test.csv`` to predict, without labels.
        validation_split: the share of images held out when there is no ``val/`` folder.
        max_samples: the stratified subset the run trains on, if any.

    Returns:
        For an image folder, the layout found, in one line (for the run's first log line).

    Raises:
        DataError: one line naming the file or folder and the problem.
    """
    if task == "predict" and name == "digit_recognizer":  # scored by predict.model
        _check_csv(Path(path), labelled=False)
    elif task == "predict":
        if path is not None:
            folders.check_predict_folder(Path(path))
    elif name == "digit_recognizer":
        counts = _check_csv(Path(path), labelled=True)
        _check_split(Path(path), "rows", sum(counts.values()), len(counts), validation_split, max_samples)
        if test_path is not None:
            _check_csv(Path(test_path), labelled=False)
    elif name == "image_folder":
        layout = folders.check_image_folder(Path(path))
        if layout.val is None:  # validation split from train/
            images, classes = layout.train_images(), len(layout.classes)
            _check_split(layout.train, "images", images, classes, validation_split, max_samples)
        return layout.describe(validation_split)
    return None


# --- Kaggle CSV ---------------------------------------------------------------------------------
def _check_csv(path: Path, labelled: bool) -> dict[int, int]:
    """Checks the header and the label column; returns how many rows each label has."""
    _check_file(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            columns = _header(path, handle.readline(), labelled)
            rows = _rows(path, handle, len(columns), columns.index("label") if "label" in columns else None)
            counts = _count_labels(path, rows) if "label" in columns else {0: sum(1 for _ in rows)}
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV ({KAGGLE_LAYOUT})") from None
    if not counts or sum(counts.values()) == 0:
        raise DataError(f"{path}: no image rows under the header")
    return counts


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a file ({KAGGLE_LAYOUT})")
    if not path.is_file():
        raise DataError(f"{path}: no such file ({KAGGLE_LAYOUT})")
    if not os.access(path, os.R_OK):
        raise DataError(f"{path}: cannot be read (permission denied)")


def _header(path: Path, line: str, labelled: bool) -> list[str]:
    columns = [column.strip().strip('"') for column in line.rstrip("\r\n").split(",")]
    if columns == [""]:
        raise DataError(f"{path}: empty file ({KAGGLE_LAYOUT})")
    if all(_is_number(column) for column in columns):
        raise DataError(f"{path}: no header row, the first line holds numbers ({KAGGLE_LAYOUT})")
    if labelled and "label" not in columns:
        raise DataError(f"{path}: no 'label' column; a test.csv without labels goes in dataset.test_path")
    pixels = len(columns) - ("label" in columns)
    side = math.isqrt(pixels)
    if pixels == 0 or side * side != pixels:
        raise DataError(
            f"{path}: {pixels} pixel columns is not a square image "
            f"(expected {'label + ' if labelled else ''}784 pixel columns for 28x28)"
        )
    return columns


def _rows(path: Path, handle, width: int, label_index: int | None) -> Iterator[tuple[int, str]]:
    """``(line number, label field)`` of each non-blank row; only the label column is split off."""
    for number, line in enumerate(handle, start=2):
        if not line.strip():
            continue
        if line.count(",") != width - 1:
            raise DataError(f"{path}: line {number} has {line.count(',') + 1} fields, the header {width}")
        if label_index is None:
            yield number, ""
        elif label_index == 0:
            yield number, line.partition(",")[0].strip().strip('"')
        else:
            yield number, line.split(",", label_index + 1)[label_index].strip().strip('"')


def _count_labels(path: Path, rows: Iterator[tuple[int, str]]) -> dict[int, int]:
    """Rows per label; refuses labels that are not the class numbers 0..K-1."""
    counts: dict[str, int] = {}
    first_line: dict[str, int] = {}
    for number, label in rows:
        counts[label] = counts.get(label, 0) + 1
        first_line.setdefault(label, number)
    labels: dict[int, int] = {}
    for text, count in counts.items():
        try:
            value = int(text)
        except ValueError:
            raise DataError(
                f"{path}: line {first_line[text]}: label {text!r} is not a whole number"
            ) from None
        if value < 0:
            raise DataError(
                f"{path}: line {first_line[text]}: label {value} is negative; labels are class numbers 0..K-1"
            )
        labels[value] = labels.get(value, 0) + count
    _check_classes(path, sorted(labels), lambda value: f"line {first_line[str(value)]}")
    return labels


def _check_classes(path: Path, labels: list[int], where) -> None:
    if len(labels) == 1:
        raise DataError(f"{path}: every row has label {labels[0]}; a classifier needs at least 2 classes")
    if labels and labels != list(range(len(labels))):
        stray = labels[-1]
        raise DataError(
            f"{path}: labels must be the class numbers 0..{len(labels) - 1} with no gaps, found "
            f"{_listing(labels)} ({where(stray)} has {stray}, which would make {stray + 1} classes)"
        )


def _listing(values: list[int], most: int = 12) -> str:
    shown = ", ".join(str(v) for v in values[:most])
    return shown if len(values) <= most else f"{shown}, ... ({len(values)} in all)"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --- how many images the split leaves ----------------------------------------------------------
def _check_split(
    path: Path, noun: str, rows: int, classes: int, validation_split: float, max_samples: int | None
) -> None:
    """Refuses a split that leaves no validation image or fewer training images than classes."""
    used = min(rows, max_samples) if max_samples else rows
    held_out = math.ceil(used * validation_split)  # as scikit-learn's train_test_split rounds
    if held_out >= 1 and used - held_out >= classes:
        return
    needed = next(n for n in itertools.count(classes + 1) if n - math.ceil(n * validation_split) >= classes)
    subset = f" (dataset.max_samples={max_samples})" if max_samples and max_samples < rows else ""
    raise DataError(
        f"{path}: {used} {noun}{subset} are too few for trainer.validation_split={validation_split} "
        f"({used - held_out} to train {classes} classes, {held_out} to validate); {needed} at least"
    )


def check_scoring_data(name: str, path: str, shape: tuple[int, int, int]) -> None:
    """Refuses data of the wrong shape for a model that takes ``shape`` (height, width, channels)
    images: a CSV with another number of pixel columns, or a folder of colour images for a
    grayscale model (or the reverse). Images of another size are resized, as training did.
    """
    height, width, channels = shape
    kind = f"{height}x{width}x{channels} ({'grayscale' if channels == 1 else 'RGB'})"
    if name == "digit_recognizer":
        with open(path, encoding="utf-8-sig") as handle:
            columns = [c for c in handle.readline().rstrip("\r\n").split(",") if c.strip('"') != "label"]
        if len(columns) != height * width * channels:
            raise DataError(
                f"{path}: {len(columns)} pixel columns, but the model takes {kind} images "
                f"({height * width * channels} columns)"
            )
        return
    from PIL import Image

    images = (
        file
        for file in sorted(Path(path).rglob("*"))
        if file.is_file() and folders.why_not_image(file) is None
    )
    for file, _ in zip(images, range(100)):  # the first 100: a folder is usually of one kind
        with Image.open(file) as image:
            found = 1 if image.mode in folders.GRAYSCALE_MODES else 3
        if found != channels:
            raise DataError(
                f"{path}: {file.relative_to(path)} is a {'grayscale' if found == 1 else 'colour'} image, "
                f"but the model takes {kind} images"
            )
