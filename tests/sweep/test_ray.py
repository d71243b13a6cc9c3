"""Sweeps on a real Ray cluster through ``hydra/launcher=ray_cluster`` (``pip install -e ".[ray]"``).

Ray takes the machine's network address as its node IP, and tests here send traffic to loopback
only: the fixture makes a private network namespace (``unshare -n``, then ``ip link set lo up``),
where the node IP is 127.0.0.1, starts ``ray start --head --num-cpus=2`` in it, and runs each
sweep in it too (``nsenter``). The tracking store is SQLite on disk, which the namespace shares.
Without Ray, or without the rights to make a namespace, these tests skip; in CI they fail.

Slow by nature (1.5 to 3 minutes each on 2 cores: starting Ray, TensorFlow loading in each
worker); the 4-job sweep is run once and shared by the tests that read it (a session fixture).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import RAY, require, wait_for, write_image_folder
from watch import sweep_runs, training

from pipeline.tracking import contract

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PORT = 6379  # Ray's own default: nothing else listens inside the namespace


@dataclasses.dataclass(frozen=True)
class RayCluster:
    namespace: int  # a process whose network namespace the cluster and the sweeps share

    def command(self, *args: str) -> list[str]:
        """``args`` run inside the cluster's network namespace."""
        return ["nsenter", "-t", str(self.namespace), "-n", "--", *args]

    @property
    def launcher(self) -> list[str]:
        return ["hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address=127.0.0.1:{PORT}"]


def _unavailable() -> str | None:
    for module, package in (("ray", "ray"), ("hydra_plugins.hydra_ray_launcher", "hydra-ray-launcher")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed (pip install -e '.[ray]')"
    missing = [tool for tool in ("unshare", "nsenter", "ip") if not shutil.which(tool)]
    if missing:
        return f"{', '.join(missing)} not found (util-linux, iproute2)"
    if os.geteuid() != 0:
        return "making a network namespace needs root"
    return None


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A 2-CPU Ray head in a network namespace of its own, stopped after the session."""
    require(RAY, _unavailable())
    namespace = subprocess.Popen(["unshare", "-n", "sleep", "infinity"])
    cluster = RayCluster(namespace.pid)
    ray = str(Path(sys.executable).parent / "ray")
    temp = tmp_path_factory.mktemp("ray")  # Ray's sockets and logs, not the shared /tmp/ray
    try:
        wait_for(
            lambda: os.readlink(f"/proc/{namespace.pid}/ns/net") != os.readlink("/proc/self/ns/net"), 10, 0.1
        )
        subprocess.run(cluster.command("ip", "link", "set", "lo", "up"), check=True, timeout=30)
        started = subprocess.run(
            cluster.command(ray, "start", "--head", "--num-cpus=2", f"--port={PORT}",
                            "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"),
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        if started.returncode != 0:
            pytest.fail(f"ray start failed: {(started.stdout + started.stderr)[-2000:]}")
        yield cluster
    finally:
        subprocess.run(cluster.command(ray, "stop", "--force"), capture_output=True, timeout=120)
        namespace.kill()
        namespace.wait()


def in_cluster(cluster: RayCluster, cwd: Path, *args: str, env: dict, timeout: float = 600):
    """``python -m pipeline -m ARGS`` inside the cluster's namespace; the CompletedProcess."""
    command = cluster.command(sys.executable, "-m", "pipeline", "-m", *args, *cluster.launcher)
    full_env = {**os.environ, **env}
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def ray_sweep(ray_cluster, tmp_path_factory):
    """Four seeds of a frozen pretrained backbone on the Ray cluster, tracked to SQLite on disk."""
    import keras

    folder = tmp_path_factory.mktemp("ray-sweep")
    weights = folder / "mobilenet_v2_035.weights.h5"
    keras.applications.MobileNetV2(
        alpha=0.35, include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg"
    ).save_weights(weights)
    root = write_image_folder(folder / "images", classes=("rural", "urban"), per_class=6, size=40)
    uri, experiment = f"sqlite:///{folder / 'mlflow.db'}", "ray-sweep"
    started = time.time()
    result = in_cluster(
        ray_cluster, folder, "experiment=transfer_learning", "backbone=mobilenet_v2", "backbone.alpha=0.35",
        "backbone.input_size=[32,32]", f"backbone.weights={weights}", f"dataset.path={root}",
        "augmentation=none", "seed=0,1,2,3", "trainer.epochs=1", "trainer.batch_size=4",
        "tracking.log_model=false", f"tracking.experiment_name={experiment}",
        env={"MLFLOW_TRACKING_URI": uri},  # here, not in the cluster's workers: the sweep hands it on
    )  # fmt: skip
    return result, uri, experiment, folder, time.time() - started


def test_a_sweep_on_ray_nests_four_finished_jobs_under_one_parent(ray_sweep):
    result, uri, experiment, folder, seconds = ray_sweep
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    parent, children = sweep_runs(uri, experiment)
    assert parent.info.status == contract.FINISHED
    assert len(children) == 4 and {c.info.status for c in children} == {contract.FINISHED}
    assert sorted(c.data.tags[contract.SEED] for c in children) == ["0", "1", "2", "3"]
    assert len({c.data.tags[contract.PID] for c in children}) == 2  # two Ray workers, 2 CPUs
    assert len(list(folder.glob("multirun/*/*/[0-3]/.hydra/config.yaml"))) == 4  # the sweep's own folder
    print(f"4-job Ray sweep: {seconds:.0f} s")


def test_a_sweep_on_ray_computes_the_backbones_features_once(ray_sweep):
    _, uri, experiment, folder, _ = ray_sweep
    _, children = sweep_runs(uri, experiment)
    passes = sorted(c.data.tags[contract.FEATURE_CACHE] for c in children)
    assert passes.count("computed") == 1 and set(passes) <= {"computed", "disk", "memory"}, passes
    assert list(folder.glob("multirun/*/*/.features/*.npz"))


def test_ctrl_c_on_ray_ends_every_job_killed_and_no_worker_keeps_training(ray_cluster, store, tmp_path):
    import psutil

    args = ["seed=0,1,2", "trainer.epochs=100000", "dataset.max_samples=200", "tracking.log_model=false"]
    command = ray_cluster.command(sys.executable, "-m", "pipeline")  # start() adds -m and the args
    process = _start_in(command, tmp_path, *args, *store.overrides, *ray_cluster.launcher)
    wait_for(lambda: training(store.uri, store.experiment, 2), timeout=300)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=200)
    assert process.returncode != 0 and "Traceback" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].startswith("convlab: interrupted; sweep "), stderr[-3000:]
    parent, children = sweep_runs(store.uri, store.experiment)
    assert parent.info.status == contract.KILLED
    assert len(children) >= 2 and {c.info.status for c in children} == {contract.KILLED}
    assert {c.data.tags[contract.ERROR] for c in children} == {"interrupted (Ctrl-C or SIGTERM)"}

    def jobs_running():
        return [
            p
            for p in psutil.process_iter(["cmdline"])
            if "ray::_run_job" in " ".join(p.info["cmdline"] or [])
        ]

    wait_for(lambda: not jobs_running(), timeout=60)  # the workers are back to ray::IDLE: no job process
    client = store.client()
    for child in children:  # and none trained on after its run was ended: no beat after the end
        beats = client.get_metric_history(child.info.run_id, contract.HEARTBEAT)
        assert beats and max(b.timestamp for b in beats) <= child.info.end_time + 2000, child.info.run_id


