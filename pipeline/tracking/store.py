"""The MLflow store a run, sweep or comparison is pointed at: checked before MLflow is imported.

    from pipeline.tracking import store
    store.check("sqlite:///mlflow.db")        # raises StoreError with one line, or returns

MLflow itself answers a store it cannot use late and loudly: a server that is not listening is
retried for about four minutes and then reported as five chained tracebacks; a file that is not
a database is found only after MLflow has started migrating it. ``check`` answers in well under a
second, with the standard library only (sqlite3, socket, urllib), and never writes to the store;
a database server (PostgreSQL, MySQL) is also logged in to, with SQLAlchemy and its driver, as
MLflow would, so wrong credentials or a missing database are one line before training.
It also makes MLflow give up sooner on an http(s) server that goes away mid-run
(``HTTP_DEFAULTS``, set only where the user has not set them).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sqlite3
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.config.errors import ConvlabError
from pipeline.data import filelock
from pipeline.tracking import contract
from pipeline.tracking.redaction import redact  # noqa: F401  (callers' store.redact: one redaction)

DEFAULT_URI = "sqlite:///mlflow.db"  # MLflow 3's own default, in the working directory
CONNECT_TIMEOUT_S = 3.0
# MLflow's defaults (7 retries, backoff factor 2, 120 s per request) keep a run waiting about
# four minutes for a server that is gone. A team's own server is not rate-limited, so three
# quick retries (about 7 s) and a minute per request are enough; the environment still wins.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}
DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
# Each driver's own name for the login timeout (seconds): a wrong host answers in seconds, not minutes.
LOGIN_TIMEOUT = {
    "postgresql": {"connect_timeout": 5},
    "mysql": {"connect_timeout": 5},
    "mssql": {"timeout": 5},
}
OTHER_SCHEMES = ("databricks", "databricks-uc", "uc")  # MLflow's own; nothing to check here
SQLITE_MAGIC = b"SQLite format 3\x00"
USE_INSTEAD = "use sqlite:///PATH/mlflow.db, an http(s)://HOST:PORT server, or postgresql://..."


class StoreError(ConvlabError):
    """A tracking store that cannot be used: a bad URI, an unusable file, a server not listening."""


def resolve_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else ``DEFAULT_URI``."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI; None for other stores and in-memory SQLite."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    if path in ("", ":memory:"):
        return None
    return Path(path).expanduser()


def check(uri: str) -> None:
    """Raises ``StoreError`` (one line) when MLflow could not use the store at ``uri``.

    Checks what can be checked without importing MLflow or changing anything: the URI's scheme,
    a SQLite file's header and tables (read-only) or the folder it would be created in, and a
    TCP connection to a server or database host.
    """
    scheme = urlsplit(uri).scheme.lower().split("+", 1)[0]
    if scheme in ("", "file") or (len(scheme) == 1 and uri[1:3] in (":\\", ":/")):  # C:\ paths too
        raise StoreError(f"tracking.uri={uri}: MLflow 3 cannot track to a folder; {USE_INSTEAD}")
    if scheme == "sqlite":
        path = sqlite_path(uri)
        if path is not None:
            _check_sqlite(path)
    elif scheme in ("http", "https"):
        os.environ.update({k: v for k, v in HTTP_DEFAULTS.items() if k not in os.environ})
        parts = urlsplit(uri)
        if not _through_proxy(scheme, parts.hostname):  # the proxy, not us, would reach the server
            _check_listening(uri, parts.hostname, parts.port or (443 if scheme == "https" else 80))
            _check_http_login(uri)
    elif scheme in DATABASE_PORTS:
        parts = urlsplit(uri)
        _check_listening(uri, parts.hostname or "localhost", parts.port or DATABASE_PORTS[scheme])
        _check_login(uri, scheme)
    elif scheme not in OTHER_SCHEMES:
        raise StoreError(f"tracking.uri={redact(uri)}: unknown store scheme {scheme!r}; {USE_INSTEAD}")


def _check_sqlite(path: Path) -> None:
    if path.is_dir():
        raise StoreError(f"{path} is a folder, not an MLflow SQLite database")
    if not path.exists():
        _check_can_create(path)
        return
    with open(path, "rb") as handle:
        header = handle.read(len(SQLITE_MAGIC))
    if header and header != SQLITE_MAGIC:
        raise StoreError(f"{path} is not an SQLite database (an MLflow store); move it or set tracking.uri")
    if not header:
        return  # an empty file: SQLite and MLflow treat it as a new database
    tables = _sqlite_tables(path)
    if tables and "alembic_version" not in tables:
        raise StoreError(f"{path} is an SQLite database but not an MLflow store; set tracking.uri")
    if not os.access(path, os.W_OK):
        raise StoreError(f"{path}: the MLflow store is not writable")


def _sqlite_tables(path: Path) -> set[str]:
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=CONNECT_TIMEOUT_S) as db:
            return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as err:
        raise StoreError(f"{path} is not a readable SQLite database ({err})") from None


def _check_can_create(path: Path) -> None:
    """The store will be created: its folder must exist or be creatable, and be writable."""
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise StoreError(f"cannot create the MLflow store {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise StoreError(f"cannot create the MLflow store {path}: {ancestor} is not writable")
    # root passes os.access everywhere, yet cannot create folders in /proc or on a read-only
    # mount: a file that vanishes as it closes (nothing left behind) answers for every user.
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as err:
        why = err.strerror or type(err).__name__
        message = f"cannot create the MLflow store {path}: {ancestor} is not writable ({why})"
        raise StoreError(message) from None


def _through_proxy(scheme: str, host: str | None) -> bool:
    return bool(host and urllib.request.getproxies().get(scheme) and not urllib.request.proxy_bypass(host))


def _check_listening(uri: str, host: str | None, port: int) -> None:
    uri = redact(uri)
    if not host:
        raise StoreError(f"tracking.uri={uri}: no host in the URI; {USE_INSTEAD}")
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        raise StoreError(f"nothing answers at {host}:{port} ({reason}) for tracking.uri={uri}") from None


def _check_http_login(uri: str) -> None:
    """A server with MLflow's basic-auth answers 401 to a missing or wrong login, 403 to a user
    without permission: one line now. Anything else (no answer in time, another status) is left
    to MLflow."""
    import base64
    import urllib.error

    user = os.environ.get("MLFLOW_TRACKING_USERNAME", "")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
    request = urllib.request.Request(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1")
    if user or password:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=CONNECT_TIMEOUT_S):
            return
    except urllib.error.HTTPError as err:
        status = err.code
    except (OSError, ValueError):
        return
    if status == 401 and not user:
        raise StoreError(
            f"the server at {redact(uri)} asks for a login: set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD"
        )
    if status == 401:
        raise StoreError(
            f"the server at {redact(uri)} refused the login of MLFLOW_TRACKING_USERNAME={user}: "
            "wrong user or MLFLOW_TRACKING_PASSWORD"
        )
    if status == 403:
        raise StoreError(f"the server at {redact(uri)} lets {user or 'this user'} in but not read runs")


def _check_login(uri: str, scheme: str) -> None:
    """Logs in to the database as MLflow will (same URI, same driver): wrong credentials or a
    database that does not exist are one line now, not MLflow's retries once training has begun."""
    import sqlalchemy  # the database's own driver is needed to log in; loaded only for such URIs
    from sqlalchemy import exc

    shown = redact(uri)
    try:
        engine = sqlalchemy.create_engine(
            uri, poolclass=sqlalchemy.pool.NullPool, connect_args=LOGIN_TIMEOUT.get(scheme, {})
        )
    except ImportError as err:
        hint = " (pip install -e '.[server]': psycopg 3, the driver of postgresql://)"
        hint = hint if scheme == "postgresql" else ""
        missing = f"its database driver {err.name} is not installed"
        raise StoreError(f"tracking.uri={shown}: {missing}{hint}") from None
    except exc.ArgumentError as err:
        raise StoreError(f"tracking.uri={shown}: {_first_line(err)}") from None
    try:
        with engine.connect():
            pass
    except exc.DBAPIError as err:
        raise StoreError(f"the database refused tracking.uri={shown}: {_first_line(err.orig)}") from None
    finally:
        engine.dispose()


