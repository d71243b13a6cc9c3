"""Cluster launchers: the SLURM preset composes on submitit's schema; submitit_local runs a sweep."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import SLURM, cli, require

from pipeline.tracking import contract, scheduler

SHRUNK = ["seed=0", "trainer.epochs=1", "dataset.max_samples=200", "tracking.log_model=false"]


def test_slurm_preset_composes_on_the_plugins_schema(tmp_path):
    shown = cli("--cfg", "hydra", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-2000:]
    launcher = yaml.safe_load(shown.stdout)["hydra"]["launcher"]
    assert launcher["_target_"] == "hydra_plugins.convlab_launchers.slurm_launcher.SlurmLauncher"
    assert (launcher["gpus_per_node"], launcher["tasks_per_node"], launcher["timeout_min"]) == (1, 1, 120)
    assert launcher["submitit_folder"] == "${hydra.sweep.dir}/.submitit/%j"  # where the job logs go
    assert launcher["partition"] == "gpu"  # every key of the plugin's schema can be set
    assert "deprecated" not in shown.stderr  # extends the schema, not Hydra's old schema matching

    misspelt = cli("--cfg", "hydra", "hydra/launcher=slurm", "hydra.launcher.gpus=2", cwd=tmp_path)
    assert misspelt.returncode != 0 and "gpus" in misspelt.stderr


def test_slurm_launcher_is_the_plugins_own_with_a_watch():
    from hydra_plugins.convlab_launchers.slurm_launcher import SlurmLauncher

    # By name, not identity: Hydra's plugin discovery (run in this process by earlier tests)
    # executes every hydra_plugins module again and replaces it in sys.modules, so the class that
    # SlurmLauncher extends need not be the object that a fresh import finds.
    bases = [f"{c.__module__}.{c.__qualname__}" for c in SlurmLauncher.__mro__]
    assert "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher" in bases


def test_a_slurm_job_ignores_slurms_warning_signal_with_no_requeue(tmp_path):
    """The job itself (``__call__`` on its node) ignores SIGUSR2 where no requeue can follow (here no
    submitit handler at all): the run trains on until SLURM's SIGTERM ends it KILLED. In a process
    of its own: the job's start resets Hydra's state, which this one shares with other tests."""
    job = (
        "import os, signal\n"
        "from hydra_plugins.convlab_launchers.slurm_launcher import SlurmLauncher\n"
        f"launcher = SlurmLauncher(submitit_folder={str(tmp_path)!r}, max_num_timeout=0)\n"
        "try:\n"
        "    launcher([], 'hydra.sweep.dir', 0, 'job_id_for_0', {})  # no sweep config: fails once started\n"
        "except Exception:\n"
        "    pass\n"
        "os.kill(os.getpid(), signal.SIGUSR2)  # SLURM's warning: the default action would end the job\n"
        "print('trained on')\n"
    )
    done = subprocess.run([sys.executable, "-c", job], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "trained on", done.stderr[-2000:]


class _SubmititHandler:
    """submitit's ``SignalHandler`` as the job's SIGUSR2 handler reads it (checked on submitit 1.5.4):
    ``_delayed._timeout_countdown`` (``max_num_timeout`` at submission, less each requeue after a
    time-out), ``has_timed_out()``; its ``checkpoint_and_try_requeue`` requeues, then exits."""

    def __init__(self, countdown: int, timed_out: bool = True):
        import types

        self._delayed = types.SimpleNamespace(_timeout_countdown=countdown)
        self.timed_out, self.calls = timed_out, 0

    def has_timed_out(self) -> bool:
        return self.timed_out

    def checkpoint_and_try_requeue(self, signum, frame=None) -> None:
        self.calls += 1
        raise SystemExit(-1)


def test_slurms_warning_signal_requeues_only_while_max_num_timeout_allows():
    """While ``hydra.launcher.max_num_timeout`` allows a requeue, SLURM's warning goes to submitit's
    handler (checkpoint, ``scontrol requeue``) and the run ends as interrupted (KILLED), not FAILED;
    with none left (``max_num_timeout=0`` after a time-out) it is ignored and the run trains on."""
    import signal

    from hydra_plugins.convlab_launchers.slurm_launcher import _requeue_while_allowed

    allowed = _SubmititHandler(countdown=1)
    with pytest.raises(KeyboardInterrupt, match="requeued"):
        _requeue_while_allowed(allowed.checkpoint_and_try_requeue)(signal.SIGUSR2, None)
    assert allowed.calls == 1

    preempted = _SubmititHandler(countdown=0, timed_out=False)  # a preemption spends no time-out
    with pytest.raises(KeyboardInterrupt, match="requeued"):
        _requeue_while_allowed(preempted.checkpoint_and_try_requeue)(signal.SIGUSR2, None)

    none_left = _SubmititHandler(countdown=0)  # max_num_timeout=0, past its time limit
    _requeue_while_allowed(none_left.checkpoint_and_try_requeue)(signal.SIGUSR2, None)  # returns
    assert none_left.calls == 0

    _requeue_while_allowed(signal.SIG_DFL)(signal.SIGUSR2, None)  # not in a submitit job: returns


def test_the_watch_submits_with_the_presets_resources_as_the_plugin_does(tmp_path):
    """``launch`` (the watch) builds submitit's executor itself, as the plugin's own ``launch``
    does (hydra-submitit-launcher 1.2.0): every key of the preset reaches SLURM's parameters."""
    from hydra_plugins.convlab_launchers import slurm_launcher

    # submitit's SLURM executor looks for srun as it is made
    missing = None if shutil.which("srun") else "no SLURM here (srun not found): run .ci/slurm-setup as root"
    require(SLURM, missing)
    params = {"submitit_folder": str(tmp_path / "%j"), "partition": "gpu", "gpus_per_node": 1}
    params |= {"timeout_min": 120, "max_num_timeout": 5, "mem_gb": 3, "tasks_per_node": 1}
    executor = slurm_launcher._executor(slurm_launcher.SlurmLauncher(**params))
    assert executor.cluster == "slurm"
    slurm = executor._executor  # submitit's own executor (checked on submitit 1.5.4): what sbatch gets
    assert slurm.max_num_timeout == 5  # submitit's default is 3
    assert {
        "partition": "gpu",
        "gpus_per_node": 1,
        "time": 120,
        "mem": "3GB",
        "ntasks_per_node": 1,
    }.items() <= (slurm.parameters.items())


