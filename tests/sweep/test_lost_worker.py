"""A joblib worker, or a submitit_local job's process, SIGKILLed mid-training (what the
out-of-memory killer does) loses its own job: the run ends FAILED with the reason, the other jobs
go on, and one line names the lost job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline.tracking import contract

SHRUNK = ["trainer.epochs=8", "dataset.max_samples=150", "tracking.log_model=false"]
LAUNCHERS = {  # submitit_local starts every job at once: two, on two cores
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1,2"],
    "submitit_local": ["hydra/launcher=submitit_local", "seed=0,1"],
}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_killed_worker_loses_one_job_not_the_sweep(launcher, store, tmp_path):
    args = [*LAUNCHERS[launcher], *SHRUNK]
    sweep = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "-m", *args, *store.overrides],
        cwd=tmp_path, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def training():
        runs = [r for r in store.runs() if contract.PARENT in r.data.tags and "loss" in r.data.metrics]
        return [r for r in runs if r.info.status == contract.RUNNING]

    deadline = time.time() + 300
    while not training():  # a worker past its job's first epoch
        assert time.time() < deadline and sweep.poll() is None, "no worker ever trained"
        time.sleep(0.2)
    victim = training()[0]
    os.kill(int(victim.data.tags[contract.PID]), signal.SIGKILL)
    _, stderr = sweep.communicate(timeout=600)

    assert sweep.returncode != 0
    for word in ("Traceback", "TerminatedWorkerError", "UncompletedJobError"):  # no library's traceback
        assert word not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("convlab:")]
    seed = victim.data.tags[contract.SEED]
    assert len(lines) == 1 and f"seed={seed}" in lines[0] and "sweep.resume=" in lines[0], stderr[-3000:]
    runs = {r.info.run_id: r for r in store.runs()}
    assert runs[victim.info.run_id].info.status == contract.FAILED
    assert runs[victim.info.run_id].data.tags[contract.ERROR] == "worker killed by SIGKILL (out of memory?)"
    finished = sorted(r.data.tags[contract.SEED] for r in runs.values() if r.info.status == contract.FINISHED)
    seeds = {s for arg in args if arg.startswith("seed=") for s in arg.removeprefix("seed=").split(",")}
    assert finished == sorted(seeds - {seed})  # the other jobs went on
    assert not [r for r in runs.values() if r.info.status == contract.RUNNING]
