"""Sweeps on a real SLURM cluster through ``hydra/launcher=slurm`` (``.ci/slurm-setup`` makes one).

CPU-sized jobs (no GPU, 1 CPU, 3 GB each) on the single-node cluster, tracked to the team server
or to SQLite on the shared disk. Without a cluster these tests skip; in CI (``CI=true`` or
``CONVLAB_REQUIRE_CLUSTER=1``) they fail. The preset's GPU keys cannot be exercised on these
CPU-only machines: ``test_launchers.py`` checks that they compose.

Slow by nature, each 1 to 2.5 minutes on 2 cores: every SLURM job loads TensorFlow in a process of
its own, and the cases wait on SLURM's own clocks (a 1-minute time limit, its kill wait) or on
``sweep.stale_after``. The 4-job sweep is run once and shared (a session fixture).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SLURM, cli, require, wait_for, write_image_folder
from watch import sweep_runs, training

from pipeline.tracking import contract

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CPU_SIZED = [
    "hydra/launcher=slurm",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=3",
    "hydra.launcher.timeout_min=10",
]
TINY = ["dataset.max_samples=200", "trainer.batch_size=64", "tracking.log_model=false"]


@pytest.fixture(scope="session")
def slurm():
    """The single-node SLURM cluster of ``.ci/slurm-setup``, its node idle or busy, not down."""
    reason = None
    if not shutil.which("sinfo"):
        reason = "no SLURM here (sinfo not found): run .ci/slurm-setup as root"
    else:
        shown = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
        states = shown.stdout.split()
        if shown.returncode != 0 or not {"idle", "mixed", "allocated"} & set(states):
            reason = f"SLURM has no usable node (sinfo: {(shown.stdout + shown.stderr).strip()[:200]})"
    require(SLURM, reason)


def queued(job_ids) -> list[str]:
    """The given SLURM jobs still running or queued (squeue)."""
    shown = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30)
    return [line for line in shown.stdout.split() if line.split("_")[0] in {j.split("_")[0] for j in job_ids}]


def start(cwd: Path, *args: str) -> subprocess.Popen:
    """``python -m pipeline -m ARGS`` in its own process group, as typed in a shell."""
    command = [sys.executable, "-m", "pipeline", "-m", *args]
    return subprocess.Popen(
        command, cwd=cwd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


# --- a 4-job sweep against the team server: shared by the tests that read it -------------------
@pytest.fixture(scope="session")
def server_sweep(slurm, server_uri, tmp_path_factory):
    """Four seeds of a frozen pretrained backbone on SLURM, tracked to the team server."""
    import keras

    folder = tmp_path_factory.mktemp("slurm-server")
    weights = folder / "mobilenet_v2_035.weights.h5"
    keras.applications.MobileNetV2(
        alpha=0.35, include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg"
    ).save_weights(weights)
    root = write_image_folder(folder / "images", classes=("rural", "urban"), per_class=6, size=40)
    experiment = "slurm-server-sweep"
    args = [
        "-m", "experiment=transfer_learning", "backbone=mobilenet_v2", "backbone.alpha=0.35",
        "backbone.input_size=[32,32]", f"backbone.weights={weights}", f"dataset.path={root}",
        "augmentation=none", "seed=0,1,2,3", "trainer.epochs=1", "trainer.batch_size=4",
        "tracking.log_model=false", f"tracking.uri={server_uri}", f"tracking.experiment_name={experiment}",
        *CPU_SIZED,
    ]  # fmt: skip
    started = time.time()
    result = cli(*args, cwd=folder, timeout=900)
    return result, server_uri, experiment, folder, time.time() - started


def test_a_sweep_on_slurm_nests_four_finished_jobs_with_their_scheduler_logs(server_sweep):
    result, uri, experiment, folder, seconds = server_sweep
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    parent, children = sweep_runs(uri, experiment)
    assert parent.info.status == contract.FINISHED
    assert len(children) == 4 and {c.info.status for c in children} == {contract.FINISHED}
    assert sorted(c.data.tags[contract.SEED] for c in children) == ["0", "1", "2", "3"]
    jobs = {c.data.tags[contract.SCHEDULER_JOB] for c in children}  # four SLURM jobs of one array
    assert len(jobs) == 4 and len({job.split("_")[0] for job in jobs}) == 1
    import mlflow

    client = mlflow.MlflowClient(uri)
    for child in children:  # what SLURM captured of each job, through the server
        logged = {a.path for a in client.list_artifacts(child.info.run_id, "scheduler")}
        assert any(path.endswith("_log.out") for path in logged), logged
    assert len(list(folder.glob("multirun/*/*/.submitit/*/*_log.out"))) == 4
    print(f"4-job SLURM sweep against the team server: {seconds:.0f} s")


def test_a_sweep_on_slurm_computes_the_backbones_features_once(server_sweep):
    _, uri, experiment, folder, _ = server_sweep
    _, children = sweep_runs(uri, experiment)
    passes = sorted(c.data.tags[contract.FEATURE_CACHE] for c in children)
    assert passes.count("computed") == 1 and set(passes) <= {"computed", "disk"}, passes
    assert list(folder.glob("multirun/*/*/.features/*.npz"))  # on the disk the jobs share


# --- against SQLite on the shared disk ---------------------------------------------------------
def test_scancel_of_a_running_job_is_one_line_and_resume_reruns_only_it(slurm, store, tmp_path):
    args = ["seed=0,1", "trainer.epochs=40", *TINY, *store.overrides, *CPU_SIZED]
    process = start(tmp_path, *args)
    # the first job to train (on a loaded machine the other may not have started, or be done already)
    (victim, *_) = wait_for(lambda: training(store.uri, store.experiment), timeout=300, every=1)
    job = victim.data.tags[contract.SCHEDULER_JOB]
    cancelled_at = time.time()
    subprocess.run(["scancel", job], check=True, timeout=30)
    stdout, stderr = process.communicate(timeout=400)
    output = stdout + stderr
    assert "Traceback" not in output and "UncompletedJobError" not in output, output[-3000:]
    lines = [line for line in output.splitlines() if f"SLURM job {job} " in line]
    assert len(lines) == 1 and "CANCELLED" in lines[0], output[-3000:]
    assert process.returncode != 0 and stderr.strip().splitlines()[-1].startswith(
        "convlab: 1 of 2 sweep jobs"
    )
    killed = store.client().get_run(victim.info.run_id)
    assert killed.info.status == contract.KILLED
    assert killed.info.end_time / 1000 - cancelled_at < 15 + 10  # KillWait (15 s) and a margin
    assert "cancelled" in killed.data.tags[contract.ERROR]
    _, children = sweep_runs(store.uri, store.experiment)
    assert sorted(c.info.status for c in children) == [contract.FINISHED, contract.KILLED]

    resumed = cli("-m", *args, "sweep.resume=last", cwd=tmp_path, timeout=400)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    parent, children = sweep_runs(store.uri, store.experiment)
    assert parent.info.status == contract.FINISHED and len(children) == 3  # only the cancelled job ran
    rerun = [
        c for c in children if c.info.run_id not in (victim.info.run_id,) and c.info.status == "FINISHED"
    ]
    assert victim.data.tags[contract.SEED] in {c.data.tags[contract.SEED] for c in rerun}


def test_a_job_past_its_time_limit_ends_killed_and_the_sweep_goes_on(slurm, store, tmp_path):
    args = ["trainer.epochs=1,100000", "seed=0", *TINY, *store.overrides, *CPU_SIZED]
    result = cli("-m", *args, "hydra.launcher.timeout_min=2", cwd=tmp_path, timeout=500)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output, output[-3000:]
    parent, children = sweep_runs(store.uri, store.experiment)
    by_epochs = {c.data.params["trainer.epochs"]: c for c in children}
    assert by_epochs["1"].info.status == contract.FINISHED  # the rest of the sweep went on
    late = by_epochs["100000"]
    assert late.info.status == contract.KILLED
    assert late.data.tags[contract.ERROR] == "SLURM: time limit reached (hydra.launcher.timeout_min=2)"
    assert len([line for line in output.splitlines() if "ended TIMEOUT" in line]) == 1
    assert parent.info.status == contract.FAILED


def test_a_job_that_goes_silent_is_given_up_after_stale_after(slurm, store, tmp_path):
    import psutil

    args = ["seed=0", "trainer.epochs=100000", *TINY, *store.overrides, *CPU_SIZED, "sweep.stale_after=45"]
    process = start(tmp_path, *args)
    (run,) = wait_for(lambda: training(store.uri, store.experiment), timeout=300, every=1)
    job = run.data.tags[contract.SCHEDULER_JOB]
    frozen = psutil.Process(int(run.data.tags[contract.PID]))  # its node is lost: no heartbeat, no result
    frozen.suspend()
    try:
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if frozen.is_running():
            frozen.resume()
    output = stdout + stderr
    assert "Traceback" not in output, output[-3000:]
    lines = [line for line in output.splitlines() if f"SLURM job {job} " in line]
    assert len(lines) == 1 and "no heartbeat" in lines[0] and "sweep.stale_after=45" in lines[0], output
    assert process.returncode != 0
    killed = store.client().get_run(run.info.run_id)
    assert killed.info.status == contract.KILLED and "no heartbeat" in killed.data.tags[contract.ERROR]
    wait_for(lambda: not queued([job]), timeout=60)  # the sweep cancelled it


def test_ctrl_c_cancels_every_job_and_leaves_nothing_running(slurm, store, tmp_path):
    process = start(tmp_path, "seed=0,1,2", "trainer.epochs=100000", *TINY, *store.overrides, *CPU_SIZED)
    busy = wait_for(lambda: training(store.uri, store.experiment, 2), timeout=300, every=1)
    jobs = [run.data.tags[contract.SCHEDULER_JOB] for run in busy]
    assert queued(jobs)  # two running, one queued behind them (2 CPUs)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=200)
    assert process.returncode != 0 and "Traceback" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].startswith("convlab: interrupted; sweep ")
    assert queued(jobs) == []  # nothing running or queued on SLURM
    parent, children = sweep_runs(store.uri, store.experiment)
    assert parent.info.status == contract.KILLED
    assert len(children) >= 2 and {c.info.status for c in children} == {contract.KILLED}


def test_a_job_past_its_time_limit_is_requeued_and_finishes_its_run_from_the_checkpoint(
    slurm, store, tmp_path
):
    """A 2-minute limit: SLURM's warning comes 85 to 115 s in (it checks every 30 s whether
    ``signal_delay_s`` + 30 s are left), the job has checkpointed every epoch, submitit requeues it
    (``hydra.launcher.max_num_timeout`` times at most) and the requeued job continues the same run.
    ``.ci/slurm-setup`` sets ``cred_expire=10``: a requeued job starts 10 s later, not 120.
    A 1-minute limit leaves too little: TensorFlow's start and the first epoch take 40 s here."""
    requeue = [
        "hydra.launcher.timeout_min=2",
        "hydra.launcher.signal_delay_s=5",
        "hydra.launcher.max_num_timeout=6",
    ]
    # 120 epochs of 1.4 s (idle: 60 ended inside one allocation) to 3 s (load): more than one
    # allocation trains (at most 115 s, 40 of them TensorFlow's start and the first epoch), at most seven
    args = ["seed=0", "trainer.epochs=120", "dataset.max_samples=1500", "trainer.batch_size=32",
            "tracking.log_model=false", "trainer.checkpoint.every_seconds=0", *store.overrides,
            *CPU_SIZED, *requeue]  # fmt: skip
    result = cli("-m", *args, cwd=tmp_path, timeout=840)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Traceback" not in output, output[-3000:]
    parent, children = sweep_runs(store.uri, store.experiment)
    assert parent.info.status == contract.FINISHED and len(children) == 1, output[-3000:]
    (run,) = children
    assert run.info.status == contract.FINISHED
    history = store.client().get_metric_history(run.info.run_id, "val_accuracy")
    assert sorted(m.step for m in history) == list(range(1, 121))  # every epoch once, in one run
    logs = [path.read_text() for path in (tmp_path / "multirun").rglob("*_log.*")]
    assert any("Requeued job" in log for log in logs)  # submitit requeued it at least once
    assert any("resuming run" in log for log in logs)  # ...and the requeued job resumed the run
