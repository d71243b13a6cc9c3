"""A sweep's jobs as submitit's local processes (``hydra/launcher=submitit_local``), watched at once.

Hydra's submitit launcher waits on each job's result in turn: a job whose process is killed
(SIGKILL, what the out-of-memory killer sends) has no result, submitit raises
``UncompletedJobError``, and the sweep stops with its traceback, the jobs still running abandoned.
``collect`` waits on every job instead. A job that ends without a result while its run is still
RUNNING was killed without a word: Python ends its run on SIGINT, SIGTERM or an error, so only
SIGKILL (or a crash of the interpreter itself) leaves it open. Its run ends FAILED with
``worker killed by SIGKILL (out of memory?)`` (``workers.report``: the sweep's own ``_lost``), the
other jobs go on, and the sweep ends with one line naming the lost job and ``sweep.resume=ID``.

submitit's local job is a controller process that starts the task: the task's exit status stays
with the controller, which exits 0 either way; so the signal is inferred from the silence.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from pipeline.sweep.launch import workers
from pipeline.tracking import contract, sweep_runs

log = logging.getLogger(__name__)

PLUGIN = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
WATCHING = "hydra_plugins.convlab_launchers.submitit_local_launcher.LocalLauncher"
POLL_SECONDS = 1.0


def watch(config) -> None:
    """Puts convlab's launcher (``collect``) in place of the plugin's local one, before Hydra makes
    it: the user's ``hydra/launcher=submitit_local`` and its keys stay the plugin's own."""
    from omegaconf import open_dict, read_write

    launcher = config.hydra.launcher
    if str(launcher.get("_target_", "")) == PLUGIN:
        with read_write(launcher), open_dict(launcher):
            launcher._target_ = WATCHING


KILLED_WITHOUT_A_WORD = "SIGKILL"


def collect(jobs: Sequence[Any], labels: Sequence[str], *, uri: str, parent: str) -> list[Any]:
    """Each job's result, or None for a job that ended without one (one line each)."""
    results: list[Any] = [None] * len(jobs)
    pending = set(range(len(jobs)))
    while pending:
        for index in sorted(pending):
            job = jobs[index]
            if not job.done():
                continue
            pending.discard(index)
            try:
                results[index] = job.results()[0]
            except Exception:  # submitit's UncompletedJobError (no result) or FailedJobError
                _lost(job, labels[index], uri, parent)
        if pending:
            time.sleep(POLL_SECONDS)
    return results


def _lost(job: Any, label: str, uri: str, parent: str) -> None:
    """A job without a result: its run, if still RUNNING, was killed (reported to the sweep)."""
    try:
        children = sweep_runs.children(uri, parent) if parent else []
    except Exception as err:
        log.warning("[sweep] could not read the sweep's runs: %s", err)
        children = []
    runs = [c for c in children if c["scheduler_job"] == str(job.job_id)]
    running = [c for c in runs if c["status"] == contract.RUNNING and c["pid"]]
    if running:
        workers.report(int(running[-1]["pid"]), KILLED_WITHOUT_A_WORD)
        return
    log.warning("[sweep] local job %s (%s) ended without a result; the sweep goes on", job.job_id, label)
