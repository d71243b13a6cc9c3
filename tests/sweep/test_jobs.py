"""A sweep job's claim and a run's staleness, in-process on a SQLite store (no cluster, no root):
two claimants of one job at the same moment, a job already finished, a claim left by a process
that is gone, and a run elsewhere whose heartbeat stopped. The end-to-end version, with sweeps
racing in separate processes, is ``test_claims.py``."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time

import pytest

from pipeline.sweep import interrupts, jobs
from pipeline.tracking import contract, sweep_runs

DIGEST = "0123456789abcdef"  # the job's config hash


@pytest.fixture
def job(store) -> jobs.SweepJob:
    """A sweep's parent run in the session's store, and one job's view of it."""
    client = store.client()
    experiment_id = client.create_experiment(store.experiment)
    tags = {contract.ROLE: contract.ROLE_SWEEP, contract.SWEEP_ID: "s1", contract.FACTORS: '["seed"]'}
    parent = client.create_run(experiment_id, tags=tags).info.run_id
    return jobs.SweepJob("s1", parent, store.uri, ["seed"], total=1, started=time.time() - 1)


def _claim(job: jobs.SweepJob, store, **tags: str) -> tuple[str | None, str]:
    """``jobs.claim`` as a job of this process makes it (``tags`` change where it says it runs)."""
    own = job.tags({"seed": "0"}, DIGEST) | tags
    return jobs.claim(job, DIGEST, store.experiment, "seed=0", own)


def _live(job: jobs.SweepJob) -> list[dict]:
    children = sweep_runs.children(job.tracking_uri, job.parent_run_id)
    return [c for c in children if c["status"] == contract.RUNNING]


def test_two_claims_of_one_job_at_the_same_moment_train_it_once(job, store):
    start, answers = threading.Barrier(2), []

    def claimant():
        start.wait()
        answers.append(_claim(job, store))

    threads = [threading.Thread(target=claimant) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    won = [run_id for run_id, _ in answers if run_id]
    (why_not,) = [reason for run_id, reason in answers if not run_id]
    assert len(won) == 1, answers
    assert why_not.startswith("running in process ") and socket.gethostname() in why_not
    assert [c["run_id"] for c in _live(job)] == won  # the claim that yielded left no run behind


def test_a_finished_job_is_not_claimed_again(job, store):
    run_id, _ = _claim(job, store)
    store.client().set_terminated(run_id, contract.FINISHED)
    assert _claim(job, store) == (None, "already finished")
    assert _live(job) == []


def test_a_claim_left_by_a_process_that_is_gone_does_not_hold_the_job(job, store):
    ended = subprocess.Popen(["true"])
    ended.wait()
    # its run says it runs in a process of this host that no longer exists
    _claim(job, store, **{contract.PID: str(ended.pid), contract.PROCESS_START: "1.0"})
    run_id, reason = _claim(job, store)
    assert run_id is not None, reason
    assert run_id in {c["run_id"] for c in _live(job)}


def _child(**fields) -> dict:
    child = {"host": "", "pid": "", "process_start": "", "heartbeat": None, "start_time": 0}
    return child | fields


def test_a_run_is_stale_when_its_process_is_gone_or_its_heartbeat_stopped():
    here, now = socket.gethostname(), time.time()
    mine = _child(host=here, pid=str(os.getpid()), process_start=f"{interrupts.process_start_time():.3f}")
    assert not jobs.is_stale(mine, None)
    reused = mine | {"process_start": "1.0"}  # the pid is another process's now
    assert jobs.is_stale(reused, None)
    elsewhere = _child(host="another-host", pid="1", heartbeat=now - 120, start_time=(now - 600) * 1000)
    assert jobs.is_stale(elsewhere, stale_after=60)
    assert not jobs.is_stale(elsewhere, stale_after=300)
    assert not jobs.is_stale(elsewhere, stale_after=None)  # no deadline given: never judged
    fresh = elsewhere | {"heartbeat": now - 5}
    assert not jobs.is_stale(fresh, stale_after=60)
    never_beat = elsewhere | {"heartbeat": None}  # no epoch yet: judged from its start
    assert jobs.is_stale(never_beat, stale_after=60) and not jobs.is_stale(never_beat, stale_after=900)
