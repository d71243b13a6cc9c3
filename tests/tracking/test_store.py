"""A store that cannot be used gets one line, fast, and is left exactly as it was."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli, free_port

from pipeline.tracking import faults, store


@pytest.fixture(autouse=True)
def _restore_http_settings(monkeypatch):
    """``check`` sets MLflow's http settings for the process: keep them out of other tests."""
    for key in store.HTTP_DEFAULTS:
        monkeypatch.setenv(key, os.environ.get(key, ""))
        if not os.environ[key]:
            monkeypatch.delenv(key)


def garbage_db(tmp: Path) -> tuple[str, Path]:
    path = tmp / "mlflow.db"
    path.write_bytes(b"these are my notes, not a database\n" * 50)
    return f"sqlite:///{path}", path


def foreign_sqlite_db(tmp: Path) -> tuple[str, Path]:
    import sqlite3

    path = tmp / "mlflow.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    return f"sqlite:///{path}", path


def folder_under_a_file(tmp: Path) -> tuple[str, Path]:
    path = tmp / "results.txt"  # a regular file: not even root can create a folder inside it
    path.write_text("1, 2, 3\n")
    return f"sqlite:///{path}/stores/mlflow.db", path


def folder_cannot_be_created(tmp: Path) -> tuple[str, Path]:
    # root ignores mode bits, so a read-only folder tests nothing; nobody can create one in /proc
    return "sqlite:////proc/convlab/mlflow.db", Path("/proc/convlab")


def file_store(tmp: Path) -> tuple[str, Path]:
    return f"file://{tmp}/mlruns", tmp / "mlruns"


def plain_path_store(tmp: Path) -> tuple[str, Path]:
    return str(tmp / "mlruns"), tmp / "mlruns"


def unknown_scheme(tmp: Path) -> tuple[str, Path]:
    return "sqlit:///mlflow.db", tmp / "mlflow.db"


def server_not_listening(tmp: Path) -> tuple[str, Path]:
    return f"http://127.0.0.1:{free_port()}", tmp / "mlflow.db"


def database_not_listening(tmp: Path) -> tuple[str, Path]:
    return f"postgresql://convlab:secret@127.0.0.1:{free_port()}/convlab", tmp / "mlflow.db"


UNUSABLE = {  # case -> (what the message must say, how to make the store)
    "garbage mlflow.db": ("not an SQLite database", garbage_db),
    "SQLite file of another program": ("not an MLflow store", foreign_sqlite_db),
    "folder cannot be written": ("is a file, not a folder", folder_under_a_file),
    "folder cannot be created": ("/proc is not writable", folder_cannot_be_created),
    "file:// store": ("cannot track to a folder", file_store),
    "plain-path store": ("cannot track to a folder", plain_path_store),
    "unknown scheme": ("unknown store scheme 'sqlit'", unknown_scheme),
    "server not listening": ("nothing answers at 127.0.0.1", server_not_listening),
    "database not listening": ("nothing answers at 127.0.0.1", database_not_listening),
}


