"""A team server on this machine, for the tests and the benchmarks: ``python -m pipeline.server`` started
in the background on 127.0.0.1, waited for, and stopped with its workers.

Not part of convlab: a user starts the server with ``python -m pipeline.server`` (README, Team server).
The benchmarks import it too (``benchmarks/bench_sweeps.py`` puts ``tests/`` on their path).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from pipeline.server import postgres, privileges
from pipeline.server.basic_auth import ADMIN_PASSWORD
from pipeline.server.process import stop, wait_until_ready  # noqa: F401 (the tests' names)
from pipeline.server.serve import DB_PASSWORD, RUN_AS


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(
    database: postgres.Database,
    artifacts: Path,
    port: int,
    log: Path,
    workers: int = 2,
    auth: bool = False,
    admin_password: str | None = None,
    run_as: str | None = None,
    setup: bool = True,
    auth_cache: int | None = None,
) -> subprocess.Popen:
    """Runs ``python -m pipeline.server --setup`` on 127.0.0.1 in the background (tests, benchmarks);
    without ``setup``, on a PostgreSQL already set up at ``database.host``/``port``.

    Its own session, so ``stop`` ends the server's workers too; output goes to ``log``. With
    ``auth``, MLflow's basic-auth app, its admin's password ``admin_password`` (``auth_cache``:
    ``--auth-cache``). Started as root,
    it runs as ``run_as``; by default as ``serving_user(artifacts)``.
    """
    command = [sys.executable, "-m", "pipeline.server", *(["--setup"] if setup else []), "--port", str(port)]
    command += ["--artifacts", str(artifacts), "--database", database.name, "--user", database.user]
    command += ["--db-host", database.host, "--db-port", str(database.port)]
    command += ["--credentials", str(Path(log).with_name("server.env"))]
    if auth:
        command.append("--auth")
    if auth_cache is not None:
        command += ["--auth-cache", str(auth_cache)]
    if os.geteuid() == 0:
        command += ["--run-as", run_as or serving_user(Path(artifacts))]
    command += ["--", "--workers", str(workers)]
    env = {**os.environ, DB_PASSWORD: database.password}  # not on the command line
    if admin_password:
        env[ADMIN_PASSWORD] = admin_password
    with open(log, "w") as output:
        return subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def serving_user(artifacts: Path | None = None) -> str:
    """As root: the server's own unprivileged user (``serve.RUN_AS``, created here as ``--setup``
    would) where it can run this Python and reach ``artifacts`` (not below pytest's 0700 temporary
    folder); else root, so that the tests run on a machine where Python lives under /root
    (``.ci/unprivileged-python`` opens it; ``test_server`` says where it is still closed)."""
    privileges.ensure_user(RUN_AS)
    closed = privileges.first_closed(RUN_AS, [str(artifacts.absolute())], []) if artifacts else None
    return RUN_AS if closed is None and privileges.cannot_run(RUN_AS) is None else "root"


def kill(process: subprocess.Popen) -> None:
    """Kills a server at once, its workers included: the fault a crash or an OOM kill makes.

    ``stop``'s SIGTERM lets the server finish serving its open connections first, which under load
    took long enough for a tiny run to end before the server was gone."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