def test_a_job_that_ended_without_a_result_counts_as_failed(tmp_path):
    """A job scancel'd, past its time limit or on a lost node has no result: the sweep gets a failed
    job (NaN) in its place, so the summary counts it, and the other jobs' results are kept."""
    import math

    from hydra.core.utils import JobReturn, JobStatus

    from hydra_plugins.convlab_launchers import slurm_launcher

    finished = JobReturn(overrides=["seed=0"], status=JobStatus.COMPLETED, _return_value=0.9)
    results = slurm_launcher.with_failed([finished, None], [["seed=0"], ["seed=1"]], tmp_path)
    assert results[0] is finished
    assert results[1].overrides == ["seed=1"] and math.isnan(results[1].return_value)


def test_ray_preset_joins_an_existing_cluster(tmp_path):
    address = "hydra.launcher.ray.init.address=10.0.0.5:6379"
    shown = cli("--cfg", "hydra", "hydra/launcher=ray_cluster", address, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-2000:]
    launcher = yaml.safe_load(shown.stdout)["hydra"]["launcher"]
    assert launcher["_target_"] == "hydra_plugins.convlab_launchers.ray_launcher.RayLauncher"
    # Ray refuses an object store size when joining a cluster: the preset leaves it to the cluster
    assert launcher["ray"]["init"] == {"address": "10.0.0.5:6379", "object_store_memory": None}
    # a job whose worker dies is lost and named, not rerun by Ray behind the sweep's back
    assert launcher["ray"]["remote"] == {"num_cpus": 1, "num_gpus": 0, "max_retries": 0}
    assert "deprecated" not in shown.stderr  # not named `ray`: that is the plugin's own config


def test_job_log_files_outside_a_scheduler_is_empty(monkeypatch):
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    assert scheduler.job_log_files() == []


def test_job_log_files_are_the_submitit_jobs_own_output(tmp_path):
    import submitit

    executor = submitit.LocalExecutor(folder=tmp_path / "%j")
    executor.update_parameters(timeout_min=5)
    job = executor.submit(scheduler.job_log_files)  # runs in its own process, as a sweep job does
    assert job.result() == [job.paths.stdout, job.paths.stderr]
    assert "JobEnvironment" in job.paths.stdout.read_text()


@pytest.mark.slow
def test_submitit_local_sweep_runs_each_job_in_its_own_process(store, tmp_path):
    sweep = ["-m", "downsample=stride,maxpool", *SHRUNK, *store.overrides, "hydra/launcher=submitit_local"]
    result = cli(*sweep, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = store.runs()
    (parent,) = [r for r in runs if r.data.tags.get(contract.ROLE) == contract.ROLE_SWEEP]
    children = [r for r in runs if r.data.tags.get(contract.PARENT) == parent.info.run_id]
    assert parent.info.status == contract.FINISHED
    assert len(children) == 2 and {c.info.status for c in children} == {contract.FINISHED}
    assert len(list(tmp_path.glob("**/.submitit/*/*_log.out"))) == 2  # one process per job
    for child in children:  # what the scheduler captured of each job sits beside its metrics
        logged = {a.path for a in store.client().list_artifacts(child.info.run_id, "scheduler")}
        assert any(path.endswith("_log.out") for path in logged), logged
