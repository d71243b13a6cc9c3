"""The disk holding ``mlflow.db`` fills up during a sweep: one line, exit non-zero, the job's run
FAILED (not RUNNING), and a resume once there is room reruns the job.

A real full disk: a small tmpfs (this needs root, as CI has), filled with a file the test removes.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import TINY, cli, require, require_root

from pipeline.tracking import contract

SIZE = "16m"
LEFT_KB = 150  # room for the sweep's parent and the job's run, not for its epochs and figures


def _mount(folder: Path) -> bool:
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(folder)], capture_output=True
    )
    return done.returncode == 0


def _fill(folder: Path, leave_kb: int) -> Path:
    filler = folder / "filler"
    free = shutil.disk_usage(folder).free
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(free - leave_kb * 1024, 0))
    return filler


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    require_root()
    require("a tmpfs mount", None if _mount(disk) else f"mount -t tmpfs on {disk} failed")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.slow
def test_a_full_disk_fails_the_job_in_one_line_and_a_resume_reruns_it(small_disk):
    import mlflow

    uri = f"sqlite:///{small_disk / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    client.search_experiments(max_results=1)  # the store exists; then the disk fills
    filler = _fill(small_disk, LEFT_KB)
    args = [
        "-m",
        "seed=1",
        *TINY,
        "tracking.log_model=false",
        f"tracking.uri={uri}",
        "tracking.experiment_name=full",
    ]

    full = cli(*args, cwd=small_disk, timeout=300)

    assert full.returncode != 0
    assert "Traceback" not in full.stderr and "sqlalche" not in full.stderr, full.stderr
    lines = full.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convlab: "), full.stderr
    said = full.stdout + full.stderr
    assert f"no space left on device: {small_disk / 'mlflow.db'}" in said
    experiment = client.get_experiment_by_name("full").experiment_id
    runs = client.search_runs([experiment])
    assert contract.RUNNING not in {r.info.status for r in runs}  # nothing left RUNNING
    job = next(r for r in runs if contract.PARENT in r.data.tags)
    assert job.info.status == contract.FAILED

    filler.unlink()  # room again
    resumed = cli(*args, "sweep.resume=last", cwd=small_disk, timeout=300)

    assert resumed.returncode == 0, (shutil.disk_usage(small_disk), resumed.stdout[-3000:])
    children = [r for r in client.search_runs([experiment]) if contract.PARENT in r.data.tags]
    assert sorted(r.info.status for r in children) == [contract.FAILED, contract.FINISHED]
