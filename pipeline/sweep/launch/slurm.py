"""A sweep's jobs on a SLURM cluster, watched from the command that submitted them.

Hydra's submitit launcher waits on each job's result in turn: the first job that ends without
one (cancelled with ``scancel``, past its time limit, its node lost) raises submitit's traceback
and abandons the rest, and a job that the scheduler forgot is polled for ever. ``collect`` waits
on all of them at once instead (one ``sacct`` call per poll for the whole sweep):

- a job that ends without a result gets ONE line, and its run says why in ``convlab.error``
  (SLURM's own word: ``TIMEOUT``, ``CANCELLED``, ``NODE_FAIL``...); the sweep goes on;
- a job that SLURM still counts as running but that has sent no heartbeat (a metric its run logs
  every few seconds; before its run opens, a line written to its log file) for
  ``sweep.stale_after`` seconds is given up: cancelled, its run ended KILLED, one line;
- Ctrl-C or SIGTERM cancels every job of the sweep and waits until SLURM has stopped them, so
  nothing is left running or queued.

The job's side (``hydra_plugins.convlab_launchers``): SLURM's SIGTERM at the time limit or on
``scancel`` ends the run KILLED (``tracking.lifecycle.run_context``); the tag
``convlab.scheduler_job`` ties the run to its SLURM job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from pipeline.tracking import contract, signals, sweep_runs

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0
CANCEL_WAIT_SECONDS = 90.0  # SLURM's KillWait (15 s in .ci/slurm-setup, 30 s by default) and a margin
WAITING = ("PENDING", "REQUEUED", "CONFIGURING", "RESIZING", "SUSPENDED")  # queued: never stale
REASONS = {
    "TIMEOUT": "SLURM: time limit reached (hydra.launcher.timeout_min={timeout_min})",
    "CANCELLED": "SLURM: cancelled (scancel)",
    "NODE_FAIL": "SLURM: its node failed",
    "OUT_OF_MEMORY": "SLURM: out of memory (hydra.launcher.mem_gb)",
    "PREEMPTED": "SLURM: preempted",
    "DEADLINE": "SLURM: deadline reached",
}


@dataclasses.dataclass
class Watched:
    """One submitted job, as the sweep sees it."""

    job: Any  # a submitit Job
    label: str  # ``variant seed=N``, for the one line about it
    seen_running: float | None = None  # when SLURM first said it runs: a floor for its heartbeat
    given_up: str | None = None  # why the sweep stopped waiting for it
    deadline: float = 0.0


def collect(
    jobs: Sequence[Any], labels: Sequence[str], *, uri: str, parent: str, stale_after: float, timeout_min: int
) -> list[Any]:
    """Each job's result, or None for a job that ended (or was given up) without one."""
    watched = [Watched(job, label) for job, label in zip(jobs, labels)]
    results: list[Any] = [None] * len(jobs)
    pending = set(range(len(jobs)))
    try:
        while pending:
            _refresh(jobs)
            runs = _runs_by_job(uri, parent)
            now = time.time()
            for index in sorted(pending):
                item = watched[index]
                run = runs.get(str(item.job.job_id))
                if _done(item.job):
                    results[index] = _result(item, run, uri, timeout_min)
                    pending.discard(index)
                elif item.given_up:
                    if now > item.deadline:  # the scheduler never confirmed: the sweep goes on anyway
                        _close_run(run, uri, item.given_up)
                        pending.discard(index)
                elif reason := _stale(item, run, stale_after, now):
                    item.given_up, item.deadline = reason, now + CANCEL_WAIT_SECONDS
                    log.warning("[sweep] %s: %s; cancelled, the sweep goes on", _name(item), reason)
                    item.job.cancel(check=False)
            if pending:
                time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        cancel(jobs)
        raise
    return results


def cancel(jobs: Sequence[Any]) -> None:
    """Cancels every job not done yet and waits until SLURM has stopped them: none left in
    ``squeue`` (their runs end KILLED on SLURM's SIGTERM); a second Ctrl-C meanwhile is ignored."""
    with signals.held():
        left = [str(job.job_id) for job in jobs if not _done(job)]
        if not left:
            return
        log.info("[sweep] cancelling %d SLURM jobs", len(left))
        subprocess.call(["scancel", *left])
        deadline = time.time() + CANCEL_WAIT_SECONDS
        while _in_queue(left) and time.time() < deadline:
            time.sleep(1)


