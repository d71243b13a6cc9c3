"""One process at a time: an exclusive ``flock`` on a lock file, held for a ``with`` block.

Used where parallel jobs on one machine (or a shared filesystem) must take turns: creating a
new SQLite store (``tracking``) and computing a sweep's frozen-backbone features (``features``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """Holds an exclusive ``flock`` on ``lock_file`` (created, with its folder, if missing).

    The file is left in place: removing it could let a process that is waiting on the old file
    and one that creates a new file both go ahead. Systems without ``fcntl`` get no lock.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
