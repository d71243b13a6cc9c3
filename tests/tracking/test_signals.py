"""A scheduler's SIGTERM ends a run KILLED, however many times it arrives."""

from __future__ import annotations

import subprocess
import sys

from pipeline.tracking import contract

# Inside a run, SIGTERM; and again while the run is being ended, as srun forwards SLURM's own
# SIGTERM at a job's time limit (the hook is where the ending gathers a cluster job's log files).
SCRIPT = """
import os, signal, sys, time
from pipeline.tracking import lifecycle, scheduler

def again():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)  # the signal is handled here, in the middle of the run's ending
    return []

scheduler.job_log_files = again
with lifecycle.run_context(sys.argv[1], "signals", "twice", {}, system_metrics=False) as run:
    run.wait()
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)
"""


def test_a_second_sigterm_while_the_run_ends_still_leaves_it_killed(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run([sys.executable, "-c", SCRIPT, uri], capture_output=True, text=True, timeout=120)

    assert done.returncode != 0, done.stderr[-2000:]  # interrupted, not finished
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("signals").experiment_id])
    assert run.info.status == contract.KILLED  # not FINISHED by MLflow's exit handler
    assert run.data.tags[contract.ERROR] == "interrupted (Ctrl-C or SIGTERM)"


# A basic-launcher sweep: its job's run opens in the sweep's own process, under the sweep's guard.
UNDER_A_SWEEP = """
import os, signal, sys, time
from pipeline.sweep import interrupts
from pipeline.tracking import lifecycle

interrupts.SweepGuard(lambda status: print("sweep ends", status, flush=True)).__enter__()
with lifecycle.run_context(sys.argv[1], "signals", "job", {}, system_metrics=False) as run:
    run.wait()
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)
"""


def test_sigterm_during_a_job_in_the_sweeps_own_process_ends_the_sweep_killed(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run(
        [sys.executable, "-c", UNDER_A_SWEEP, uri], capture_output=True, text=True, timeout=120
    )

    assert done.returncode != 0 and "sweep ends KILLED" in done.stdout, done.stdout + done.stderr[-2000:]
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("signals").experiment_id])
    assert run.info.status == contract.KILLED
