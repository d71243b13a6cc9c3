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

import dataclasses
import itertools
import math
import os
from collections.abc import Iterator
from pathlib import Path

from pipeline.config.errors import DataError

IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF87a", b"GIF89a", b"BM")
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
    if task == "predict":
        if path is not None:
            _check_predict_folder(Path(path))
    elif name == "digit_recognizer":
        counts = _check_csv(Path(path), labelled=True)
        _check_split(Path(path), "rows", sum(counts.values()), len(counts), validation_split, max_samples)
        if test_path is not None:
            _check_csv(Path(test_path), labelled=False)
    elif name == "image_folder":
        return _check_image_folder(Path(path), validation_split, max_samples).describe(validation_split)
    return None


def why_not_image(file: Path) -> str | None:
    """None for a JPEG, PNG, GIF or BMP file (judged by its first bytes, as browsers do), else why not."""
    try:
        with open(file, "rb") as handle:
            head = handle.read(8)
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    return None if head.startswith(IMAGE_MAGIC) else "not a JPEG, PNG, GIF or BMP image"


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


# --- image folders ------------------------------------------------------------------------------
VAL_NAMES = ("val", "valid", "validation")  # synonyms, as data sets name their validation folder


@dataclasses.dataclass(frozen=True)
class FolderLayout:
    """How an image folder is laid out, as ``image_folder_layout`` found it.

    ``train``'s sub-folders are the classes. ``val`` is None when validation is split from
    ``train`` (``trainer.validation_split``); ``test`` is a held-out test set, labelled
    (``test/<class>/``) or not (images directly in ``test/``).
    """

    root: Path
    train: Path
    classes: list[str]
    val: Path | None = None
    test: Path | None = None
    test_labelled: bool = False

    def describe(self, validation_split: float) -> str:
        """One line for the run's log: which folders train, validate and test."""
        where = "root/<class>/" if self.train == self.root else f"{self.train.name}/<class>/"
        parts = [f"image folder {self.root}: {len(self.classes)} classes in {where}"]
        if self.val is not None:
            parts.append(f"validation from {self.val.name}/")
        else:
            parts.append(f"validation split {validation_split} (stratified, seeded)")
        if self.test is not None:
            kind = "held-out test set, labelled" if self.test_labelled else "unlabelled images to predict"
            parts.append(f"{self.test.name}/ = {kind}")
        return "; ".join(parts)


def image_folder_layout(root: Path) -> FolderLayout:
    """The layout of ``root``: ``root/train/<class>/`` (with ``val/`` or ``valid/`` or
    ``validation/``, and ``test/``), or ``root/<class>/`` (Keras' ``image_dataset_from_directory``)."""
    _check_folder(root)
    train = root / "train"
    if not train.is_dir():
        subfolders = [root / name for name in _class_folders(root)]
        flat = subfolders and all(any(why_not_image(f) is None for f in _files(d)) for d in subfolders)
        if not flat:
            raise DataError(
                f"{root}: expected {root}/<class>/ image folders, or {root}/train/<class>/ "
                "(and optionally val/ and test/)"
            )
        return FolderLayout(root, root, _class_folders(root))
    val = next((root / name for name in VAL_NAMES if (root / name).is_dir()), None)
    test = root / "test" if (root / "test").is_dir() else None
    labelled = test is not None and bool(_class_folders(test))
    return FolderLayout(root, train, _class_folders(train), val, test, labelled)


def _check_image_folder(root: Path, validation_split: float, max_samples: int | None) -> FolderLayout:
    layout = image_folder_layout(root)
    train, classes, val = layout.train, layout.classes, layout.val
    if not classes:
        raise DataError(f"{train}: no class folders (expected train/<class>/*.jpg)")
    if len(classes) == 1:
        raise DataError(f"{train}: one class folder ({classes[0]}); a classifier needs at least 2 classes")
    labelled = [folder for folder in (val, layout.test if layout.test_labelled else None) if folder]
    for other in labelled:
        other_classes = _class_folders(other)
        if not other_classes:
            raise DataError(f"{other}: no class folders (expected {other.name}/<class>/*.jpg, as in train/)")
        for name in other_classes:
            if name not in classes:
                raise DataError(f"{other / name}: class {name!r} is not in train/ ({_names(classes)})")
    folders = [train / c for c in classes] + [other / c for other in labelled for c in _class_folders(other)]
    for folder in folders:
        if not any(why_not_image(file) is None for file in _files(folder)):
            raise DataError(f"{folder}: empty class folder, no JPEG, PNG, GIF or BMP images in it")
    loose = layout.test is not None and not layout.test_labelled
    if loose and not any(why_not_image(file) is None for file in _files(layout.test)):
        raise DataError(f"{layout.test}: no JPEG, PNG, GIF or BMP images and no class folders in it")
    if val is None:
        images = sum(len(_files(train / c)) for c in classes)
        _check_split(train, "images", images, len(classes), validation_split, max_samples)
    return layout


def _check_predict_folder(root: Path) -> None:
    _check_folder(root)
    if not any(why_not_image(file) is None for file in root.rglob("*") if file.is_file()):
        raise DataError(f"{root}: no JPEG, PNG, GIF or BMP images in it or its sub-folders")


def _check_folder(root: Path) -> None:
    if root.is_file():
        raise DataError(f"{root}: is a file; expected a folder of images")
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")


def _class_folders(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir() if entry.is_dir())


def _files(folder: Path) -> list[Path]:
    return sorted(entry for entry in folder.iterdir() if entry.is_file())


def _names(classes: list[str]) -> str:
    return "train/ has " + ", ".join(classes[:8]) + (", ..." if len(classes) > 8 else "")
