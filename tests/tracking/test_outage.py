"""A tracking server that stops answering mid-run (killed, then restarted on the same port):
the run rides it out and loses nothing; past ``tracking.outage_seconds`` it ends in one line, its
record stays RUNNING, and a resume reruns it. Needs PostgreSQL, as the team-server tests do."""

from __future__ import annotations

import os
import secrets
import signal
import time

import pytest
import teamserver
from conftest import POSTGRESQL, free_port, require
from watch import child_after_first_epoch, start_tiny_sweep

from pipeline.server import postgres
from pipeline.tracking import contract

EPOCHS = 24  # a tiny epoch takes about 0.15 s: enough of them to be left when the server dies


@pytest.fixture
def restartable_server(tmp_path):
    """``(url, start, kill)``: a server of our own, on a fixed port, that the test may kill and start."""
    require(POSTGRESQL, postgres.unavailable())
    database = postgres.Database(f"convlab_outage_{secrets.token_hex(4)}", "convlab_test", "convlab_test")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    processes = []

    def start():
        processes.append(teamserver.launch(database, tmp_path / "artifacts", port, tmp_path / "server.log"))
        teamserver.wait_until_ready(url, processes[-1], timeout=240)

    def kill():
        teamserver.kill(processes[-1])

    start()
    yield url, start, kill
    teamserver.stop(processes[-1])
    postgres.drop_database(database)


@pytest.mark.server
@pytest.mark.slow
def test_a_server_restart_mid_run_is_ridden_out_and_a_longer_outage_is_one_line(restartable_server, tmp_path):
    import mlflow

    url, start, kill = restartable_server
    client = mlflow.MlflowClient(url)

    # 1. killed after the first epoch, back a few seconds later: training goes on, nothing is lost.
    # The run is held (SIGSTOP) while the server dies, so that the outage begins mid-run however
    # late the test sees the first epoch
    ridden = start_tiny_sweep(tmp_path, url, "seed=0", "tracking.experiment_name=blip", epochs=EPOCHS)
    child = child_after_first_epoch(client, "blip", ridden)
    os.killpg(ridden.pid, signal.SIGSTOP)
    down = time.time()
    kill()
    os.killpg(ridden.pid, signal.SIGCONT)
    time.sleep(3)
    start()
    up = time.time()
    stdout, stderr = ridden.communicate(timeout=600)
    assert ridden.returncode == 0, stderr[-3000:]
    assert "does not answer: retrying" in stdout + stderr and "back after" in stdout + stderr
    run = client.get_run(child.info.run_id)
    assert run.info.status == contract.FINISHED
    history = client.get_metric_history(run.info.run_id, contract.VAL_ACCURACY)
    assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1))  # every epoch's metrics
    # training went on while the server was down: epochs ended (a metric's time is its epoch's
    # end, not its upload) between the server's stop and its return
    during = sorted(m.step for m in history if down < m.timestamp / 1000 < up)
    assert len(during) >= 2, ([(m.step, m.timestamp / 1000 - down) for m in history], up - down)
    figures = [a.path for a in client.list_artifacts(run.info.run_id, "figures")]
    assert "figures/learning_curves.png" in figures  # and the artifacts

    # 2. down for longer than tracking.outage_seconds: one line, the record stays RUNNING, a resume reruns it
    args = ["seed=1", "tracking.experiment_name=outage", "tracking.outage_seconds=2"]
    lost = start_tiny_sweep(tmp_path, url, *args)
    child = child_after_first_epoch(client, "outage", lost)
    kill()
    stdout, stderr = lost.communicate(timeout=300)
    start()
    assert lost.returncode != 0 and "Traceback" not in stderr, stderr[-3000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "does not answer" in lines[0] and "sweep.resume=" in lines[0], stderr[-3000:]
    assert "did not answer for 2 s" in stdout + stderr
    assert client.get_run(child.info.run_id).info.status == contract.RUNNING  # its process is gone: stale

    resumed = start_tiny_sweep(tmp_path, url, *args, "tracking.outage_seconds=300", "sweep.resume=last")
    _, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr[-3000:]
    assert client.get_run(child.info.run_id).info.status == contract.KILLED  # stale, marked by the resume
    found = client.get_experiment_by_name("outage").experiment_id
    statuses = [r.info.status for r in client.search_runs([found]) if contract.PARENT in r.data.tags]
    assert sorted(statuses) == [contract.FINISHED, contract.KILLED]
