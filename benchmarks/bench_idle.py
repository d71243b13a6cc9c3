"""Idle worker time in a study: ``experiment=tune_digits`` on two joblib workers, two trials in flight.

idle = workers x wall - the trials' busy time, where wall runs from the first trial's start to
the last trial's end and a trial is busy from its run's start to its end (the store's times).
So idle holds a worker waiting for its batch to end (what ask-and-tell removes), each job's own
start-up in its worker before its run opens, and the study's edges (the last trial running
alone). ``gaps``: the share between two trials on one worker (the first two). Confirm is off.

    python benchmarks/bench_idle.py                           # the README's numbers (3 studies)
    python benchmarks/bench_idle.py --code /work/main         # the same, on another checkout's code
    python benchmarks/bench_idle.py --repeats 1 --trials 4    # quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.tracking import contract

WORKERS = 2


def study(uri: str, cwd: Path, seed: int, trials: int, epochs: int, code: str | None) -> dict:
    """Runs one study; its wall time, its trials' busy time and the idle share."""
    experiment = f"idle_{seed}"
    command = [
        sys.executable, "-m", "pipeline", "-m", "experiment=tune_digits", "hydra/launcher=joblib",
        f"hydra.launcher.n_jobs={WORKERS}", f"hydra.sweeper.n_jobs={WORKERS}",
        f"hydra.sweeper.n_trials={trials}", "hydra.sweeper.confirm.top_k=0",
        f"hydra.sweeper.sampler.seed={seed}", f"trainer.epochs={epochs}",
        f"tracking.uri={uri}", f"tracking.experiment_name={experiment}",
    ]  # fmt: skip
    env = {**os.environ, **({"PYTHONPATH": code} if code else {})}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    return {"command_s": time.perf_counter() - started, **idle(uri, experiment)}


def idle(uri: str, experiment: str) -> dict:
    """The study's trials from the store: wall, busy and idle share over ``WORKERS`` workers."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], max_results=1000)
    trials = [r for r in runs if contract.TRIAL in r.data.tags and r.info.end_time]
    start = min(r.info.start_time for r in trials)
    wall = (max(r.info.end_time for r in trials) - start) / 1000
    busy = sum(r.info.end_time - r.info.start_time for r in trials) / 1000
    pruned = sum(contract.PRUNED_AT_EPOCH in r.data.tags for r in trials)
    gaps = 0.0  # between two trials on one worker (its pid): a job's start-up, and any batch's wait
    for pid in {r.data.tags[contract.PID] for r in trials}:
        mine = sorted((t.info.start_time, t.info.end_time) for t in trials
                      if t.data.tags[contract.PID] == pid)  # fmt: skip
        gaps += sum(max(0, later[0] - earlier[1]) for earlier, later in zip(mine, mine[1:])) / 1000
    # the rest of idle is at the edges: the first trials starting, the last trial running alone
    return {"trials": len(trials), "pruned": pruned, "wall_s": wall, "busy_s": busy,
            "idle": 1 - busy / (WORKERS * wall), "gaps": gaps / (WORKERS * wall)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="studies, sampler seeds SEED, SEED+1, ...")
    parser.add_argument("--seed", type=int, default=0, help="the first study's sampler seed")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--code", help="run this checkout's pipeline (its root on PYTHONPATH)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="convlab-idle-") as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        rows = []
        for seed in range(args.seed, args.seed + args.repeats):
            rows.append(study(uri, Path(folder), seed, args.trials, args.epochs, args.code))
            print(
                " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in rows[-1].items())
            )
    shape = f"{len(rows)} studies of {args.trials} trials, {args.epochs} epochs, {WORKERS} workers"
    wall = statistics.median(r["wall_s"] for r in rows)
    print(f"median idle {statistics.median(r['idle'] for r in rows):.1%} (wall {wall:.1f} s, {shape})")


if __name__ == "__main__":
    main()
