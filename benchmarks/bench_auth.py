"""What the team server's login costs a run: MLflow's basic-auth with and without its credential cache.

MLflow checks a basic-auth password with scrypt (tens of ms of CPU, by design) on every request
unless its credential cache (``auth_cache_ttl_seconds``) keeps a successful check; convlab's server
turns the cache on (``--auth-cache 60``). Two servers with basic-auth on this machine, each with a
PostgreSQL database of its own, one with ``--auth-cache 0`` and one with the default:

1. requests: ``MlflowClient.log_metric`` calls in a row, per second (no TensorFlow in the way);
2. runs: the same small run (``python -m pipeline``, as a user types it), interleaved, REPEATS
   each: medians and the ratio.

    python benchmarks/bench_auth.py               # the README's numbers (needs root and PostgreSQL)
    python benchmarks/bench_auth.py --repeats 1 --requests 20   # checks it runs end to end
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench_sweeps import team_server, timed

from pipeline.server import basic_auth, postgres

SHRINK = ["trainer.epochs=2", "dataset.max_samples=300", "tracking.log_model=false"]


def requests_per_second(url: str, count: int) -> float:
    import mlflow

    client = mlflow.MlflowClient(url)
    experiment = client.create_experiment(f"bench_auth_{secrets.token_hex(3)}")
    run = client.create_run(experiment).info.run_id
    started = time.perf_counter()
    for step in range(count):
        client.log_metric(run, "loss", 1.0 / (step + 1), step=step)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    reason = postgres.unavailable()
    if reason:
        sys.exit(f"needs PostgreSQL: {reason}")
    password = secrets.token_urlsafe(16)
    login = {"MLFLOW_TRACKING_USERNAME": basic_auth.ADMIN, "MLFLOW_TRACKING_PASSWORD": password}
    os.environ.update(login)
    cached = f"cached (--auth-cache {basic_auth.AUTH_CACHE_SECONDS})"
    caches = {"every request (--auth-cache 0)": 0, cached: None}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        folder = Path(tmp)
        urls = {
            name: stack.enter_context(
                team_server(folder / f"server{i}", auth=True, admin_password=password, auth_cache=seconds)
            )
            for i, (name, seconds) in enumerate(caches.items())
        }
        print(f"1. log_metric calls in a row, {args.requests} per server")
        print(f"{'password checked':<34}{'requests/s':>12}")
        rates = {name: requests_per_second(url, args.requests) for name, url in urls.items()}
        for name, rate in rates.items():
            print(f"{name:<34}{rate:>12.1f}")

        print(f"\n2. one run ({' '.join(SHRINK)}), n={args.repeats} interleaved")
        command = [sys.executable, "-m", "pipeline", *SHRINK, "tracking.experiment_name=bench_auth"]
        times: dict[str, list[float]] = {name: [] for name in urls}
        for url in urls.values():  # a first run each creates the experiment: not timed
            timed(command, folder, {**os.environ, "MLFLOW_TRACKING_URI": url})
        for _ in range(args.repeats):
            for name, url in urls.items():
                times[name].append(timed(command, folder, {**os.environ, "MLFLOW_TRACKING_URI": url}))
    base = statistics.median(times[next(iter(times))])
    print(f"{'password checked':<34}{'median s':>10}{'min s':>8}{'max s':>8}{'ratio':>8}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<34}{median:>10.2f}{min(values):>8.2f}{max(values):>8.2f}{median / base:>8.2f}")


if __name__ == "__main__":
    main()
