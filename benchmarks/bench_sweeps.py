"""Sweep throughput by launcher, and what tracking to the team server costs a run against SQLite.

1. Jobs per minute for the 12-job ``stride_vs_pool`` sweep (2 x 2 variants x 3 seeds) with
   Hydra's basic launcher (one process), joblib (``n_jobs=2``, worker processes) and
   submitit_local (one process per job, all started at once); each sweep a whole command, as a
   user runs it, on a fresh SQLite store created before timing.
2. The same small single run (``python -m pipeline``, 2 epochs) tracked to SQLite and to the
   PostgreSQL-backed server (``pipeline.server``, on this machine), interleaved, REPEATS each:
   medians, ratio and the difference per run. Needs root and PostgreSQL; skipped otherwise.
3. ``--only cluster``: the same 12-job sweep from a laptop to a cluster: basic, joblib and SLURM
   (``.ci/slurm-setup``'s single node, 1 CPU per job) tracked to the team server, and Ray (a
   2-CPU head started here, ``pip install -e ".[ray]"``). Ray runs in a private network namespace
   (tests and benchmarks here send traffic to loopback only, and Ray takes the machine's address),
   which cannot reach the server: its jobs track to SQLite on the disk they share.

    python benchmarks/bench_sweeps.py            # parts 1 and 2: the README's numbers (takes a while)
    python benchmarks/bench_sweeps.py --only cluster   # part 3 (needs root, SLURM, Ray, PostgreSQL)
    python benchmarks/bench_sweeps.py --quick    # 1 epoch, 200 images: checks it runs end to end
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from pipeline.server import postgres

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/teamserver.py, not installed
import teamserver  # noqa: E402 (a team server on this machine, shared with the tests)

LAUNCHERS = {
    "basic": [],
    "joblib (n_jobs=2)": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "submitit_local": ["hydra/launcher=submitit_local"],
}
SLURM = ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=3"]  # fmt: skip
RAY_PORT = 6379
RAY = ["hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address=127.0.0.1:{RAY_PORT}"]


def timed(command: list[str], cwd: Path, env: dict) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


@contextmanager
def team_server(folder: Path, **options):
    """``pipeline.server`` on 127.0.0.1 with a fresh PostgreSQL database, its artifacts and log in
    ``folder``; yields its URL; stopped and the database dropped after.

    ``options``: ``teamserver.launch``'s."""
    database = postgres.Database(f"convlab_bench_{secrets.token_hex(4)}", "convlab_bench", "convlab_bench")
    port = teamserver.free_port()
    folder.mkdir(parents=True, exist_ok=True)
    process = teamserver.launch(database, folder / "artifacts", port, folder / "server.log", **options)
    try:
        teamserver.wait_until_ready(f"http://127.0.0.1:{port}", process, timeout=300)
        yield f"http://127.0.0.1:{port}"
    finally:
        teamserver.stop(process)
        postgres.drop_database(database)


def new_store(folder: Path) -> str:
    """A SQLite store, created now so that no timing pays for it."""
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its "Creating initial tables" lines
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.MlflowClient(uri).search_experiments(max_results=1)
    return uri


def sweep_throughput(shrink: list[str], seeds: int) -> None:
    jobs = 4 * seeds
    seed_list = ",".join(str(seed) for seed in range(seeds))
    print(f"\nSweep throughput: experiment=stride_vs_pool, {jobs} jobs ({' '.join(shrink) or 'as preset'})")
    print(f"{'launcher':<20}{'wall s':>9}{'jobs/min':>10}")
    for name, launcher in LAUNCHERS.items():
        with tempfile.TemporaryDirectory() as folder:
            env = {**os.environ, "MLFLOW_TRACKING_URI": new_store(Path(folder))}
            command = [sys.executable, "-m", "pipeline", "-m", "experiment=stride_vs_pool"]
            command.append(f"seed={seed_list}")
            seconds = timed([*command, *shrink, *launcher], Path(folder), env)
        print(f"{name:<20}{seconds:>9.1f}{jobs / seconds * 60:>10.2f}")


def tracking_cost(shrink: list[str], repeats: int) -> None:

    print(f"\nPer-run cost of tracking: one run ({' '.join(shrink)}), n={repeats} interleaved")
    reason = postgres.unavailable()
    if reason:
        print(f"skipped: {reason}")
        return
    with tempfile.TemporaryDirectory() as folder, team_server(Path(folder)) as uri:
        stores = {"SQLite": new_store(Path(folder)), "server (PostgreSQL)": uri}
        times = _interleaved(stores, shrink, repeats, Path(folder))
    base = statistics.median(times["SQLite"])
    print(f"{'store':<22}{'median s':>10}{'min s':>8}{'max s':>8}{'ratio':>8}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<22}{median:>10.2f}{min(values):>8.2f}{max(values):>8.2f}{median / base:>8.2f}")
    print(f"server - SQLite per run: {statistics.median(times['server (PostgreSQL)']) - base:+.2f} s")


