"""A sweep's jobs on a Ray cluster: submitted at once, cancelled together on Ctrl-C.

Called by ``hydra/launcher=ray`` (``hydra_plugins.convlab_launchers.ray_launcher``) in place of
hydra-ray-launcher's own ``launch``, which it follows, with three changes:

- every job gets the sweep's folder as an absolute path and the store as this command resolved
  it: a Ray worker runs in a working directory of its own, with the cluster's environment (not
  this command's ``MLFLOW_TRACKING_URI``), and the jobs must share one folder and one store;
- a job whose worker dies (SIGKILL: the out-of-memory killer, or Ray's own memory monitor) is
  lost, not rerun behind the sweep's back (``max_retries: 0`` in the preset): its run ends FAILED
  with ``worker killed by SIGKILL (out of memory?)``, the other jobs go on, and the sweep names it;
- Ctrl-C or SIGTERM (``KeyboardInterrupt`` here) cancels every job: Ray raises
  ``KeyboardInterrupt`` in a running job, whose run ends KILLED (``tracking.lifecycle.run_context``),
  and drops the queued ones; the sweep waits for that before its own runs are closed.

The cluster is one that exists already (``ray start --head`` on a machine, workers joined to it):
the preset sets ``hydra.launcher.ray.init.address`` and leaves ``object_store_memory`` to it.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from pathlib import Path

from pipeline.sweep.launch import local_jobs, workers
from pipeline.tracking import contract, sweep_runs

log = logging.getLogger(__name__)

CANCEL_WAIT_SECONDS = 60.0  # running jobs end their runs KILLED within this
POLL_SECONDS = 0.5
_starting = threading.Lock()  # a study launches each trial from a thread of its own: Ray starts once
# a Ray worker has the cluster's environment: these, where this command has them, go with each
# job in Ray's runtime_env (secrets travel in the environment, never in a job's overrides)
PASSED_ENV = (contract.ENV_STUDY_STORAGE, "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def _with_env(remote):
    """Ray's remote options with ``PASSED_ENV`` added to their runtime_env's env_vars."""
    from omegaconf import OmegaConf

    passed = {key: os.environ[key] for key in PASSED_ENV if os.environ.get(key)}
    if not passed:
        return remote
    options = OmegaConf.to_container(remote, resolve=True) if remote else {}
    runtime = dict(options.get("runtime_env") or {})
    runtime["env_vars"] = {**passed, **dict(runtime.get("env_vars") or {})}
    return OmegaConf.create({**options, "runtime_env": runtime})


def launch(launcher, job_overrides, initial_job_idx: int) -> list:
    """The plugin's ``launch``, copied: it waits on each job in turn and cancels none on Ctrl-C, with
    no hook to do otherwise; uses its private ``_launcher_util``. Copied from, and checked on,
    hydra-ray-launcher 1.2.2 (tests/test_private_apis.py pins it)."""
    import ray
    from hydra.core.singleton import Singleton
    from hydra.core.utils import configure_log, filter_overrides, setup_globals
    from hydra_plugins.hydra_ray_launcher._launcher_util import launch_job_on_ray, start_ray
    from omegaconf import open_dict

    setup_globals()
    config = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    log.info(f"Ray Launcher is launching {len(job_overrides)} jobs, sweep output dir: {sweep_dir}")
    launcher.ray_cfg.init.setdefault("object_store_memory", 78643200)  # the plugin's default
    with _starting:
        start_ray(launcher.ray_cfg.init)
    remote = _with_env(launcher.ray_cfg.remote)
    refs = []
    for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        sweep_config = launcher.hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = f"job_id_for_{idx}"
            sweep_config.hydra.job.num = idx
            sweep_config.hydra.sweep.dir = str(sweep_dir)
            # a Ray worker has the cluster's environment, not this command's: the store
            # ($MLFLOW_TRACKING_URI here) is resolved here, where the user set it
            sweep_config.tracking.uri = str(config.tracking.uri)
            refs.append(
                launch_job_on_ray(
                    launcher.hydra_context,
                    remote,
                    sweep_config,
                    launcher.task_function,
                    Singleton.get_state(),
                )
            )
    try:
        return collect(refs, job_overrides, str(config.tracking.uri), sweep_dir)
    except KeyboardInterrupt:
        cancel(refs)
        ray.shutdown()  # this command leaves the cluster: no more job output after its last line
        raise


def collect(refs: list, job_overrides, uri: str, sweep_dir: Path) -> list:
    """Each job's result; a job whose worker died (``ray.get`` raises ``WorkerCrashedError``, or
    Ray's ``OutOfMemoryError`` when its memory monitor killed it) is lost: its run ends FAILED
    through the sweep (``workers.report``), a failed job (NaN) stands in its place, the others go on."""
    import ray
    from hydra.core.utils import JobReturn, JobStatus

    results = []
    for ref, overrides in zip(refs, job_overrides):
        try:
            while not ray.wait([ref], timeout=POLL_SECONDS)[0]:
                pass  # polled: a study's slot thread gets its KeyboardInterrupt between polls
            results.append(ray.get(ref))
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.OutOfMemoryError):
            _lost(list(overrides), uri)
            results.append(
                JobReturn(overrides=list(overrides), working_dir=str(sweep_dir), task_name="convlab",
                          status=JobStatus.COMPLETED, _return_value=math.nan)
            )  # fmt: skip
    return results


def _lost(overrides: list[str], uri: str) -> None:
    """The job's run, still RUNNING (its worker died without a word): reported to the sweep."""
    label = " ".join(overrides)
    parent = os.environ.get(contract.ENV_PARENT_RUN_ID, "")
    try:
        children = sweep_runs.children(uri, parent) if parent else []
    except Exception as err:
        log.warning("[sweep] could not read the sweep's runs: %s", err)
        children = []
    running = [
        c for c in children if c["overrides"] == label and c["status"] == contract.RUNNING and c["pid"]
    ]
    if running:
        workers.report(int(running[-1]["pid"]), local_jobs.KILLED_WITHOUT_A_WORD, running[-1]["host"])
    else:
        log.warning("[sweep] Ray job (%s): its worker died; the sweep goes on", label)


def cancel(refs: list) -> None:
    """Cancels every job not done, then waits (a while) until the running ones have ended."""
    import ray

    done, pending = ray.wait(refs, num_returns=len(refs), timeout=0)
    if not pending:
        return
    log.info("[sweep] cancelling %d Ray jobs", len(pending))
    for ref in pending:
        ray.cancel(ref, force=False)  # KeyboardInterrupt in a running job: its run ends KILLED
    ray.wait(pending, num_returns=len(pending), timeout=CANCEL_WAIT_SECONDS)
