"""What convlab adds on top of a bare Keras run: ``python -m pipeline`` against plain Keras.

Both train the course's digit CNN (5 epochs, batch 128) on the same bundled digits. The plain
script logs nothing; convlab composes the config, tracks to a SQLite MLflow store, logs params,
per-epoch metrics, system metrics, the figures, the evaluation, the dataset and the model. Each
is run REPEATS times as whole processes (start-up, imports and exit included, as a user pays
them), interleaved, the order rotating each repeat; the store is created once before timing (a
one-off cost, reported separately). ``--tree DIR`` also times convlab from another checkout
(``PYTHONPATH=DIR``, e.g. the code before a change), in the same interleaved rounds.

    python benchmarks/bench_overhead.py [--repeats 5] [--tree DIR]
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


def timed(command: list[str], env: dict, cwd: str) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def sides(folder: str, tree: Path | None) -> dict[str, tuple[list[str], dict]]:
    """Each timed command and its environment, by name."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db"}
    convlab = [sys.executable, "-m", "pipeline"]
    found = {
        "plain Keras": ([sys.executable, str(HERE / "plain_keras.py")], env),
        "convlab": (convlab, {**env, "PYTHONPATH": str(HERE.parent)}),
    }
    if tree is not None:
        found[f"convlab @{tree.name}"] = (convlab, {**env, "PYTHONPATH": str(tree.resolve())})
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tree", type=Path, help="also time convlab from this checkout")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        commands = sides(folder, args.tree)
        first = timed(*commands["convlab"], folder)  # creates the store: a one-off cost
        times: dict[str, list[float]] = {name: [] for name in commands}
        names = list(commands)
        for repeat in range(args.repeats):
            for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
                times[name].append(timed(*commands[name], folder))
                print(f"  [{repeat + 1}/{args.repeats}] {name}: {times[name][-1]:.2f} s", flush=True)
    base = statistics.median(times["plain Keras"])
    print(f"\nwhole processes, {args.repeats} interleaved rounds, {os.cpu_count()} CPUs, "
          f"load average at the end {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'':<22}{'median s':>10}{'min s':>8}{'max s':>8}{'ratio':>8}{'pair ratio':>12}")
    for name, values in times.items():
        median = statistics.median(values)
        pairs = statistics.median(v / p for v, p in zip(values, times["plain Keras"]))
        print(f"{name:<22}{median:>10.2f}{min(values):>8.2f}{max(values):>8.2f}{median / base:>8.2f}"
              f"{pairs:>12.2f}")  # fmt: skip
    for name in names[1:]:
        print(f"overhead of {name}: {statistics.median(times[name]) - base:+.2f} s a run")
    print(f"(first run, creating the MLflow store: {first:.2f} s)")


if __name__ == "__main__":
    main()