def _interleaved(stores: dict[str, str], shrink: list[str], repeats: int, folder: Path) -> dict:
    times: dict[str, list[float]] = {name: [] for name in stores}
    command = [sys.executable, "-m", "pipeline", *shrink, "tracking.experiment_name=bench_tracking"]
    for uri in stores.values():  # a first run each creates the experiment: not timed
        timed(command, folder, {**os.environ, "MLFLOW_TRACKING_URI": uri})
    for _ in range(repeats):
        for name, uri in stores.items():
            times[name].append(timed(command, folder, {**os.environ, "MLFLOW_TRACKING_URI": uri}))
    return times


def scale_out(shrink: list[str], seeds: int) -> None:
    """Part 3: the same sweep with each launcher, from one process to a cluster."""
    jobs = 4 * seeds
    sweep = ["-m", "experiment=stride_vs_pool", f"seed={','.join(str(s) for s in range(seeds))}", *shrink]
    print(f"\nFrom a laptop to a cluster: stride_vs_pool, {jobs} jobs ({' '.join(shrink) or 'as preset'})")
    print(f"{'launcher':<36}{'store':<22}{'wall s':>9}{'jobs/min':>10}")
    with tempfile.TemporaryDirectory() as folder:
        for name, store, seconds in _server_sweeps(sweep, Path(folder)):
            print(f"{name:<36}{store:<22}{seconds:>9.1f}{jobs / seconds * 60:>10.2f}", flush=True)
        if row := _ray_sweep(sweep, Path(folder)):
            name, store, seconds = row
            print(f"{name:<36}{store:<22}{seconds:>9.1f}{jobs / seconds * 60:>10.2f}", flush=True)


def _server_sweeps(sweep: list[str], folder: Path):
    """basic, joblib and SLURM (when there is one), tracked to a team server started here: rows
    as they are measured."""
    reason = postgres.unavailable()
    if reason:
        print(f"team server skipped: {reason}")
        return []
    launchers = {"basic": [], "joblib (n_jobs=2)": LAUNCHERS["joblib (n_jobs=2)"]}
    if shutil.which("sinfo"):
        launchers["SLURM (1 node, 1 CPU a job)"] = SLURM
    with team_server(folder) as uri:
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
        for name, launcher in launchers.items():
            experiment = f"tracking.experiment_name=bench_{name.split()[0].lower()}"
            command = [sys.executable, "-m", "pipeline", *sweep, *launcher, experiment]
            yield name, "team server", timed(command, folder, env)


def _ray_sweep(sweep: list[str], folder: Path) -> tuple[str, str, float] | None:
    """The sweep on a 2-CPU Ray head in a network namespace of its own (loopback only)."""
    ray = Path(sys.executable).parent / "ray"
    if not ray.exists() or not shutil.which("unshare"):
        print("Ray skipped: pip install -e '.[ray]' (and unshare, as root)")
        return None
    namespace = subprocess.Popen(["unshare", "-n", "sleep", "infinity"])
    inside = ["nsenter", "-t", str(namespace.pid), "-n", "--"]
    try:
        time.sleep(0.5)
        subprocess.run([*inside, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run([*inside, str(ray), "start", "--head", "--num-cpus=2", f"--port={RAY_PORT}",
                        "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={folder / 'ray'}"],
                       check=True, capture_output=True)  # fmt: skip
        env = {**os.environ, "MLFLOW_TRACKING_URI": new_store(folder)}
        seconds = timed([*inside, sys.executable, "-m", "pipeline", *sweep, *RAY], folder, env)
        return "Ray (2-CPU head, existing cluster)", "SQLite, shared disk", seconds
    finally:
        subprocess.run([*inside, str(ray), "stop", "--force"], capture_output=True)
        namespace.kill()
        namespace.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch, 200 images, 2 repeats")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per variant (3: the 12-job sweep)")
    parser.add_argument("--repeats", type=int, help="runs per store (default 5, --quick 2)")
    parser.add_argument("--only", choices=("sweeps", "tracking", "cluster"), help="run one part")
    args = parser.parse_args()
    sweep_shrink = ["trainer.epochs=1", "dataset.max_samples=200"] if args.quick else []
    run_shrink = ["trainer.epochs=1", "dataset.max_samples=200"] if args.quick else ["trainer.epochs=2"]
    repeats = args.repeats or (2 if args.quick else 5)
    print(f"{os.cpu_count()} CPU cores; python {sys.version.split()[0]}")
    if args.only == "cluster":
        scale_out(sweep_shrink, args.seeds)
        return
    if args.only != "tracking":
        sweep_throughput(sweep_shrink, args.seeds)
    if args.only != "sweeps":
        tracking_cost(run_shrink, repeats)


if __name__ == "__main__":
    main()
