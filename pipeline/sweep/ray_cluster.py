"""A sweep's jobs on a Ray cluster: submitted at once, cancelled together on Ctrl-C.

Called by ``hydra/launcher=ray`` (``hydra_plugins.convlab_launchers.ray_launcher``) in place of
hydra-ray-launcher's own ``launch``, which it follows, with two changes:

- every job gets the sweep's folder as an absolute path and the store as this command resolved
  it: a Ray worker runs in a working directory of its own, with the cluster's environment (not
  this command's ``MLFLOW_TRACKING_URI``), and the jobs must share one folder and one store;
- Ctrl-C or SIGTERM (``KeyboardInterrupt`` here) cancels every job: Ray raises
  ``KeyboardInterrupt`` in a running job, whose run ends KILLED (``tracking.lifecycle.run_context``),
  and drops the queued ones; the sweep waits for that before its own runs are closed.

The cluster is one that exists already (``ray start --head`` on a machine, workers joined to it):
the preset sets ``hydra.launcher.ray.init.address`` and leaves ``object_store_memory`` to it.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

CANCEL_WAIT_SECONDS = 60.0  # running jobs end their runs KILLED within this


def launch(launcher, job_overrides, initial_job_idx: int) -> list:
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
    start_ray(launcher.ray_cfg.init)
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
                    launcher.ray_cfg.remote,
                    sweep_config,
                    launcher.task_function,
                    Singleton.get_state(),
                )
            )
    try:
        return ray.get(refs)
    except KeyboardInterrupt:
        cancel(refs)
        ray.shutdown()  # this command leaves the cluster: no more job output after its last line
        raise


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
