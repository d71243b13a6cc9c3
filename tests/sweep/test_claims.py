"""Each job is claimed once: a resume racing the original sweep, and two resumes started
together, never train the same (variant, seed) twice; a job running elsewhere is no failure."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
import time

import pytest
from conftest import wait_for

from pipeline.sweep import jobs
from pipeline.tracking import contract

SHRUNK = ["trainer.epochs=1", "dataset.max_samples=150", "tracking.log_model=false", "optimizer=adam"]


def _start(cwd, *args):
    command = [sys.executable, "-m", "pipeline", "-m", *args]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    return subprocess.Popen(command, cwd=cwd, start_new_session=True, **pipes)


@pytest.mark.slow
def test_a_resume_racing_the_original_and_another_resume_trains_each_job_once(store, tmp_path):
    args = ["seed=0,1,2,3", *SHRUNK, *store.overrides]
    original = _start(tmp_path, *args)

    def children():
        return [r for r in store.runs() if contract.PARENT in r.data.tags]

    wait_for(lambda: any(r.info.status == contract.FINISHED for r in children()))
    resumes = [_start(tmp_path, *args, "sweep.resume=last") for _ in range(2)]  # together
    outputs = [process.communicate(timeout=600) for process in (original, *resumes)]

    for process, (_stdout, stderr) in zip((original, *resumes), outputs, strict=True):
        assert process.returncode == 0, stderr[-3000:]
        assert "Traceback" not in stderr and "sweep jobs failed" not in stderr
    said = "".join(stdout + stderr for stdout, stderr in outputs)
    finished = collections.Counter(
        r.data.tags[contract.SEED] for r in children() if r.info.status == contract.FINISHED
    )
    assert finished == dict.fromkeys(["0", "1", "2", "3"], 1)  # each seed trained exactly once
    assert [r.info.status for r in children()].count(contract.FINISHED) == len(children())
    assert "skipped, running in process " in said  # named, never counted as a failure
    parent = next(r for r in store.runs() if r.data.tags.get(contract.ROLE) == contract.ROLE_SWEEP)
    assert parent.info.status == contract.FINISHED


SKEW_MS = 5_000  # one claimant's clock runs 5 s ahead of the other's


@pytest.fixture
def sweep(tmp_path, monkeypatch):
    """A sweep's parent on SQLite; in threads named ``ahead`` MLflow's clock is ``SKEW_MS`` ahead."""
    import mlflow
    from mlflow.tracking._tracking_service import client as tracking_client

    real = tracking_client.get_current_time_millis

    def skewed() -> int:  # what MLflow stamps a new run's start_time with, on this claimant's machine
        return real() + (SKEW_MS if threading.current_thread().name.startswith("ahead") else 0)

    monkeypatch.setattr(tracking_client, "get_current_time_millis", skewed)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment_id = client.create_experiment("claims", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(experiment_id, tags={contract.ROLE: contract.ROLE_SWEEP}).info.run_id
    return jobs.SweepJob("abc123", parent, uri, [], None, time.time())


def _claim(job, digest: str, won: list) -> None:
    tags = job.tags({}, digest) | {contract.PARENT: job.parent_run_id}
    run_id, _ = jobs.claim(job, digest, "claims", f"job {digest}", tags)
    if run_id is not None:
        won.append(digest)


def test_a_claimant_whose_clock_is_behind_does_not_take_a_job_already_claimed(sweep):
    won: list[str] = []
    ahead = threading.Thread(target=_claim, args=(sweep, "job0", won), name="ahead")
    ahead.start()
    ahead.join()
    _claim(sweep, "job0", won)  # later, but its run's start_time is 5 s earlier

    assert won == ["job0"]


def test_two_claimants_whose_clocks_differ_by_5_s_train_each_job_once(sweep):
    digests = [f"job{n}" for n in range(4)]
    won: list[str] = []
    start = threading.Barrier(2, timeout=60)

    def claimant() -> None:
        for digest in digests:
            start.wait()  # both claim the same job at once
            _claim(sweep, digest, won)

    threads = [threading.Thread(target=claimant, name=name) for name in ("ahead", "on-time")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert collections.Counter(won) == dict.fromkeys(digests, 1)


def test_two_resumes_that_find_one_killed_run_reopen_it_once(sweep):
    """``sweep.resume`` continues a job's KILLED run in that run (``app._resumable_job``): two
    resumes at once (in a study, two trials with the same values) reopen it once, the other skips
    the job as running elsewhere; killed again, the run is reopened again by the next resume."""
    import socket
    import types

    import mlflow

    from pipeline import app
    from pipeline.tracking import sweep_runs
    from pipeline.training.runner import RunInfo

    client = mlflow.MlflowClient(sweep.tracking_uri)
    tags = sweep.tags({}, "job0") | {contract.PARENT: sweep.parent_run_id}
    killed = sweep_runs.create_child_run(sweep.tracking_uri, "claims", "job job0", tags)
    client.set_terminated(killed, contract.KILLED)  # before its first epoch: no checkpoint, none logged
    run = types.SimpleNamespace(
        trainer=types.SimpleNamespace(checkpoint=types.SimpleNamespace(dir="/nonexistent"))
    )
    info = RunInfo({}, [], None, {}, "default")
    results: list = []
    start = threading.Barrier(2, timeout=60)

    def resume() -> None:
        start.wait()
        results.append(app._resumable_job(sweep, "job0", run, info))

    threads = [threading.Thread(target=resume) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    reopened = [found.claimed_run_id for found, _ in results if found is not None]
    assert reopened == [killed] and client.get_run(killed).info.status == contract.RUNNING  # once
    # the other lost the claim, or came late and found it RUNNING (then ``jobs.claim`` skips the job)
    (reason,) = [reason for found, reason in results if found is None]
    assert reason in ("", f"running in process {os.getpid()} on {socket.gethostname()}")

    time.sleep(0.01)
    client.set_terminated(killed, contract.KILLED)  # killed again: its next resume reopens it again
    found, reason = app._resumable_job(sweep, "job0", run, info)
    assert found is not None and found.claimed_run_id == killed and reason == ""
