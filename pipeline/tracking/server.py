"""A team's MLflow tracking server on one machine: runs in PostgreSQL, artifacts proxied by it.

    pip install -e ".[server]"                           # the PostgreSQL driver
    python -m pipeline.server --setup --host 0.0.0.0 --artifacts /srv/convlab/artifacts
    export MLFLOW_TRACKING_URI=http://THAT_MACHINE:5000  # on every machine that runs sweeps

This is ``mlflow server --backend-store-uri postgresql://USER:PW@HOST/DB --artifacts-destination
DIR --host H --port P``: clients log artifacts and models through the server (no shared
filesystem, no cloud credentials on the workers). ``--setup`` (as root, on Debian with the
``postgresql`` package, version 15 by default) first starts the local cluster
(``pg_ctlcluster 15 main start``) and creates the role and the database when they are missing.
The database password is ``--password``, else ``$CONVLAB_DB_PASSWORD``, else ``convlab``.
Arguments after ``--`` go to ``mlflow server`` as they are (``-- --workers 8``). MLflow's
server-side jobs (GenAI judges: eight more processes) are off unless
``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true``: convlab logs and reads runs, it needs none of them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from pipeline.config.errors import ConvlabError
from pipeline.tracking import store

POSTGRES_VERSION = "15"
CLUSTER = "main"
NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")  # a role or database name needing no quoting


class ServerError(ConvlabError):
    """The server, or the PostgreSQL it needs, cannot be set up or started."""


@dataclass(frozen=True)
class Database:
    """Where the server keeps its runs: a PostgreSQL database and the role that owns it."""

    name: str = "convlab"
    user: str = "convlab"
    password: str = "convlab"
    host: str = "127.0.0.1"
    port: int = 5432

    @property
    def uri(self) -> str:
        # psycopg2 named: SQLAlchemy 2.1's default driver for postgresql:// is psycopg 3
        password = quote(self.password, safe="")
        return f"postgresql+psycopg2://{self.user}:{password}@{self.host}:{self.port}/{self.name}"


def unavailable(version: str = POSTGRES_VERSION) -> str | None:
    """Why ``setup_postgres`` cannot run on this machine (not root, no PostgreSQL), else None."""
    if shutil.which("pg_ctlcluster") is None or not Path(f"/usr/lib/postgresql/{version}").is_dir():
        return f"PostgreSQL {version} is not installed (apt-get install postgresql)"
    if os.geteuid() != 0:
        return "setting up PostgreSQL needs root (pg_ctlcluster, runuser -u postgres)"
    return None


def setup_postgres(database: Database, version: str = POSTGRES_VERSION) -> None:
    """Starts the local cluster if it is down; creates the role and database if missing."""
    reason = unavailable(version)
    if reason:
        raise ServerError(reason)
    for name in (database.name, database.user):
        if not NAME.match(name):
            raise ServerError(f"{name!r} is not a plain PostgreSQL name (lowercase letters, digits, _)")
    if subprocess.run(["pg_ctlcluster", version, CLUSTER, "status"], capture_output=True).returncode != 0:
        _run(["pg_ctlcluster", version, CLUSTER, "start"])
    password = database.password.replace("'", "''")
    _psql(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{database.user}') THEN "
        f"CREATE ROLE {database.user} LOGIN PASSWORD '{password}'; END IF; END $$;"
    )
    if _psql(f"SELECT 1 FROM pg_database WHERE datname = '{database.name}'") != "1":
        _psql(f"CREATE DATABASE {database.name} OWNER {database.user}")


def drop_database(database: Database) -> None:
    """Drops the database (the tests' own, after a test session); the role stays."""
    if NAME.match(database.name):
        _psql(f"DROP DATABASE IF EXISTS {database.name} WITH (FORCE)")


def server_command(
    database: Database, artifacts: Path, host: str, port: int, extra: Sequence[str] = ()
) -> list[str]:
    """The ``mlflow server`` command line, run by this environment's Python."""
    return [
        *(sys.executable, "-m", "mlflow", "server"),
        *("--backend-store-uri", database.uri),
        *("--artifacts-destination", str(Path(artifacts).absolute())),
        *("--host", host, "--port", str(port)),
        *extra,
    ]


def launch(database: Database, artifacts: Path, port: int, log: Path, workers: int = 2) -> subprocess.Popen:
    """Runs ``python -m pipeline.server --setup`` on 127.0.0.1 in the background (tests, benchmarks).

    Its own session, so ``stop`` ends the server's workers too; output goes to ``log``.
    """
    command = [sys.executable, "-m", "pipeline.server", "--setup", "--port", str(port)]
    command += ["--artifacts", str(artifacts), "--database", database.name, "--user", database.user]
    command += ["--", "--workers", str(workers)]
    env = {**os.environ, "CONVLAB_DB_PASSWORD": database.password}  # not on the command line
    with open(log, "w") as output:
        return subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def wait_until_ready(url: str, process: subprocess.Popen | None = None, timeout: float = 180) -> None:
    """Polls the server's ``/health`` until it answers; fails early if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServerError(f"the MLflow server exited with code {process.returncode} before answering")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise ServerError(f"the MLflow server at {url} did not answer within {timeout:.0f} s")


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """Stops a server started with ``start_new_session=True``, its workers included."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _psql(sql: str) -> str:
    return _run(["runuser", "-u", "postgres", "--", "psql", "-v", "ON_ERROR_STOP=1", "-qtAc", sql])


def _run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, cwd="/")
    if done.returncode != 0:
        message = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        what = "psql" if command[0] == "runuser" else " ".join(command)
        raise ServerError(f"{what}: {message}")
    return done.stdout.strip()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline.server", description=__doc__.split("\n")[0])
    parser.add_argument("--setup", action="store_true", help="as root: start PostgreSQL, create role and db")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: every one)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--artifacts", default="mlartifacts", help="folder the server keeps artifacts in")
    parser.add_argument("--database", default="convlab", help="PostgreSQL database (%(default)s)")
    parser.add_argument("--user", default="convlab", help="PostgreSQL role (%(default)s)")
    parser.add_argument("--password", default=os.environ.get("CONVLAB_DB_PASSWORD", "convlab"))
    parser.add_argument("--db-host", default="127.0.0.1", help="PostgreSQL host (%(default)s)")
    parser.add_argument("--db-port", type=int, default=5432)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Sets up PostgreSQL if asked, then becomes the MLflow server (Ctrl-C stops it)."""
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = _parser().parse_args(argv[: len(argv) - len(extra) - (1 if "--" in argv else 0)])
    database = Database(args.database, args.user, args.password, args.db_host, args.db_port)
    try:
        if args.setup:
            setup_postgres(database)
        store.check(database.uri)  # PostgreSQL is listening
    except ConvlabError as err:
        sys.exit(f"convlab: {err}")
    Path(args.artifacts).mkdir(parents=True, exist_ok=True)
    print(f"convlab: MLflow server for http://{args.host}:{args.port} (runs in {store.redact(database.uri)})")
    sys.stdout.flush()
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    command = server_command(database, Path(args.artifacts), args.host, args.port, extra)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
