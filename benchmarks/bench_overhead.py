"""What convlab adds on top of a bare Keras run: ``python -m pipeline`` against plain Keras.

Both train the course's digit CNN (5 epochs, batch 128) on the same bundled digits. The plain
script logs nothing; convlab composes the config, tracks to a SQLite MLflow store, logs params,
per-epoch metrics, three figures, the dataset and the model. Each is run REPEATS times,
interleaved, as whole processes (start-up and imports included, as a user pays them); the
store is created once before timing (a one-off cost, reported separately).

    python benchmarks/bench_overhead.py [--repeats 5]
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

HERE = Path(__file__).resolve().parent


def timed(command: list[str], cwd: str, env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db"}
        convlab = [sys.executable, "-m", "pipeline"]
        plain = [sys.executable, str(HERE / "plain_keras.py")]
        first = timed(convlab, folder, env)  # creates the store: a one-off cost
        times: dict[str, list[float]] = {"plain Keras": [], "convlab": []}
        for _ in range(args.repeats):
            times["plain Keras"].append(timed(plain, folder, env))
            times["convlab"].append(timed(convlab, folder, env))
    base = statistics.median(times["plain Keras"])
    print(f"{'':<14}{'median s':>10}{'min s':>8}{'max s':>8}{'ratio':>8}   (n={args.repeats}, 5 epochs)")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<14}{median:>10.2f}{min(values):>8.2f}{max(values):>8.2f}{median / base:>8.2f}")
    print(f"overhead per run: {statistics.median(times['convlab']) - base:+.2f} s "
          f"(first run, creating the MLflow store: {first:.2f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
