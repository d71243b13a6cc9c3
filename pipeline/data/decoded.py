"""Decoded image files as uint8 arrays: once per process, and with ``dataset.cache=disk`` once per machine.

A sweep's jobs over seeds read the same folder at the same size and split, so they want the
same pixels: the first job decodes them, the others take the array from this process's memory
(the basic launcher runs every job in one process). With ``dataset.cache=disk`` the array is also
written to ``KEY.npy`` in ``cache_folder()``, once (one process decodes while others wait on a
lock file), atomically, and memory-mapped by every process that reads it: a joblib or submitit
job decodes nothing another process has decoded, and the page cache holds one copy.

The key is the content: the files in order (the split and, for a subsample, its seed decide
which and in what order), their sizes and modification times, the size and channels, and the
decoder's version. A file changed, added or removed makes a new key, so a stale array is never
used; writing a new array for a file list removes that list's old ones.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from pipeline.data import filelock

log = logging.getLogger(__name__)

CACHE_VARIABLE = "CONVLAB_IMAGE_CACHE"  # the folder for dataset.cache=disk; default below
VERSION = 1  # of decode.decode_uint8's output: bump when its pixels change
MEMORY_ENTRIES = 4  # arrays kept in memory: a folder's train, val and test sets, and one more
MEMORY_SHARE = 0.5  # ... and at most this share of the machine's memory (the newest is always kept)
_memory: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
files_decoded = 0  # image files this process decoded into kept arrays (the tests read it)


def cache_folder() -> Path:
    """``$CONVLAB_IMAGE_CACHE``, else ``$XDG_CACHE_HOME/convlab/images`` (``~/.cache/convlab/images``)."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "convlab" / "images"


def cache_key(paths: Sequence[str], image_size: Sequence[int], channels: int) -> tuple[str, str]:
    """``(listing, contents)``: hashes of what is decoded how, and of the files' sizes and times."""
    listing = json.dumps([VERSION, list(image_size), channels, list(paths)]).encode()
    stats = [os.stat(path) for path in paths]
    contents = "\n".join(f"{stat.st_size}:{stat.st_mtime_ns}" for stat in stats).encode()
    return hashlib.sha256(listing).hexdigest()[:16], hashlib.sha256(contents).hexdigest()[:16]


def images(
    paths: Sequence[str],
    image_size: Sequence[int],
    channels: int,
    decode_all: Callable[[], np.ndarray],
    disk: bool = False,
) -> np.ndarray:
    """The decoded images of ``paths``: from memory, from disk (``disk=True``), or ``decode_all()``.

    Args:
        paths: the image files, in the order the array holds them.
        image_size: ``(height, width)``; channels: 1 or 3 (both part of the key).
        decode_all: decodes every file into a ``(N, H, W, C)`` uint8 array.
        disk: also keep the array in ``cache_folder()``, shared by processes, memory-mapped.
    """
    listing, contents = cache_key(paths, image_size, channels)
    key = f"{listing}-{contents}" + ("-disk" if disk else "")  # disk: a memory-mapped file
    if key in _memory:
        _memory.move_to_end(key)
        log.info("images %s: %d files from memory", key, len(paths))
        return _memory[key]
    found = _on_disk(cache_folder(), listing, contents, decode_all) if disk else _decoded(decode_all)
    _memory[key] = found
    budget = _physical_memory() * MEMORY_SHARE
    while len(_memory) > MEMORY_ENTRIES or (len(_memory) > 1 and _bytes_held() > budget):
        _memory.popitem(last=False)
    return found


def _bytes_held() -> int:
    """Bytes of the arrays kept in memory; memory-mapped ones live in the page cache, not here."""
    return sum(array.nbytes for array in _memory.values() if not isinstance(array, np.memmap))


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: no budget
        return 1 << 62


def _decoded(decode_all: Callable[[], np.ndarray]) -> np.ndarray:
    global files_decoded
    started = time.perf_counter()
    array = decode_all()
    files_decoded += len(array)
    log.info("decoded %d image files in %.1f s", len(array), time.perf_counter() - started)
    return array


def _on_disk(folder: Path, listing: str, contents: str, decode_all) -> np.ndarray:
    """``FOLDER/LISTING-CONTENTS.npy`` memory-mapped; decoded and written there first if missing.

    One process decodes at a time (``LISTING.lock``): a parallel job wanting the same images
    waits, then maps the file rather than decoding again.
    """
    path = folder / f"{listing}-{contents}.npy"
    if not path.is_file():
        with filelock.exclusive(folder / f"{listing}.lock"):
            if not path.is_file():  # not written while this process waited for the lock
                array = _decoded(decode_all)
                partial = folder / f"{listing}-{contents}.{os.getpid()}.partial.npy"
                np.save(partial, array)
                partial.replace(path)  # atomic: a reader without the lock never sees half a file
                for stale in folder.glob(f"{listing}-*.npy"):  # the same files before they changed
                    if stale != path and ".partial." not in stale.name:
                        stale.unlink(missing_ok=True)  # a process mapping it keeps its pages
                log.info("images %s-%s: written to %s", listing, contents, path)
                return np.load(path, mmap_mode="r")
    log.info("images %s-%s: memory-mapped from %s", listing, contents, path)
    return np.load(path, mmap_mode="r")