def _first_line(err: BaseException | None) -> str:
    """The line that says why: PostgreSQL's ``FATAL:  password authentication failed ...``."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    fatal = [found.group(1) for line in lines if (found := re.search(r"(?:FATAL|ERROR):\s+(.*)", line))]
    return (fatal or lines or [type(err).__name__])[0]


def get_or_create_experiment(uri: str, name: str) -> str:
    """The experiment's id, created on first use; safe when parallel jobs race to create it.

    The experiment carries ``mlflow.experimentKind=custom_model_development`` (set on creation,
    and added to an existing experiment that has no kind), so MLflow's UI opens it on its
    training runs rather than in the GenAI view.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    check(uri)  # an unusable store: one line, before MLflow touches it
    with _sqlite_init_lock(uri):  # the first client in a process creates or migrates the store
        client = mlflow.MlflowClient(uri)
        client.search_experiments(max_results=1)
    for _ in range(3):
        found = client.get_experiment_by_name(name)
        if found is not None:
            if contract.EXPERIMENT_KIND not in found.tags:  # created before convlab set the kind
                with contextlib.suppress(MlflowException):  # another job set it first
                    client.set_experiment_tag(
                        found.experiment_id, contract.EXPERIMENT_KIND, contract.MODEL_TRAINING_KIND
                    )
            return found.experiment_id
        with contextlib.suppress(MlflowException):  # another job created it first
            return client.create_experiment(
                name, tags={contract.EXPERIMENT_KIND: contract.MODEL_TRAINING_KIND}
            )
    raise RuntimeError(f"could not create MLflow experiment {name!r} at {uri}")


@contextlib.contextmanager
def _sqlite_init_lock(uri: str) -> Iterator[None]:
    """Serialises opening a SQLite store across processes.

    Two runs started at once on a new ``mlflow.db`` would both create its tables (MLflow's
    migrations are not safe to run concurrently); a lock file beside the database makes the
    second wait for the first. Other stores, and systems without ``fcntl``, need no lock.
    """
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    try:
        with filelock.exclusive(Path(f"{path.resolve()}.lock")):
            yield
    except filelock.LockError as err:  # e.g. a folder that cannot be created: one line
        raise StoreError(f"cannot create the MLflow store {path}: {err}") from None
