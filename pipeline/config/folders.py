"""Image folders, checked before anything starts: their layout, their classes, their images.

Read from the listing and the first bytes of the files (``why_not_image``), never by decoding: a
corrupt image is left to the loaders in ``data``. ``checks.check_data`` calls these.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pipeline.config.errors import DataError

GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "F")  # PIL's one-channel modes (LA: gray + alpha)
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF87a", b"GIF89a", b"BM")
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

    def train_images(self) -> int:
        """How many files ``train``'s class folders hold."""
        return sum(len(_files(self.train / c)) for c in self.classes)

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


def check_image_folder(root: Path) -> FolderLayout:
    """Refuses an image folder that cannot train: fewer than 2 classes, an empty class folder, a
    val/ or test/ class that train/ lacks; returns its layout (the split is checked by ``checks``)."""
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
    return layout


def check_predict_folder(root: Path) -> None:
    """Refuses a folder to predict on that holds no image, at any depth."""
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


def why_not_image(file: Path) -> str | None:
    """None for a JPEG, PNG, GIF or BMP file (judged by its first bytes, as browsers do), else why not."""
    try:
        with open(file, "rb") as handle:
            head = handle.read(8)
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    return None if head.startswith(IMAGE_MAGIC) else "not a JPEG, PNG, GIF or BMP image"