def _snapshot(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else (b"<dir>" if path.exists() else None)


@pytest.mark.parametrize("case", UNUSABLE)
def test_check_names_the_problem_in_one_line(case, tmp_path):
    expected, make = UNUSABLE[case]
    uri, path = make(tmp_path)
    before = _snapshot(path)

    with pytest.raises(store.StoreError, match=expected) as raised:
        store.check(uri)

    assert len(str(raised.value).splitlines()) == 1
    assert "secret" not in str(raised.value)  # a database password never reaches the terminal
    assert _snapshot(path) == before


@pytest.mark.parametrize("case", UNUSABLE)
def test_compare_cli_exits_with_one_line_and_leaves_the_store_alone(case, tmp_path):
    expected, make = UNUSABLE[case]
    uri, path = make(tmp_path)
    before = _snapshot(path)

    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.compare", "--experiment", "stride_vs_pool", "--tracking-uri", uri],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    _assert_one_line_and_untouched(done, started, expected, path, before)


def test_usable_stores_pass(tracking_uri, tmp_path):
    store.check(tracking_uri)  # an existing MLflow store
    store.check(f"sqlite:///{tmp_path}/new/folder/mlflow.db")  # a store MLflow will create
    store.check("sqlite:///:memory:")
    empty = tmp_path / "empty.db"
    empty.touch()
    store.check(f"sqlite:///{empty}")  # SQLite and MLflow treat an empty file as a new database
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        store.check(f"http://127.0.0.1:{server.getsockname()[1]}")
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_a_lock_file_that_cannot_be_created_is_one_line_from_the_store():
    """The regression of issue 19: the store check passed, then the lock's mkdir raised."""
    expected = "cannot create the MLflow store /proc/convlab"
    with (
        pytest.raises(store.StoreError, match=expected) as raised,
        store._sqlite_init_lock("sqlite:////proc/convlab/mlflow.db"),
    ):
        pass
    assert len(str(raised.value).splitlines()) == 1


def test_check_never_imports_mlflow(tmp_path):
    uri, _ = garbage_db(tmp_path)
    code = (
        "import sys; from pipeline.tracking import store\n"
        f"try: store.check({uri!r})\nexcept store.StoreError: pass\n"
        "assert 'mlflow' not in sys.modules and 'tensorflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


GONE_AWAY = """
import socket, sys, time
import mlflow
from pipeline.tracking import faults, store
with socket.socket() as server:  # a server that answers the check, then goes away
    server.bind(("127.0.0.1", 0))
    server.listen()
    uri = f"http://127.0.0.1:{server.getsockname()[1]}"
    store.check(uri)
started = time.monotonic()
try:
    mlflow.MlflowClient(uri).search_experiments(max_results=1)
except Exception:
    pass
print(f"GAVE_UP_AFTER={time.monotonic() - started:.1f}")
"""


def test_an_http_store_makes_mlflow_give_up_within_seconds(monkeypatch):
    """A real MLflow call to a server that went away: seconds, not MLflow's four minutes."""
    for key in store.HTTP_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    done = subprocess.run([sys.executable, "-c", GONE_AWAY], capture_output=True, text=True, timeout=90)
    assert "GAVE_UP_AFTER=" in done.stdout, done.stderr[-2000:]
    assert float(done.stdout.split("GAVE_UP_AFTER=")[1]) < 30


def test_the_users_own_http_settings_win(monkeypatch):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        store.check(f"http://127.0.0.1:{server.getsockname()[1]}")
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "5"
    assert (
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
        == store.HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    )


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("sqlite:///mlflow.db", Path("mlflow.db")),
        ("sqlite:////tmp/a/mlflow.db", Path("/tmp/a/mlflow.db")),
        ("sqlite:///:memory:", None),
        ("http://127.0.0.1:5000", None),
        ("postgresql://u:p@h/db", None),
    ],
)
def test_sqlite_path(uri, expected):
    assert store.sqlite_path(uri) == expected


@pytest.mark.parametrize("mode", [[], ["-m"]], ids=["run", "sweep"])
@pytest.mark.parametrize("case", UNUSABLE)
def test_run_and_sweep_cli_exit_with_one_line_and_leave_the_store_alone(case, mode, tmp_path):
    expected, make = UNUSABLE[case]
    uri, path = make(tmp_path)
    before = _snapshot(path)

    started = time.monotonic()
    done = cli(*mode, f"tracking.uri={uri}", "trainer.epochs=1", cwd=tmp_path, timeout=60)

    _assert_one_line_and_untouched(done, started, expected, path, before)


def _assert_one_line_and_untouched(done, started: float, expected: str, path, before) -> None:
    """Within 30 s, a non-zero exit, one stderr line naming the problem, the store unchanged."""
    assert time.monotonic() - started < 30
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert expected in done.stderr
    assert _snapshot(path) == before


# What MLflow's client raises while the server or its database is down is retried, a client's own
# mistake is not: the errors as MLflow raises them from a server's answer (error code, message).
SERVER_ANSWERS = [
    ("TEMPORARILY_UNAVAILABLE", "(psycopg2.OperationalError) connection to server failed", True),
    ("BAD_REQUEST", "(psycopg2.InterfaceError) connection already closed", True),
    ("BAD_REQUEST", "(psycopg.OperationalError) the connection is closed", True),
    (
        "BAD_REQUEST",
        "(psycopg.OperationalError) consuming input failed: server closed the connection unexpectedly",
        True,
    ),
    ("INTERNAL_ERROR", "the database system is shutting down", True),
    ("RESOURCE_DOES_NOT_EXIST", "Run 'abc' not found", False),
    ("INVALID_PARAMETER_VALUE", "Changing param values is not allowed", False),
    ("PERMISSION_DENIED", "Permission denied", False),
]


@pytest.mark.parametrize(("code", "message", "outage"), SERVER_ANSWERS)
def test_a_database_down_behind_the_server_is_an_outage_a_client_error_is_not(code, message, outage):
    from mlflow.exceptions import MlflowException, RestException

    assert faults.unreachable(RestException({"error_code": code, "message": message})) is outage
    status = 503 if outage else 400
    raised = MlflowException(
        f"API request to endpoint /api/2.0/mlflow/runs/log-batch failed with error code {status} != 200"
    )
    assert faults.unreachable(raised) is outage