def _start_in(command: list[str], cwd: Path, *args: str) -> subprocess.Popen:
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    return subprocess.Popen([*command, "-m", *args], cwd=cwd, start_new_session=True, **pipes)


def test_a_killed_ray_worker_loses_its_job_not_the_sweep(ray_cluster, store, tmp_path):
    args = ["seed=0,1", "trainer.epochs=8", "dataset.max_samples=150", "tracking.log_model=false"]
    command = ray_cluster.command(sys.executable, "-m", "pipeline")  # start() adds -m and the args
    process = _start_in(command, tmp_path, *args, *store.overrides, *ray_cluster.launcher)
    victim = wait_for(lambda: training(store.uri, store.experiment, 1), timeout=300, every=0.2)[0]
    os.kill(int(victim.data.tags[contract.PID]), signal.SIGKILL)  # what the out-of-memory killer does
    _, stderr = process.communicate(timeout=300)

    assert process.returncode != 0
    for word in ("Traceback", "WorkerCrashedError"):  # no library's traceback
        assert word not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("convlab:")]
    seed = victim.data.tags[contract.SEED]
    assert len(lines) == 1 and f"seed={seed}" in lines[0] and "sweep.resume=" in lines[0], stderr[-3000:]
    _, children = sweep_runs(store.uri, store.experiment)
    by_id = {c.info.run_id: c for c in children}
    assert by_id[victim.info.run_id].info.status == contract.FAILED
    assert by_id[victim.info.run_id].data.tags[contract.ERROR] == "worker killed by SIGKILL (out of memory?)"
    finished = [c.data.tags[contract.SEED] for c in children if c.info.status == contract.FINISHED]
    assert finished == [str(1 - int(seed))]  # the other job went on, and the lost one was not rerun