def _in_queue(job_ids: Sequence[str]) -> list[str]:
    """Those of ``job_ids`` that SLURM still lists: queued, running or completing."""
    arrays = {job_id.split("_")[0] for job_id in job_ids}
    try:
        shown = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line for line in shown.stdout.split() if line.split("_")[0] in arrays]


def _refresh(jobs: Sequence[Any]) -> None:
    """One ``sacct`` call for every job (submitit's watcher polls ever more rarely on its own)."""
    if jobs:
        jobs[0].watcher.update()


def _state(job) -> str:
    return job.watcher.get_state(str(job.job_id), mode="cache")


def _done(job) -> bool:
    return job.paths.result_pickle.exists() or job.watcher.is_done(str(job.job_id), mode="cache")


def _name(item: Watched) -> str:
    return f"SLURM job {item.job.job_id} ({item.label})"


def _runs_by_job(uri: str, parent: str) -> dict[str, dict]:
    """The sweep's child runs by SLURM job id: the latest run of each job."""
    try:
        children = sweep_runs.children(uri, parent)
    except Exception as err:  # a store that blinks: the next poll asks again
        log.debug("could not read the sweep's runs: %s", err)
        return {}
    return {c["scheduler_job"]: c | {"parent": parent} for c in children if c["scheduler_job"]}


def _result(item: Watched, run: dict | None, uri: str, timeout_min: int) -> Any:
    """The job's result; for a job without one, one line and the scheduler's reason on its run."""
    if item.given_up:
        _close_run(run, uri, item.given_up)
        return None
    try:
        return item.job.results()[0]
    except Exception:  # submitit's UncompletedJobError / FailedJobError: the line below says it
        state = _state(item.job)
        word = state.split()[0] if state else "UNKNOWN"
        reason = REASONS.get(word, f"SLURM: ended {word}").format(timeout_min=timeout_min)
        log.warning("[sweep] %s ended %s without a result; the sweep goes on", _name(item), word)
        _close_run(run, uri, reason)
        return None


def _close_run(run: dict | None, uri: str, reason: str) -> None:
    """A job that ended without a result: its run ends KILLED with ``reason``, SLURM's word.

    SLURM reports a job TIMEOUT or CANCELLED while the job is still ending its own run (KILLED,
    on SLURM's SIGTERM): that is waited for, up to SLURM's kill wait, so that the reason written
    here is the last word."""
    if run is None or run["status"] in (contract.FINISHED, contract.FAILED):
        return
    try:
        deadline = time.time() + CANCEL_WAIT_SECONDS
        while run["status"] == contract.RUNNING and time.time() < deadline:
            time.sleep(2)
            run = next(
                (c for c in sweep_runs.children(uri, run["parent"]) if c["run_id"] == run["run_id"]), run
            )
        if run["status"] == contract.RUNNING:  # its process is gone without a word
            sweep_runs.end_run(uri, run["run_id"], contract.KILLED, reason)
        elif run["status"] == contract.KILLED:
            sweep_runs.set_run_tags(uri, run["run_id"], {contract.ERROR: reason})
    except Exception as err:
        log.warning("could not record why run %s ended: %s", run["run_id"], err)


def _written(job) -> list[float]:
    """When the job last wrote to its stdout or stderr file (on the shared disk)."""
    times = []
    for path in (job.paths.stdout, job.paths.stderr):
        with contextlib.suppress(OSError):
            times.append(path.stat().st_mtime)
    return times


def _stale(item: Watched, run: dict | None, stale_after: float, now: float) -> str | None:
    """Why a job SLURM counts as running is given up: no heartbeat for ``stale_after`` s."""
    state = _state(item.job)
    if state and state.split()[0] in WAITING:
        return None
    if item.seen_running is None:
        item.seen_running = now
        return None
    if run is not None and run["status"] != contract.RUNNING:
        return None  # its run has ended: the job is wrapping up
    signs = [item.seen_running, *_written(item.job)]  # before its run opens, what the job prints
    if run is not None:
        signs += [run["start_time"] / 1000, run["heartbeat"] or 0.0]
    silent = now - max(signs)
    if silent <= stale_after:
        return None
    return (
        f"no heartbeat for {silent:.0f} s (sweep.stale_after={stale_after:g}) "
        f"and no result from SLURM (state {state or 'UNKNOWN'})"
    )
