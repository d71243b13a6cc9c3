"""PostgreSQL restarted under a live team server, mid-run: the server answers 503 meanwhile (it is
up, its database is not), the run rides it out as it would a server outage and loses nothing.

PostgreSQL here is a throwaway cluster of the test's own (initdb, pg_ctl, a free port): the
machine's own cluster serves other tests and people, and is never restarted."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import teamserver
from conftest import POSTGRESQL, free_port, require
from watch import child_after_first_epoch, start_tiny_sweep

from pipeline.server import postgres
from pipeline.tracking import contract

AS_POSTGRES = ["runuser", "-u", "postgres", "--"]


@pytest.fixture
def own_postgres():
    """``(database, pg_ctl)``: a PostgreSQL cluster of this test's own on 127.0.0.1, with a role and
    a database; ``pg_ctl("stop")`` and ``pg_ctl("start")`` restart it."""
    require(POSTGRESQL, postgres.unavailable())
    binaries = Path("/usr/lib/postgresql") / postgres.postgres_versions()[0] / "bin"
    folder = Path(tempfile.mkdtemp(prefix="convlab-pg-"))  # pytest's tmp_path is closed to postgres
    shutil.chown(folder, "postgres", "postgres")
    port = free_port()
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"

    def as_postgres(*command: str) -> None:
        subprocess.run([*AS_POSTGRES, *command], check=True, capture_output=True, cwd="/", timeout=120)

    def pg_ctl(action: str) -> None:
        as_postgres(
            str(binaries / "pg_ctl"),
            "-D",
            f"{folder}/data",
            "-l",
            f"{folder}/log",
            "-w",
            "-o",
            options,
            action,
        )

    as_postgres(str(binaries / "initdb"), "-D", f"{folder}/data", "-A", "trust", "--no-sync")
    pg_ctl("start")
    database = postgres.Database(
        f"convlab_pg_{secrets.token_hex(4)}", "convlab_test", "convlab_test", port=port
    )
    psql = ["psql", "-h", str(folder), "-p", str(port), "-v", "ON_ERROR_STOP=1", "-qc"]
    as_postgres(*psql, f"CREATE ROLE {database.user} LOGIN PASSWORD '{database.password}'")
    as_postgres(*psql, f"CREATE DATABASE {database.name} OWNER {database.user}")
    try:
        yield database, pg_ctl
    finally:
        stop = [str(binaries / "pg_ctl"), "-D", f"{folder}/data", "-m", "immediate", "stop"]
        subprocess.run([*AS_POSTGRES, *stop], capture_output=True, cwd="/")
        shutil.rmtree(folder, ignore_errors=True)


class Output:
    """What a process writes to stdout and stderr, read as it comes by two threads."""

    def __init__(self, process):
        self.lines: list[str] = []
        self.readers = [
            threading.Thread(target=lambda s=stream: self.lines.extend(iter(s.readline, "")), daemon=True)
            for stream in (process.stdout, process.stderr)
        ]
        for reader in self.readers:
            reader.start()

    def __str__(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.time() + timeout
        while text not in str(self) and time.time() < deadline:
            time.sleep(0.5)

    def close(self) -> str:
        for reader in self.readers:
            reader.join(timeout=30)
        return str(self)


@pytest.mark.server
@pytest.mark.slow
def test_postgresql_restarted_under_a_live_server_loses_no_epoch(own_postgres, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("PYTHONUNBUFFERED", "1")  # its lines as they come, not at its exit

    database, pg_ctl = own_postgres
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = teamserver.launch(
        database, tmp_path / "artifacts", port, tmp_path / "server.log", workers=1, setup=False
    )
    try:
        teamserver.wait_until_ready(url, process, timeout=240)
        client = mlflow.MlflowClient(url)
        run = start_tiny_sweep(tmp_path, url, "tracking.experiment_name=database", epochs=5)
        output = Output(run)
        child = child_after_first_epoch(client, "database", run)
        pg_ctl("stop")
        # down until the run says so: past MLflow's own retries (about 6 s), convlab's backlog rides it out
        output.wait_for("does not answer: retrying", timeout=120)
        pg_ctl("start")
        returncode = run.wait(timeout=300)
        said = output.close()
        assert returncode == 0, said[-3000:]
        assert "does not answer: retrying" in said and "back after" in said
        assert client.get_run(child.info.run_id).info.status == contract.FINISHED
        history = client.get_metric_history(child.info.run_id, contract.VAL_ACCURACY)
        assert sorted(m.step for m in history) == [1, 2, 3, 4, 5]  # every epoch's metrics
    finally:
        teamserver.stop(process)
