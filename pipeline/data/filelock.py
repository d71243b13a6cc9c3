"""One process at a time: an exclusive ``flock`` on a lock file, held for a ``with`` block.

Used where parallel jobs on one machine (or a shared filesystem) must take turns: creating a
new SQLite store (``tracking``) and computing a sweep's frozen-backbone features (``features``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from pipeline.config.errors import ConvlabError


class LockError(ConvlabError):
    """The lock file (or its folder) cannot be created: one line, which path and why."""


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
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_file, "a")  # noqa: SIM115 (closed below, after the lock is released)
    except OSError as err:
        raise LockError(f"cannot create the lock file {lock_file}: {err.strerror or err}") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
