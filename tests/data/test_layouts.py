"""Image folders laid out as users keep them, each trained through the real CLI on a real store.

One multirun trains all three layouts in one process (one TensorFlow start-up), session-wide:
- ``flat/<class>/``: Keras' ``image_dataset_from_directory`` layout, validation split seeded;
- ``kaggle/train/<class>/``, ``valid/<class>/``, ``test/<class>/``: test/ is a held-out test set;
- ``unlabelled/train/<class>/`` with ``test/*.png``: the test images get ``predictions.csv``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import cli

from pipeline.config import checks, folders
from pipeline.config.errors import DataError
from pipeline.tracking import contract

CLASSES = ("cat", "dog")


def _images(folder: Path, count: int, brightness: int, rng) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = rng.integers(0, 60, size=(12, 12, 3)) + brightness
        Image.fromarray(pixels.clip(0, 255).astype("uint8")).save(folder / f"{i}.png")


def write_layouts(root: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    for index, name in enumerate(CLASSES):
        _images(root / "flat" / name, 6, 150 * index, rng)
        for split, count in (("train", 6), ("valid", 2), ("test", 3)):
            _images(root / "kaggle" / split / name, count, 150 * index, rng)
        _images(root / "unlabelled" / "train" / name, 6, 150 * index, rng)
    _images(root / "unlabelled" / "test", 4, 70, rng)
    return {name: root / name for name in ("flat", "kaggle", "unlabelled")}


@pytest.fixture(scope="session")
def layout_sweep(tracking_uri, tmp_path_factory):
    """The three layouts, trained as one sweep over ``dataset.path``: (runs by path, CLI result)."""
    import mlflow

    root = tmp_path_factory.mktemp("layouts")
    paths = write_layouts(root)
    experiment = "image-folder-layouts"
    result = cli(
        "-m", "dataset=image_folder", "dataset.image_size=[12,12]", "trainer.epochs=1",
        "trainer.batch_size=8",
        f"dataset.path={','.join(str(p) for p in paths.values())}",
        f"tracking.uri={tracking_uri}", f"tracking.experiment_name={experiment}",
        cwd=root, timeout=600,
    )  # fmt: skip
    client = mlflow.MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id]) if found else []
    by_path = {r.data.params.get("dataset.path"): r for r in runs if contract.PARENT in r.data.tags}
    return {name: by_path.get(str(path)) for name, path in paths.items()}, result, client, root


@pytest.mark.slow
def test_every_layout_trains(layout_sweep):
    runs, result, _, _ = layout_sweep
    assert result.returncode == 0, result.stderr[-3000:]
    assert {name: run and run.info.status for name, run in runs.items()} == dict.fromkeys(runs, "FINISHED")


@pytest.mark.slow
def test_a_flat_class_folder_layout_splits_validation_and_says_so(layout_sweep):
    runs, result, _, root = layout_sweep
    said = result.stdout + result.stderr
    assert f"image folder {root / 'flat'}: 2 classes in root/<class>/; validation split 0.2" in said
    assert contract.TEST_ACCURACY not in runs["flat"].data.metrics


@pytest.mark.slow
def test_a_kaggle_layout_scores_its_held_out_test_set_once(layout_sweep):
    runs, result, client, root = layout_sweep
    run = runs["kaggle"]
    said = result.stdout + result.stderr
    assert f"{root / 'kaggle'}: 2 classes in train/<class>/; validation from valid/" in said
    assert "test/ = held-out test set, labelled" in said
    assert {contract.TEST_ACCURACY, contract.TEST_LOSS} <= set(run.data.metrics)
    assert 0.0 <= run.data.metrics[contract.TEST_ACCURACY] <= 1.0
    history = client.get_metric_history(run.info.run_id, contract.TEST_ACCURACY)
    assert len(history) == 1  # once, at the end: never per epoch, never used to choose
    figures = [a.path for a in client.list_artifacts(run.info.run_id, "figures")]
    assert "figures/test_confusion_matrix.png" in figures


@pytest.mark.slow
def test_unlabelled_test_images_get_predictions_csv(layout_sweep, tmp_path):
    runs, _, client, root = layout_sweep
    run = runs["unlabelled"]
    local = client.download_artifacts(run.info.run_id, "predictions/predictions.csv", str(tmp_path))
    with open(local) as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(r["file"]).name for r in rows] == [f"{i}.png" for i in range(4)]
    assert {r["label"] for r in rows} <= set(CLASSES)
    assert contract.TEST_ACCURACY not in run.data.metrics


@pytest.mark.slow
def test_the_comparison_reports_test_accuracy(layout_sweep, tracking_uri):
    _, _, _, root = layout_sweep
    done = cli_compare(root, "--tracking-uri", tracking_uri, "--metric", contract.TEST_ACCURACY)
    assert done.returncode == 0, done.stderr
    assert contract.TEST_ACCURACY in done.stdout


def cli_compare(root: Path, *args: str):
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "pipeline.compare", "--experiment", "image-folder-layouts", "--no-log", *args],
        cwd=root, capture_output=True, text=True, timeout=120, env=os.environ,
    )  # fmt: skip


@pytest.mark.parametrize("name", ["valid", "validation", "val"])
def test_validation_folder_synonyms(name, tmp_path):
    rng = np.random.default_rng(0)
    for index, label in enumerate(CLASSES):
        _images(tmp_path / "train" / label, 2, 100 * index, rng)
        _images(tmp_path / name / label, 1, 100 * index, rng)
    layout = folders.image_folder_layout(tmp_path)
    assert layout.val == tmp_path / name and layout.test is None


def test_a_folder_of_loose_images_is_refused_in_one_line(tmp_path):
    _images(tmp_path / "pictures", 3, 0, np.random.default_rng(0))
    (tmp_path / "pictures" / "empty").mkdir()
    with pytest.raises(DataError, match=r"expected .*/<class>/ image folders, or .*/train/<class>/"):
        checks.check_data("train", "image_folder", str(tmp_path / "pictures"))
