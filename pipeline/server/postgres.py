"""The PostgreSQL a team server keeps its runs in: the local cluster started, the role and
database created, on Debian's ``postgresql`` package (whatever its major version).

    from pipeline.server import postgres
    database = postgres.Database("convlab", "convlab", password)
    postgres.unavailable()                    # why it cannot be set up here (not root, none installed)
    postgres.setup_postgres(database)         # as root: cluster up, role and database, the password

Runs ``pg_lsclusters``, ``pg_ctlcluster`` and ``psql`` (as the ``postgres`` user); no driver
needed. SQL goes to ``psql`` on its standard input, never on its command line: ``ps`` shows every
local user a command line, and ``ALTER ROLE ... PASSWORD`` carries the role's password.
``python -m pipeline.server --setup`` (``server``) calls it before it starts MLflow.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from pipeline.config.errors import ConvlabError

CLUSTER = "main"
NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")  # a role or database name needing no quoting


class ServerError(ConvlabError):
    """The server, or the PostgreSQL it needs, cannot be set up or started."""


@dataclass(frozen=True)
class Database:
    """Where the server keeps its runs: a PostgreSQL database and the role that owns it."""

    name: str = "convlab"
    user: str = "convlab"
    password: str = ""
    host: str = "127.0.0.1"
    port: int = 5432

    @property
    def uri(self) -> str:
        # plain postgresql://, as MLflow's docs write it: SQLAlchemy 2.1 drives it with psycopg 3
        password = quote(self.password, safe="")
        return f"postgresql://{self.user}:{password}@{self.host}:{self.port}/{self.name}"


def postgres_versions() -> list[str]:
    """The PostgreSQL major versions installed (Debian's /usr/lib/postgresql/N), newest first."""
    found = [p.name for p in Path("/usr/lib/postgresql").glob("*") if (p / "bin" / "postgres").exists()]
    return sorted(found, key=lambda v: [int(part) for part in re.findall(r"\d+", v)], reverse=True)


def cluster_for(port: int) -> tuple[str, str]:
    """The (version, name) of the local cluster serving ``port``; else the newest version's ``main``."""
    listed = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, cwd="/")
    clusters = [line.split()[:3] for line in listed.stdout.splitlines() if len(line.split()) >= 3]
    for version, name, cluster_port in clusters:
        if cluster_port == str(port):
            return version, name
    versions = postgres_versions()
    return (versions[0] if versions else ""), CLUSTER


def unavailable(version: str | None = None) -> str | None:
    """Why ``setup_postgres`` cannot run on this machine (not root, no PostgreSQL), else None."""
    installed = postgres_versions()
    if shutil.which("pg_ctlcluster") is None or not installed or (version and version not in installed):
        return f"PostgreSQL{' ' + version if version else ''} is not installed (apt-get install postgresql)"
    if os.geteuid() != 0:
        return "setting up PostgreSQL needs root (pg_ctlcluster, runuser -u postgres)"
    return None


def setup_postgres(database: Database, version: str | None = None) -> None:
    """Starts the local cluster if it is down; creates the role and database if missing, and
    sets the role's password to ``database.password``."""
    found, cluster = cluster_for(database.port)
    version = version or found
    reason = unavailable(version)
    if reason:
        raise ServerError(reason)
    for name in (database.name, database.user):
        if not NAME.match(name):
            raise ServerError(f"{name!r} is not a plain PostgreSQL name (lowercase letters, digits, _)")
    if not database.password:
        raise ServerError("no database password: --setup generates one, or set CONVLAB_DB_PASSWORD")
    if subprocess.run(["pg_ctlcluster", version, cluster, "status"], capture_output=True).returncode != 0:
        _run(["pg_ctlcluster", version, cluster, "start"])
    password = database.password.replace("'", "''")
    _psql(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{database.user}') THEN "
        f"CREATE ROLE {database.user} LOGIN; END IF; END $$; "
        f"ALTER ROLE {database.user} PASSWORD '{password}';"
    )
    if _psql(f"SELECT 1 FROM pg_database WHERE datname = '{database.name}'") != "1":
        _psql(f"CREATE DATABASE {database.name} OWNER {database.user}")


def drop_database(database: Database, with_role: bool = False) -> None:
    """Drops the database (the tests' own, after a test session), and its role ``with_role``."""
    if NAME.match(database.name):
        _psql(f"DROP DATABASE IF EXISTS {database.name} WITH (FORCE)")
    if with_role and NAME.match(database.user):
        _psql(f"DROP ROLE IF EXISTS {database.user}")


def _psql(sql: str) -> str:
    return _run(["runuser", "-u", "postgres", "--", "psql", "-X", "-v", "ON_ERROR_STOP=1", "-qtA"], sql)


def _run(command: list[str], stdin: str | None = None) -> str:
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, cwd="/")
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()  # psql's "ERROR: ...", not a "LINE 1:" quoting the SQL
        message = ([line for line in lines if "ERROR:" in line or "FATAL:" in line] or lines or
                   [f"exit code {done.returncode}"])[0]  # fmt: skip
        what = "psql" if command[0] == "runuser" else " ".join(command)
        raise ServerError(f"{what}: {message}")
    return done.stdout.strip()
