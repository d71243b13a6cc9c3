"""``hydra/launcher=submitit_local``: submitit's local launcher, watching every job at once.

See ``pipeline.sweep.launch.local_jobs``: a job whose process is killed (SIGKILL: the out-of-memory
killer) ends its run FAILED, the other jobs go on, and the sweep names the lost job. The sweep's
callback puts this class in place of the plugin's (``local_jobs.watch``): the user's
``hydra/launcher=submitit_local`` and its keys stay the plugin's own.
"""

from __future__ import annotations

import os

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher import submitit_launcher

from hydra_plugins.convlab_launchers.slurm_launcher import submit, with_failed


class LocalLauncher(submitit_launcher.LocalLauncher):
    def launch(self, job_overrides, initial_job_idx: int) -> list[JobReturn]:
        # Hydra imports every plugin module at start-up (--help, --cfg job): the sweep floor loads here
        from pipeline.sweep.launch import local_jobs
        from pipeline.tracking import contract

        jobs, labels, sweep_dir = submit(self, job_overrides, initial_job_idx)
        parent = os.environ.get(contract.ENV_PARENT_RUN_ID, "")
        results = local_jobs.collect(jobs, labels, uri=str(self.config.tracking.uri), parent=parent)
        return with_failed(results, job_overrides, sweep_dir)
