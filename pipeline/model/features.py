"""Frozen-backbone features, computed once: the head then trains in milliseconds per epoch.

A frozen backbone without augmentation maps each image to the same features every epoch, so
``extract`` runs it once over the training and validation images and the head trains on
the result: the same numbers as training the whole model (same seed, float tolerance).
Features stay in memory for the process (a sweep's jobs over seeds share them) and, with
``trainer.feature_cache_dir`` set, on disk, keyed by backbone, weights and data; a sweep's jobs
default to ``SWEEP_FOLDER`` in the sweep's output folder (``app.task``). Processes that
want the same missing features at once (a parallel sweep's jobs) take turns on a lock file: one
computes, the others wait and read its file.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pipeline.data import filelock
from pipeline.data import sources as data_module
from pipeline.model import backbones

log = logging.getLogger(__name__)

SWEEP_FOLDER = ".features"  # in a sweep's output folder: its jobs' features, whatever the launcher
MEMORY_ENTRIES = 2  # feature sets kept in memory: enough for a sweep over seeds
_memory: collections.OrderedDict[str, tuple[np.ndarray, np.ndarray]] = collections.OrderedDict()


def cache_key(
    backbone: Mapping,
    data_digest: str,
    image_shape: Sequence[int],
    policy: str,
    seed: int,
    files: Sequence[str] = (),
) -> str:
    """What the features depend on, hashed.

    Args:
        backbone: the backbone's config (name, weights, alpha, ...); ``weights`` as the schema
            normalised it: ``imagenet``, None or an absolute path.
        data_digest: ``ImageData.digest()``: the split, file names and labels.
        image_shape: ``(height, width, channels)`` fed to the model.
        policy: the Keras float policy (``float32``, ``mixed_float16``, ...).
        seed: matters only for random weights, which the seed initialises.
        files: image files, whose sizes and times stand in for their contents.
    """
    weights = backbone.get("weights")
    if weights is None:
        weights = f"random, seed {seed}"
    elif weights != "imagenet":
        weights = _file_identity(weights)
    parts = {
        **backbone,
        "weights": weights,
        "data": data_digest,
        "image_shape": list(image_shape),
        "policy": policy,
        "files": hashlib.sha256("\n".join(_file_identity(f) for f in files).encode()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def head_and_features(
    model, data, backbone: Mapping, policy: str, seed: int, batch_size: int, cache_dir: str | None
):
    """Cuts ``model`` at its ``features`` layer and computes the features of ``data``'s images once.

    Args:
        model: a model built on a pretrained backbone (``backbones.pretrained``).
        data: the run's ``ImageData``.
        backbone: the backbone's config (name, weights, ...), part of the cache key.
        policy: the Keras float policy; seed: initialises random weights; both in the key.
        batch_size: images per batch while extracting.
        cache_dir: ``trainer.feature_cache_dir``: a folder shared across processes, or None.

    Returns:
        ``(head, train_features, val_features, source, key)``: the head shares ``model``'s layers.
    """

    extractor, head = backbones.split_at_features(model)
    shape = (*data.image_size, data.channels)
    files = [*data.x_train, *data.x_val] if data.from_files else []
    key = cache_key(backbone, data.digest(), shape, policy, seed, files)

    def images(x, y):
        return data_module.image_dataset(data, x, y).batch(batch_size).prefetch(2)

    train_images, val_images = images(data.x_train, data.y_train), images(data.x_val, data.y_val)
    x_train, x_val, source = extract(extractor, train_images, val_images, key, cache_dir)
    return head, x_train, x_val, source, key


def extract(extractor, train_images, val_images, key: str, cache_dir: str | None = None):
    """Features of the training and validation images, from the cache when it has them.

    Args:
        extractor: a ``keras.Model`` from images to features.
        train_images: batched ``tf.data`` images in the training set's order (labels ignored).
        val_images: the same for the validation set.
        key: ``cache_key(...)`` of these images and this backbone.
        cache_dir: a folder for ``KEY.npz`` files shared across processes; None for memory only.

    Returns:
        ``(train_features, val_features, source)`` with source ``memory``, ``disk`` or ``computed``.
    """
    if key in _memory:
        _memory.move_to_end(key)
        return (*_memory[key], "memory")
    if cache_dir is None:
        found, source = _compute(extractor, train_images, val_images), "computed"
    else:
        folder = Path(cache_dir).expanduser()
        found, source = _stored_or_computed(extractor, train_images, val_images, folder, key)
    _memory[key] = found
    while len(_memory) > MEMORY_ENTRIES:
        _memory.popitem(last=False)
    log.info("features %s: %s train, %s val (%s)", key, found[0].shape, found[1].shape, source)
    return (*found, source)


def _compute(extractor, train_images, val_images) -> tuple[np.ndarray, np.ndarray]:
    return extractor.predict(train_images, verbose=0), extractor.predict(val_images, verbose=0)


def _stored_or_computed(extractor, train_images, val_images, folder: Path, key: str):
    """``(features, source)`` from ``FOLDER/KEY.npz``, or computed and written there.

    One process computes at a time (``KEY.lock``): a parallel job wanting the same features
    waits, then reads the file rather than running the backbone again.
    """
    path = folder / f"{key}.npz"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        with filelock.exclusive(folder / f"{key}.lock"):
            if not path.is_file():  # not written while this process waited for the lock
                found = _compute(extractor, train_images, val_images)
                partial = folder / f"{key}.{os.getpid()}.partial.npz"
                np.savez(partial, train=found[0], val=found[1])
                partial.replace(path)  # atomic: a reader without the lock never sees half a file
                return found, "computed"
    with np.load(path) as stored:
        return (stored["train"], stored["val"]), "disk"


def _file_identity(path: str | Path) -> str:
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return f"{resolved}:{stat.st_size}:{stat.st_mtime_ns}"
