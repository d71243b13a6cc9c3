"""A sweep's job, seen from inside: which sweep it belongs to, and whether it must run.

A job learns its sweep from two environment variables that the sweep sets through the job's own
config (``hydra.job.env_set``: ``contract.ENV_PARENT_RUN_ID``, ``contract.ENV_SWEEP_ID``), and the
sweep's definition (factors, size, when this pass started) from the parent run's tags, so a job
on another machine needs nothing but the tracking server. See ``pipeline.sweep``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time

from pipeline.config import overrides
from pipeline.sweep import interrupts
from pipeline.tracking import contract, scheduler, sweep_runs


@dataclasses.dataclass(frozen=True)
class SweepJob:
    """One job's view of its sweep: identity from the environment, definition from the parent."""

    sweep_id: str
    parent_run_id: str
    tracking_uri: str
    factors: list[str]
    total: int | None
    started: float  # when this pass of the sweep started (a resume starts a new pass)

    def variant(self, pairs: dict[str, str]) -> str:
        return overrides.variant(pairs, self.factors)

    def tags(self, pairs: dict[str, str], config_hash: str) -> dict[str, str]:

        tags = {
            contract.PARENT: self.parent_run_id,
            contract.ROLE: contract.ROLE_JOB,
            contract.SWEEP_ID: self.sweep_id,
            contract.CONFIG_HASH: config_hash,
            contract.HOST: socket.gethostname(),
            contract.PID: str(os.getpid()),
            contract.PROCESS_START: f"{interrupts.process_start_time():.3f}",
            contract.SWEEP_PROCESS: os.environ.get(contract.ENV_SWEEP_PROCESS, ""),
        }
        if job_id := scheduler.job_id():
            tags[contract.SCHEDULER_JOB] = job_id
        return tags | {contract.factor_tag(k): pairs[k] for k in self.factors if k in pairs}


def current_job(tracking_uri: str) -> SweepJob | None:
    """The sweep this job belongs to, from ``CONVLAB_PARENT_RUN_ID``; None outside a sweep."""

    parent_id = os.environ.get(contract.ENV_PARENT_RUN_ID)
    if not parent_id:
        return None
    tags = sweep_runs.run_tags(tracking_uri, parent_id)
    total = tags.get(contract.TOTAL_JOBS)
    return SweepJob(
        sweep_id=os.environ.get(contract.ENV_SWEEP_ID) or tags.get(contract.SWEEP_ID, ""),
        parent_run_id=parent_id,
        tracking_uri=tracking_uri,
        factors=json.loads(tags.get(contract.FACTORS, "[]")),
        total=int(total) if total else None,
        started=float(tags.get(contract.STARTED, time.time())),
    )


def config_hash(resolved: dict) -> str:
    """A job's identity for resume: its resolved config, seed included, minus where it is tracked."""
    import hashlib

    kept = {k: v for k, v in resolved.items() if k not in ("hydra", "tracking", "sweep")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def skip_reason(job: SweepJob, digest: str, fail_fast: bool) -> str | None:
    """Why this job need not run: already FINISHED (resume), running in another process, or an
    earlier job failed (fail_fast)."""

    siblings = sweep_runs.children(job.tracking_uri, job.parent_run_id)
    same = [r for r in siblings if r["config_hash"] == digest]
    if any(r["status"] == contract.FINISHED for r in same):
        return "already finished"
    live = [r for r in same if r["status"] == contract.RUNNING and r["run_id"] and not is_stale(r, None)]
    if live:
        return running_elsewhere(live[0])
    this_pass = [r for r in siblings if r["start_time"] >= job.started * 1000]
    if any(r["error"].startswith(contract.WORKER_KILLED) for r in this_pass if r["config_hash"] == digest):
        return f"lost in this pass (its worker was killed); rerun it: sweep.resume={job.sweep_id}"
    if fail_fast and any(r["status"] == contract.FAILED for r in this_pass):
        return "an earlier job failed (sweep.fail_fast=true)"
    return None


def running_elsewhere(child: dict) -> str:
    """``running in process N on HOST``: where a job's live run is (from its tags)."""
    return f"running in process {child['pid'] or '?'} on {child['host'] or '?'}"


CLAIM_PREFIX = "convlab.claim."  # the parent's params ``convlab.claim.<config hash>.<attempt>``


def claim(
    job: SweepJob, digest: str, experiment_name: str, run_name: str, tags: dict
) -> tuple[str | None, str]:
    """Claims a job through the tracking store alone (no file lock: sweeps span machines).

    Creates the job's run (RUNNING, tagged with its config hash). The job's attempts are params
    of the sweep's parent, ``convlab.claim.<hash>.<n>`` = the run that holds attempt n. Unless
    the job has FINISHED, or its latest attempt's run is alive, this run writes attempt n + 1:
    a param cannot change, so the store itself (its unique key) decides which of two claimants
    at once wrote it first, whatever their clocks say. A run that yields is deleted. Returns
    ``(run id, "")`` to train the job, else ``(None, why not)``.
    """
    uri, parent = job.tracking_uri, job.parent_run_id
    run_id = sweep_runs.create_child_run(uri, experiment_name, run_name, tags)
    same = {r["run_id"]: r for r in sweep_runs.children(uri, parent) if r["config_hash"] == digest}
    attempts = {
        int(n): holder for n, holder in sweep_runs.params(uri, parent, f"{CLAIM_PREFIX}{digest}.").items()
    }
    latest = max(attempts, default=-1)
    holder = same.get(attempts.get(latest, ""))
    if any(r["status"] == contract.FINISHED for r in same.values()):
        reason = "already finished"
    elif holder is not None and holder["status"] == contract.RUNNING and not is_stale(holder, None):
        reason = running_elsewhere(holder)
    else:
        first = sweep_runs.write_once(uri, parent, f"{CLAIM_PREFIX}{digest}.{latest + 1}", run_id)
        reason = "" if first == run_id else running_elsewhere(_run(uri, parent, first))
    if reason:
        sweep_runs.delete_run(uri, run_id)
        return None, reason
    return run_id, ""


def _run(uri: str, parent: str, run_id: str) -> dict:
    """The child run ``run_id`` (as ``sweep_runs.children`` gives it), or an empty one."""
    found = [r for r in sweep_runs.children(uri, parent) if r["run_id"] == run_id]
    return found[0] if found else {"pid": "", "host": ""}


def is_stale(child: dict, stale_after: float | None) -> bool:
    """Whether a RUNNING child's process is gone (see the module docstring)."""

    if child["host"] == socket.gethostname() and child["pid"]:
        started = float(child["process_start"]) if child["process_start"] else None
        return not interrupts.process_alive(int(child["pid"]), started)
    if stale_after is None:
        return False
    last = child["heartbeat"] or child["start_time"] / 1000
    return time.time() - last > stale_after
