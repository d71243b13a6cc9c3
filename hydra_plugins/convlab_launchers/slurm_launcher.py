"""``hydra/launcher=slurm``: submitit's SLURM launcher, watching every job of the sweep at once.

See ``pipeline.sweep.launch.slurm``: a job that ends without a result (scancel, time limit, lost node)
is one line and the sweep goes on; a job silent for ``sweep.stale_after`` is given up; Ctrl-C
cancels every job.
"""

from __future__ import annotations

import logging
import math
import os
import signal
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        """The job itself, on its node. SLURM's warning signal (``signal_delay_s`` before the time
        limit, or a preemption) goes to submitit's own handler while it may requeue the job
        (``hydra.launcher.max_num_timeout`` times after a time limit): ``checkpoint()`` (the
        plugin's: the same call, resubmitted), ``scontrol requeue``, and the run ends KILLED; the
        requeued job finds it and continues it from its last checkpoint (``pipeline.app``).
        Past that bound, or where submitit would raise an error that ends the run FAILED, it is
        ignored: the run trains until SLURM's SIGTERM at the limit, ends KILLED, and the sweep names
        the reason. ``scancel`` sends no warning: its SIGTERM ends the run KILLED, no requeue."""
        signal.signal(signal.SIGUSR2, _requeue_while_allowed(signal.getsignal(signal.SIGUSR2)))
        return super().__call__(*args, **kwargs)

    def launch(self, job_overrides, initial_job_idx: int) -> list[JobReturn]:
        # Hydra imports every plugin module at start-up (--help, --cfg job): the sweep floor loads here
        from pipeline.sweep.launch import slurm
        from pipeline.tracking import contract

        jobs, labels, sweep_dir = submit(self, job_overrides, initial_job_idx)
        results = slurm.collect(
            jobs,
            labels,
            uri=str(self.config.tracking.uri),
            parent=os.environ.get(contract.ENV_PARENT_RUN_ID, ""),
            stale_after=float(self.config.sweep.stale_after),
            timeout_min=int(self.params.get("timeout_min", 0)),
        )
        return with_failed(results, job_overrides, sweep_dir)


def _requeue_while_allowed(submitit_handler):
    """SIGUSR2's handler: submitit's requeue while its count of time-outs allows one, else nothing."""
    handler = getattr(submitit_handler, "__self__", None)  # submitit's SignalHandler, when it set one

    def on_warning(signum, frame) -> None:
        delayed = getattr(handler, "_delayed", None)
        if delayed is None or delayed._timeout_countdown - handler.has_timed_out() < 0:
            log.info("SLURM's warning signal: no requeue left (hydra.launcher.max_num_timeout); training on")
            return
        try:
            submitit_handler(signum, frame)  # checkpoint(), scontrol requeue, then sys.exit
        except SystemExit:
            # the run ends KILLED (as on SLURM's SIGTERM), not FAILED, and the job leaves no result:
            # the requeued job resumes the run
            raise KeyboardInterrupt("requeued") from None

    return on_warning


def submit(launcher, job_overrides, initial_job_idx: int) -> tuple[list, list[str], Path]:
    """Submits every job as the plugin's own ``launch`` does: ``(jobs, labels, sweep folder)``.

    A copy of the plugin's: its ``launch`` submits and then waits on each job in turn, with no hook
    in between for the watch; it reads the plugin's ``_EXECUTOR``. Copied from, and checked on,
    hydra-submitit-launcher 1.2.0 (tests/test_private_apis.py pins it)."""
    assert launcher.config is not None
    executor = _executor(launcher)
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    log.info(f"Submitit '{launcher._EXECUTOR}' sweep output dir : {sweep_dir}")
    job_params, labels = [], []
    for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
        labels.append(" ".join(filter_overrides(overrides)))
        log.info(f"\t#{idx} : {labels[-1]}")
        job_params.append(
            (list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state())
        )
    return executor.map_array(launcher, *zip(*job_params)), labels, sweep_dir


def with_failed(results: list, job_overrides, sweep_dir: Path) -> list[JobReturn]:
    """The jobs' results, a failed job (NaN) in place of each that ended without one."""
    return [
        result if result is not None else _without_result(overrides, sweep_dir)
        for result, overrides in zip(results, job_overrides)
    ]


def _executor(launcher):
    """submitit's executor with the launcher's parameters (as the plugin's own ``launch``)."""
    import submitit

    kind, params = launcher._EXECUTOR, launcher.params
    init_keys = {"max_num_timeout", "submitit_folder"}
    init = {f"{kind}_max_num_timeout": params["max_num_timeout"]} if "max_num_timeout" in params else {}
    executor = submitit.AutoExecutor(cluster=kind, folder=params["submitit_folder"], **init)
    common = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(
        **{k if k in common else f"{kind}_{k}": v for k, v in params.items() if k not in init_keys}
    )
    return executor


def _without_result(overrides, sweep_dir: Path) -> JobReturn:
    """A job that ended without a result counts as a failed job (NaN), like one that raised."""
    return JobReturn(
        overrides=list(overrides),
        working_dir=str(sweep_dir),
        task_name="convlab",
        status=JobStatus.COMPLETED,
        _return_value=math.nan,
    )
