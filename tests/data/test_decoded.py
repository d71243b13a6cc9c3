"""A folder's images are decoded once per process and, with ``dataset.cache=disk``, once per machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, compose, write_image_folder

from pipeline.config import composition
from pipeline.config.errors import ConfigError
from pipeline.data import decoded, sources

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """``dataset.cache=disk`` writes here, and this process's memory starts empty."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(decoded.CACHE_VARIABLE, str(folder))
    monkeypatch.setattr(decoded, "_memory", type(decoded._memory)())
    return folder


def pixels(root: Path, cache: str, seed: int = 0):
    """One epoch's training images (order: ``seed``) and the validation images, as arrays."""
    split = sources.load("image_folder", (16, 16), 0.25, 0, path=str(root), color_mode="rgb", cache=cache)
    train, val = sources.to_tf_datasets(split, batch_size=100, seed=seed)
    return [np.concatenate([batch[0].numpy() for batch in ds]) for ds in (train, val)]


def test_a_second_job_over_the_same_folder_decodes_nothing(tmp_path, cache):
    root = write_image_folder(tmp_path / "images", per_class=4, with_val=False, size=20)
    before = decoded.files_decoded
    first_train, first_val = pixels(root, "memory", seed=0)
    assert decoded.files_decoded - before == 8  # every file, once
    second_train, second_val = pixels(root, "memory", seed=1)  # the next seed of a sweep
    assert decoded.files_decoded - before == 8
    np.testing.assert_array_equal(second_val, first_val)
    assert sorted(i.tobytes() for i in second_train) == sorted(i.tobytes() for i in first_train)
    assert not cache.exists()  # memory only


READ_FROM_DISK = (
    "import sys; from pipeline.data import decoded, sources\n"
    "split = sources.load('image_folder', (16, 16), 0.25, 0, path=sys.argv[1], cache='disk',\n"
    "                     color_mode='rgb')\n"
    "train, _ = sources.to_tf_datasets(split, batch_size=100, seed=0)\n"
    "print(decoded.files_decoded, sum(len(batch[0]) for batch in train))\n"
)


def test_the_disk_cache_is_decoded_once_and_read_by_another_process(tmp_path, cache):
    root = write_image_folder(tmp_path / "images", per_class=4, with_val=False, size=20)
    before = decoded.files_decoded
    train, val = pixels(root, "disk")
    assert decoded.files_decoded - before == 8
    assert len(list(cache.glob("*.npy"))) == 2  # train, val
    memory_train, memory_val = pixels(root, "memory")
    np.testing.assert_array_equal(val, memory_val)
    assert sorted(i.tobytes() for i in train) == sorted(i.tobytes() for i in memory_train)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-c", READ_FROM_DISK, str(root)]
    other = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert other.returncode == 0, other.stderr[-2000:]
    assert other.stdout.split() == ["0", "6"]  # nothing decoded: 6 training images memory-mapped


def test_a_changed_file_is_decoded_again_and_its_old_cache_removed(tmp_path, cache):
    from PIL import Image

    root = write_image_folder(tmp_path / "images", per_class=4, with_val=False, size=20)
    _, val = pixels(root, "disk")
    old = set(cache.glob("*.npy"))
    for file in (root / "train").rglob("*.png"):  # every file: whichever landed in val changes
        Image.fromarray(np.full((20, 20, 3), 7, dtype="uint8")).save(file)
    before = decoded.files_decoded
    _, changed = pixels(root, "disk")
    assert decoded.files_decoded - before == 8  # the stale arrays are not used
    assert np.all(changed == 7) and not np.array_equal(changed, val)
    assert not old & set(cache.glob("*.npy")) and len(list(cache.glob("*.npy"))) == 2


def test_a_bad_cache_value_is_one_line():
    with pytest.raises(ConfigError, match=re.escape("dataset.cache='ram'")) as err:
        composition.validate(compose(["dataset=image_folder", "dataset.path=x", "dataset.cache=ram"]))
    assert "\n" not in str(err.value) and "disk" in str(err.value)


@pytest.mark.slow
def test_a_sweep_over_seeds_decodes_the_folder_once(store, tmp_path):
    root = write_image_folder(tmp_path / "images", per_class=6, with_val=False, size=20)
    result = cli(
        "-m", "dataset=image_folder", f"dataset.path={root}", "dataset.image_size=[16,16]",
        "seed=0,1", "trainer.epochs=1", "trainer.evaluate=false", *store.overrides, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(tmp_path.glob("multirun/*/*/*/convlab.log"))  # the jobs' logs, in order
    assert [re.findall(r"decoded (\d+) image files", job.read_text()) for job in jobs] == [["9", "3"], []]
    assert re.findall(r"(\d+) files from memory", jobs[1].read_text()) == ["9", "3"]  # train, val
