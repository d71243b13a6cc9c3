"""Each job is claimed once: a resume racing the original sweep, and two resumes started
together, never train the same (variant, seed) twice; a job running elsewhere is no failure."""

from __future__ import annotations

import collections
import subprocess
import sys

import pytest
from conftest import wait_for

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
