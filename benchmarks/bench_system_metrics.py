"""What MLflow's system metrics cost a run: ``tracking.system_metrics=true`` against ``false``.

Two measures:

1. Whole runs: ``python -m pipeline`` (the default run: 5 epochs on digits, tracked to SQLite)
   with system metrics on and off, as interleaved pairs (which goes first alternates), each
   pair's ratio on / off, and the median ratio, of wall-clock time and of CPU time (user +
   system). On shared, loaded cores wall-clock time varies 2x between identical runs, so it
   bounds the cost only as well as the noise allows; CPU time is much steadier.
2. The monitor inside real runs, without that noise: the default run with system metrics on, its
   monitor threads' own CPU time (read from /proc for each thread MLflow names
   ``SystemMetricsMonitor``, every 0.2 s while the run lasts) against the run's wall-clock time.
   Were every one of those CPU seconds taken from training's critical path, the run would be
   longer by that much: an upper bound on the cost, measured where it is paid.
3. The sampling itself, on its own: the CPU time (``time.thread_time``) of one sample
   as MLflow's monitor takes it (read CPU, memory, disk and network, then log them to the run
   in the same SQLite store), averaged over ``--samples``; divided by the sampling interval
   (``pipeline.tracking.system_metrics.INTERVAL``), the share of one core it takes.

    python benchmarks/bench_system_metrics.py [--repeats 5] [--inside 5] [--samples 50]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from pipeline.tracking import system_metrics


def timed(command: list[str], cwd: str, env: dict) -> tuple[float, float]:
    """Wall-clock seconds and CPU seconds (user + system, the process and its threads)."""
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[1:])} failed:\n{done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def whole_runs(repeats: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db"}
        run = [sys.executable, "-m", "pipeline"]
        timed(run, folder, env)  # creates the store: a one-off cost, not measured
        times: dict[bool, list[float]] = {True: [], False: []}
        cpu: dict[bool, list[float]] = {True: [], False: []}
        for pair in range(repeats):
            for on in (pair % 2 == 0, pair % 2 == 1):  # alternate which goes first
                wall, seconds = timed([*run, f"tracking.system_metrics={str(on).lower()}"], folder, env)
                times[on].append(wall)
                cpu[on].append(seconds)
            print(
                f"pair {pair + 1}: on {times[True][-1]:.2f} s ({cpu[True][-1]:.2f} CPU s), "
                f"off {times[False][-1]:.2f} s ({cpu[False][-1]:.2f} CPU s)",
                flush=True,
            )
    print(f"\nwhole runs (n={repeats} interleaved pairs, load average {os.getloadavg()[0]:.1f}):")
    for name, measured in (("wall", times), ("CPU", cpu)):
        for on in (False, True):
            values, label = measured[on], f"system_metrics={str(on).lower()}"
            print(
                f"  {name:<4} {label:<21}  median {statistics.median(values):7.2f} s  "
                f"min {min(values):7.2f}  max {max(values):7.2f}"
            )
        ratios = [on / off for on, off in zip(measured[True], measured[False])]
        spread = f"pairs: {min(ratios):.3f} to {max(ratios):.3f}"
        print(f"  {name:<4} median ratio on/off: {statistics.median(ratios):.3f} ({spread})")


# Runs ``python -m pipeline`` in this process, watching the monitor's threads (see the docstring).
WATCHED_RUN = r"""
import atexit, os, runpy, sys, threading, time
spent, started = {}, time.perf_counter()
def cpu(tid):
    try:
        with open(f"/proc/self/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None
def watch():
    while True:
        for t in threading.enumerate():
            if t.name == "SystemMetricsMonitor" and t.native_id:
                seconds = cpu(t.native_id)
                if seconds is not None:
                    spent[t.native_id] = seconds
        time.sleep(0.2)
threading.Thread(target=watch, daemon=True).start()
atexit.register(lambda: print(f"WATCHED {sum(spent.values()):.3f} {time.perf_counter() - started:.3f}",
                              file=sys.stderr))
sys.argv = ["pipeline", *sys.argv[1:]]
runpy.run_module("pipeline", run_name="__main__")
"""


def inside_runs(repeats: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db"}
        shares = []
        for index in range(repeats):
            done = subprocess.run([sys.executable, "-c", WATCHED_RUN, "tracking.system_metrics=true"],
                                  cwd=folder, env=env, capture_output=True, text=True)  # fmt: skip
            line = next((x for x in done.stderr.splitlines() if x.startswith("WATCHED ")), None)
            if done.returncode != 0 or line is None:
                sys.exit(f"the watched run failed:\n{done.stderr[-2000:]}")
            monitor, wall = (float(x) for x in line.split()[1:])
            shares.append(monitor / wall)
            print(f"run {index + 1}: monitor {monitor * 1000:.0f} ms CPU over a {wall:.2f} s run: "
                  f"{shares[-1]:.2%}", flush=True)  # fmt: skip
    print(
        f"\nthe monitor inside real runs (n={repeats}): median {statistics.median(shares):.2%} of the "
        f"run's wall time (max {max(shares):.2%}), load average {os.getloadavg()[0]:.1f}"
    )


def one_sample(samples: int) -> None:
    import mlflow
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        client = mlflow.MlflowClient(uri)
        run = client.create_run(client.create_experiment("bench", artifact_location=f"{folder}/a"))
        monitor = SystemMetricsMonitor(run.info.run_id, tracking_uri=uri)  # not started: timed here
        monitor.collect_metrics()  # the first call sets up psutil's counters
        cpu, wall = [], []
        for _ in range(samples):
            started, started_wall = time.thread_time(), time.perf_counter()
            monitor.collect_metrics()
            client.get_run(run.info.run_id)  # the monitor checks the run is still RUNNING
            monitor.publish_metrics(monitor.aggregate_metrics())
            monitor.mlflow_logger.flush()
            cpu.append(time.thread_time() - started)
            wall.append(time.perf_counter() - started_wall)
    interval = system_metrics.INTERVAL
    per_sample = statistics.median(cpu)
    wall_ms = statistics.median(wall) * 1000
    print(f"\none sample (n={samples}): median CPU {per_sample * 1000:.1f} ms, wall {wall_ms:.1f} ms")
    print(f"  every {interval:g} s: {per_sample / interval:.2%} of one core")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved pairs of whole runs")
    parser.add_argument("--inside", type=int, default=5, help="runs whose monitor threads are watched")
    parser.add_argument("--samples", type=int, default=50, help="samples timed one by one")
    args = parser.parse_args()
    one_sample(args.samples)
    if args.inside:
        inside_runs(args.inside)
    if args.repeats:
        whole_runs(args.repeats)


if __name__ == "__main__":
    main()
