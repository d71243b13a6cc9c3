"""A sweep started in another process, watched through its store: the tests of clusters (SLURM,
Ray) and of outages (a server or its database going away) share these.

Not part of convlab; test modules import it (``from watch import ...``), never each other.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY

from pipeline.tracking import contract


def sweep_runs(uri: str, experiment: str):
    """(parent, children) of the single sweep of ``experiment``; (None, []) before it starts."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    runs = [] if found is None else client.search_runs([found.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get(contract.ROLE) == contract.ROLE_SWEEP]
    children = [r for r in runs if parents and r.data.tags.get(contract.PARENT) == parents[0].info.run_id]
    return (parents[0] if parents else None), children


def training(uri: str, experiment: str, count: int = 1):
    """The children that are RUNNING and have logged an epoch, once there are ``count`` of them."""
    _, children = sweep_runs(uri, experiment)
    busy = [c for c in children if c.info.status == contract.RUNNING and "loss" in c.data.metrics]
    return busy if len(busy) >= count else None


def start_tiny_sweep(cwd: Path, url: str, *args: str, epochs: int = 4) -> subprocess.Popen:
    """``python -m pipeline -m`` on the tiny data, tracked to ``url``, in its own process group."""
    command = [sys.executable, "-m", "pipeline", "-m", *TINY, f"trainer.epochs={epochs}"]
    command += ["tracking.log_model=false", f"tracking.uri={url}", *args]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    return subprocess.Popen(command, cwd=cwd, start_new_session=True, **pipes)


def child_after_first_epoch(client, experiment: str, process: subprocess.Popen, timeout: float = 300):
    """The first child of ``experiment`` that has logged an epoch; fails if ``process`` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id]) if found else []
        child = next((r for r in runs if contract.PARENT in r.data.tags and "loss" in r.data.metrics), None)
        if child is not None:
            return child
        time.sleep(0.3)
    pytest.fail("the run never finished an epoch")
