"""A store that fails mid-run: told apart from a mistake, and reported in one line.

    from pipeline.tracking import faults
    faults.unreachable(err)                   # the server (or its database) did not answer: retry
    faults.disk_full_path(err, uri)           # the path on a full disk, or None

A tracking server that stops answering, or answers that its database is restarting, is an
outage to ride out (``backlog``), not a failed run; past the time it is given, ``OutageError``.
A full disk under the store (or the run's artifacts) is ``DiskFullError``, one line naming the
path; a SQLite store on it still has its run ended, in place (``end_run_in_place``).
"""

from __future__ import annotations

import contextlib
import errno
import re
import sqlite3

from pipeline.config.errors import ConvlabError
from pipeline.tracking import contract, store


class DiskFullError(ConvlabError):
    """The disk holding the store (or the run's artifacts) is full: one line, which path."""


class OutageError(ConvlabError):
    """The tracking server stopped answering mid-run and did not come back in time."""


UNREACHABLE = (  # what MLflow's HTTP client says when the server is gone or cannot answer
    "Max retries exceeded", "Connection refused", "Connection aborted", "Connection reset",
    "RemoteDisconnected", "Read timed out", "NewConnectionError",
)  # fmt: skip


DATABASE_DOWN = (  # what the server answers while its database restarts (503, or 400 from SQLAlchemy)
    "TEMPORARILY_UNAVAILABLE", "server closed the connection unexpectedly", "connection already closed",
    "could not connect to server", "the database system is shutting down",
    "the database system is starting up", "terminating connection due to administrator command",
    "the connection is closed",  # psycopg 3's word for psycopg2's "connection already closed"
)  # fmt: skip
UNAVAILABLE_STATUS = (502, 503, 504)  # a proxy without its server, a server without its database


def unreachable(err: BaseException) -> bool:
    """Whether ``err`` (or an error behind it) says the tracking server did not answer, or
    answered that it cannot reach its database; a client's own mistake (4xx) is not."""
    seen: BaseException | None = err
    for _ in range(20):
        if seen is None:
            return False
        if isinstance(seen, ConnectionError) or any(
            word in str(seen) for word in UNREACHABLE + DATABASE_DOWN
        ):
            return True
        if _http_status(seen) in UNAVAILABLE_STATUS:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _http_status(err: BaseException) -> int | None:
    """The HTTP status of MLflow's answer in ``err``: a ``RestException``'s, or the one in
    ``failed with error code 503 != 200``; None for other errors."""
    found = re.search(r"failed with error code (\d{3}) != 200", str(err))
    if found:
        return int(found.group(1))
    if type(err).__name__ == "RestException" and hasattr(err, "get_http_status_code"):
        return err.get_http_status_code()
    return None


def disk_full_path(err: BaseException, uri: str) -> str | None:
    """The path on a full disk when ``err``, or an error behind it, says "no space left"; else None."""
    seen: BaseException | None = err
    for _ in range(20):  # a chain of causes, never a cycle
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return str(seen.filename or store.sqlite_path(uri) or uri)
        if "database or disk is full" in str(seen):  # SQLite's word for ENOSPC
            return str(store.sqlite_path(uri) or store.redact(uri))
        seen = seen.__cause__ or seen.__context__
    return None


def end_run_in_place(uri: str, run_id: str, status: str, error: str) -> bool:
    """Ends a run in a SQLite store whose disk is full, where MLflow's own write just failed.

    Changing a row in place needs no new page in the database, only a journal: kept in memory
    here, so the run is not left RUNNING. Returns whether the run was ended (False for other stores).
    """
    import time

    path = store.sqlite_path(uri)
    if path is None or not run_id:
        return False
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=10, isolation_level=None)) as db:
            db.execute("PRAGMA journal_mode=MEMORY")
            db.execute(
                "UPDATE runs SET status=?, end_time=? WHERE run_uuid=? AND status='RUNNING'",
                (status, int(time.time() * 1000), run_id),
            )
            with contextlib.suppress(sqlite3.Error):  # the tag is a bonus: it may need a new page
                db.execute(
                    "INSERT OR REPLACE INTO tags (key, value, run_uuid) VALUES (?, ?, ?)",
                    (contract.ERROR, error[: contract.MAX_VALUE], run_id),
                )
        return True
    except sqlite3.Error:
        return False
