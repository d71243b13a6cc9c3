"""What a cluster scheduler knows about the job a run is part of (submitit: SLURM or local).

The run's own process asks; nothing here submits anything (Hydra's submitit launcher does:
``hydra/launcher=slurm`` or ``hydra/launcher=submitit_local``).
"""

from __future__ import annotations

import os
from pathlib import Path


def job_id() -> str | None:
    """This job's id on its scheduler (SLURM's ``<array job>_<index>`` for a sweep), else None."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    import submitit

    return str(submitit.JobEnvironment().job_id)


def job_log_files() -> list[Path]:
    """The scheduler's stdout and stderr files of this job (those that exist), else ``[]``.

    Under submitit (``SUBMITIT_EXECUTOR`` is set in its jobs) these are the
    ``<folder>/<job id>_<task>_log.out`` and ``.err`` files it redirects the job's output to:
    logged to the run at its end, they keep what the job printed next to its metrics.
    """
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return []
    import submitit  # light: no TensorFlow, no MLflow

    paths = submitit.JobEnvironment().paths
    return [path for path in (paths.stdout, paths.stderr) if path.is_file()]
