"""Bad data is refused before anything starts: one line naming the file and the problem.

The table below is every way a data set can fail to make a sensible classifier. A few cases go
through the real command line (exit code, one stderr line, no store created, quickly); the rest
through ``pipeline.run``, which composes and checks exactly as the command line does.
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import time

import pytest
from conftest import cli, write_digit_csv, write_image_folder

import pipeline
from pipeline.config import checks

PIXELS = "pixel0,pixel1,pixel2,pixel3"  # 2x2 images: the checks read the layout, not the size
HEADER = f"label,{PIXELS}"
TWO = {"cat": 3, "dog": 3}  # two classes of three images


def csv(rows, header=HEADER):
    """A Kaggle-style CSV of 2x2 images, one ``(label, pixel...)`` row each."""

    def write(tmp_path):
        path = tmp_path / "train.csv"
        lines = ([header] if header else []) + [",".join(str(v) for v in row) for row in rows]
        path.write_text("\n".join(lines) + "\n")
        return ["dataset=digit_recognizer", f"dataset.path={path}"]

    return write


def labelled(*labels):
    return csv([[label, 0, 64, 128, 255] for label in labels])


def folder(train, val=None):
    """An image folder: ``{"cat": 3, "dog": 0}`` is train/cat with 3 PNGs and an empty train/dog."""

    def write(tmp_path):
        from PIL import Image

        root = tmp_path / "images"
        for split, classes in (("train", train), ("val", val or {})):
            for name, count in classes.items():
                (root / split / name).mkdir(parents=True)
                for i in range(count):
                    Image.new("L", (8, 8), 40 * i).save(root / split / name / f"{i}.png")
        return ["dataset=image_folder", f"dataset.path={root}"]

    return write


def missing(tmp_path):
    return ["dataset=digit_recognizer", f"dataset.path={tmp_path / 'absent.csv'}"]


def binary(tmp_path):
    (tmp_path / "train.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 20)
    return ["dataset=digit_recognizer", f"dataset.path={tmp_path / 'train.csv'}"]


def a_folder(tmp_path):
    (tmp_path / "train.csv").mkdir()
    return ["dataset=digit_recognizer", f"dataset.path={tmp_path / 'train.csv'}"]


def missing_test_csv(tmp_path):
    train = write_digit_csv(tmp_path / "train.csv", rows=20)
    return ["dataset=digit_recognizer", f"dataset.path={train}", f"dataset.test_path={tmp_path / 'test.csv'}"]


def no_class_folders(tmp_path):
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "images" / "train" / "cat.png").write_bytes(b"\x89PNG")  # a file, not a class folder
    return ["dataset=image_folder", f"dataset.path={tmp_path / 'images'}"]


def write_nothing(path):
    return lambda tmp_path: ["dataset=image_folder", f"dataset.path={tmp_path / path}"]


CASES = [
    # (id, data writer, what the one line must say, through the command line)
    ("missing-file", missing, r"absent\.csv: no such file", True),
    ("csv-is-a-folder", a_folder, r"train\.csv: is a folder, not a file", False),
    ("binary-file", binary, r"train\.csv: not a text CSV", False),
    ("empty-file", csv([], header=""), r"train\.csv: empty file", False),
    ("no-header", csv([[0, 1, 2, 3, 4], [1, 1, 2, 3, 4]], header=None), r"train\.csv: no header row", True),
    ("header-only", csv([]), r"train\.csv: no image rows under the header", False),
    ("no-label-column", csv([[1, 2, 3, 4]], header=PIXELS), "no 'label' column", False),
    ("not-square", csv([[0, 1, 2]], header="label,pixel0,pixel1"), "2 pixel columns is not a square", False),
    ("row-too-long", csv([[0, 1, 2, 3, 4], [1, 1, 2, 3, 4, 5]]), r"line 3 has 6 fields, the header 5", False),
    ("label-not-a-number", labelled(0, 1, "cat"), r"line 4: label 'cat' is not a whole number", False),
    ("negative-label", labelled(0, 1, 2, -1, 1, 0), r"line 5: label -1 is negative", False),
    ("stray-label", labelled(*[0, 1, 2, 3] * 3, 42), r"class numbers 0\.\.4 .*found 0, 1, 2, 3, 42", True),
    ("single-class", labelled(*[3] * 10), r"every row has label 3; .*at least 2 classes", False),
    ("too-few-rows", labelled(0, 1), r"2 rows are too few for trainer\.validation_split=0\.2", True),
    ("missing-test-csv", missing_test_csv, r"test\.csv: no such file", False),
    ("no-image-folder", write_nothing("absent"), r"absent: no such folder", False),
    ("no-train-folder", folder({}, {"cat": 2}), r"images: expected .*train/<class>/", False),
    ("no-class-folders", no_class_folders, r"train: no class folders", False),
    ("empty-class-folder", folder({"cat": 3, "dog": 0}), r"train/dog: empty class folder", True),
    ("one-class-folder", folder({"cat": 5}), r"train: one class folder \(cat\)", False),
    ("val-class-not-in-train", folder(TWO, {"cat": 1, "bird": 1}), r"val/bird: .*not in train/", False),
    ("empty-val-class", folder(TWO, {"cat": 1, "dog": 0}), r"val/dog: empty class folder", False),
    ("too-few-images", folder({"cat": 1, "dog": 1}), r"2 images are too few", False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("writer", "message", "through_cli"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_data_is_refused_in_one_line_before_anything_starts(
    writer, message, through_cli, tmp_path, monkeypatch
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the default store: ./mlflow.db
    monkeypatch.chdir(tmp_path)
    overrides = writer(tmp_path)
    if through_cli:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = cli(*overrides, cwd=tmp_path, timeout=60)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # CPU seconds, not wall time: on a loaded CI machine the wall clock measures the neighbours
        seconds = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0 and len(lines) == 1, result.stderr
        assert lines[0].startswith("convlab: ") and re.search(message, lines[0])
        if "absent" in message:  # answered before TensorFlow or MLflow load
            assert seconds < 5, f"{seconds:.1f} s"
    else:
        with pytest.raises(pipeline.DataError, match=message) as err:
            pipeline.run(overrides)
        assert "\n" not in str(err.value)
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_good_data_passes_and_a_big_csv_is_checked_quickly(tmp_path):
    train = write_digit_csv(tmp_path / "train.csv", rows=30)
    test = write_digit_csv(tmp_path / "test.csv", rows=3, labelled=False)
    checks.check_data("train", "digit_recognizer", str(train), str(test))
    images = write_image_folder(tmp_path / "images", per_class=4)
    checks.check_data("train", "image_folder", str(images))
    checks.check_data("predict", "image_folder", str(images / "train" / "cat"))
    checks.check_data("train", "digits", max_samples=200)
    # Kaggle's train.csv has 42,000 rows of 785 columns: the checks read only the label column
    big = tmp_path / "big.csv"
    row = ",".join(["0"] * 784)
    big.write_text("label," + ",".join(f"pixel{i}" for i in range(784)) + "\n")
    with big.open("a") as handle:
        handle.writelines(f"{i % 10},{row}\n" for i in range(10_000))
    started = time.perf_counter()
    checks.check_data("train", "digit_recognizer", str(big))
    assert time.perf_counter() - started < 5


def test_the_errors_are_exported_at_the_top_level_without_loading_tensorflow():
    code = (
        "import sys; from pipeline import ConfigError, ConvlabError, DataError; "
        "assert issubclass(DataError, ConvlabError) and issubclass(ConfigError, ConvlabError); "
        "print(sorted(m for m in ('tensorflow', 'keras', 'mlflow') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr
