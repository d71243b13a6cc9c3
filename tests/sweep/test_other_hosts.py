"""Which RUNNING runs a sweep process may end (when it aborts, or a worker dies): its own, dead
ones on its host, and jobs it sent to other hosts; never a live run of another process, here or
elsewhere (a resume of the same sweep on another machine). In-process, on SQLite."""

from __future__ import annotations

import os
import socket
import time

import pytest

from pipeline.sweep import callback, interrupts, summary
from pipeline.tracking import contract, sweep_runs

HERE, ELSEWHERE = socket.gethostname(), "node-elsewhere"


@pytest.fixture
def runs(tmp_path):
    """``write(name, host, pid, launched_by)``: a RUNNING child of one sweep; ``children()``."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment_id = client.create_experiment("hosts", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(experiment_id, tags={contract.ROLE: contract.ROLE_SWEEP}).info.run_id

    def write(name: str, host: str, pid: int, launched_by: str = "") -> None:
        tags = {contract.PARENT: parent, contract.ROLE: contract.ROLE_JOB, contract.VARIANT: name}
        tags |= {contract.HOST: host, contract.PID: str(pid), contract.SWEEP_PROCESS: launched_by}
        if host == HERE:
            tags[contract.PROCESS_START] = (
                f"{interrupts.process_start_time():.3f}" if pid == os.getpid() else ""
            )
        client.create_run(experiment_id, run_name=name, tags=tags)

    def children() -> dict[str, dict]:
        return {child["variant"]: child for child in sweep_runs.children(uri, parent)}

    state = summary.SweepPass("s", parent, uri, "e", str(tmp_path), time.time(), None, False)
    return write, children, state


def test_a_sweep_process_ends_only_its_own_runs_and_the_jobs_it_sent_elsewhere(runs):
    write, children, _ = runs
    me = f"{HERE}:{os.getpid()}"
    write("this process", HERE, os.getpid())
    write("same pid on another host", ELSEWHERE, os.getpid())  # a resume running elsewhere
    write("another host, another sweep process", ELSEWHERE, 4242, f"{ELSEWHERE}:7")
    write("sent elsewhere by this process", ELSEWHERE, 4242, me)
    write("dead process here", HERE, 2**22 + 17)  # no such pid
    write("live process here", HERE, os.getppid())  # another process resuming the same sweep here

    ours = {name for name, child in children().items() if callback._ours(child)}

    assert ours == {"this process", "sent elsewhere by this process", "dead process here"}


def test_a_dead_worker_loses_the_run_of_its_host_not_a_run_elsewhere_with_the_same_pid(runs):
    write, children, state = runs
    me = f"{HERE}:{os.getpid()}"
    write("worker", HERE, 2**22 + 17, me)  # died: no such pid now
    write("same pid elsewhere", ELSEWHERE, 2**22 + 17, me)

    callback._lost(state, 2**22 + 17, "SIGKILL")

    found = children()
    assert found["worker"]["status"] == contract.FAILED
    assert found["same pid elsewhere"]["status"] == contract.RUNNING
