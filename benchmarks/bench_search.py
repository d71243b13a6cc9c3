"""Search, then confirm, against the full grid: ``experiment=tune_digits`` vs every combination.

1. The grid: every combination of the preset's choices (filters, kernel size, dropout rate,
   strides vs pooling), its learning-rate interval at three points (3e-4, 1e-3, 3e-3), seed 0:
   108 runs of 5 epochs. Its best configuration then runs over seeds 0-4: mean and 95% interval.
2. The study, once per sampler seed: 24 trials with median pruning, the top 3 confirmed over up
   to 5 seeds. Per study: the confirmed winner's mean over its seeds, whether it lies within the
   grid best's interval, the training epochs spent (search + confirm, against the grid's), and
   whether the search's raw best trial was the confirmed winner.

    python benchmarks/bench_search.py                # the README's numbers (about 1.5 h on 2 cores;
                                                     # stopped, the same --folder goes on where it was)
    python benchmarks/bench_search.py --quick        # 2 epochs, 300 images, a smaller grid: end to end
    python benchmarks/bench_search.py --screenshot benchmarks/figures/mlflow_study.png --folder DIR
                                                     # the README's picture: the first study's parent run
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_sweeps import teamserver  # tests/teamserver.py

from pipeline.compare import load, stats
from pipeline.tracking import contract

GRID = {
    "optimizer.learning_rate": "0.0003,0.001,0.003",
    "backbone.filters": "8,16,32",
    "backbone.kernel_size": "[3,3],[5,5]",
    "regularization.rate": "0.0,0.25,0.5",
    "downsample": "stride,maxpool",
}
SEEDS = "0,1,2,3,4"


def pipeline(args: list[str], cwd: Path, uri: str) -> float:
    """Runs ``python -m pipeline -m ARGS`` tracked to ``uri``; returns its wall time (0: already
    done: a sweep of that experiment finished in this store, so a benchmark goes on where it stopped)."""
    experiment = next(a.split("=", 1)[1] for a in args if a.startswith("tracking.experiment_name="))
    if has_sweep(uri, experiment, contract.FINISHED):
        return 0.0
    resume = ["sweep.resume=last"] if has_sweep(uri, experiment) else []  # stopped midway
    started = time.perf_counter()
    command = [sys.executable, "-m", "pipeline", "-m", *args, *resume, f"tracking.uri={uri}"]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def has_sweep(uri: str, experiment: str, status: str | None = None) -> bool:
    """Whether ``experiment`` holds a sweep's parent run (in ``status``, when given)."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    query = f"tags.`{contract.ROLE}` = '{contract.ROLE_SWEEP}'"
    query += f" and attributes.status = '{status}'" if status else ""
    return found is not None and bool(client.search_runs([found.experiment_id], query, max_results=1))


def children(uri: str, experiment: str) -> tuple[object, list]:
    import mlflow

    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], max_results=5000)
    (parent,) = [r for r in runs if r.data.tags.get(contract.ROLE) == contract.ROLE_SWEEP]
    return parent, [r for r in runs if r.data.tags.get(contract.PARENT) == parent.info.run_id]


def grid(base: list[str], grid_values: dict, cwd: Path, uri: str) -> dict:
    """The full grid at seed 0, then its best configuration over seeds 0-4."""
    seconds = pipeline([*base, *(f"{k}={v}" for k, v in grid_values.items()), "seed=0",
                        "tracking.experiment_name=grid"], cwd, uri)  # fmt: skip
    _, runs = children(uri, "grid")
    best = max(runs, key=lambda r: r.data.metrics[contract.VAL_ACCURACY])
    values = {
        k: best.data.tags[contract.factor_tag(k)]
        for k in grid_values
        if contract.factor_tag(k) in best.data.tags
    }
    seconds += pipeline([*base, *(f"{k}={v}" for k, v in values.items()), f"seed={SEEDS}",
                         "tracking.experiment_name=grid_best"], cwd, uri)  # fmt: skip
    _, seeded = children(uri, "grid_best")
    accuracies = [r.data.metrics[contract.VAL_ACCURACY] for r in seeded]
    mean, std, low, high = stats.mean_ci(accuracies, scale=stats.LOGIT)
    epochs = int(runs[0].data.params["trainer.epochs"])
    found = {"config": values, "mean": mean, "std": std, "low": low, "high": high, "seconds": seconds}
    return found | {"epochs": len(runs) * epochs, "confirm_epochs": len(seeded) * epochs}


def study(seed: int, shrink: list[str], cwd: Path, uri: str) -> dict:
    """One ``tune_digits`` study: its confirmed winner and what it cost."""
    experiment = f"tune_digits_{seed}"
    seconds = pipeline(["experiment=tune_digits", f"hydra.sweeper.sampler.seed={seed}", *shrink,
                        f"tracking.experiment_name={experiment}"], cwd, uri)  # fmt: skip
    parent, runs = children(uri, experiment)
    trials = [  # finished, not pruned (a trial killed by a stop, then run again, counts once)
        r for r in runs
        if contract.TRIAL in r.data.tags and contract.PRUNED_AT_EPOCH not in r.data.tags
        and r.info.status == contract.FINISHED
    ]  # fmt: skip
    raw_best = max(trials, key=lambda r: r.data.metrics[contract.VAL_ACCURACY]).data.tags[contract.VARIANT]
    summary = load.summarize(experiment, parent.info.run_id, tracking_uri=uri).set_index("variant")
    winner = parent.data.tags[contract.BASELINE]
    row = summary.loc[winner]
    metric = contract.VAL_ACCURACY
    m = parent.data.metrics
    return {
        "seed": seed, "winner": winner, "raw_best_is_winner": raw_best == winner,
        "mean": row[f"{metric}_mean"], "low": row[f"{metric}_ci_low"], "high": row[f"{metric}_ci_high"],
        "seeds": int(row["n_seeds"]), "search_epochs": m["study.search_epochs"],
        "confirm_epochs": m["study.confirm_epochs"], "saved": m["study.epochs_saved"],
        "pruned": m["study.pruned_trials"], "trials": m["study.trials"], "seconds": seconds,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs, 300 images, a smaller grid, 6 trials")
    parser.add_argument("--studies", type=int, default=3, help="studies, one per sampler seed (%(default)s)")
    parser.add_argument("--no-grid", action="store_true", help="the studies only (the grid another time)")
    parser.add_argument("--folder", help="where the MLflow store goes (default: a temporary folder)")
    parser.add_argument(
        "--screenshot", help="only: a PNG of the first study's parent run in --folder's store"
    )
    args = parser.parse_args()
    if args.screenshot:
        return screenshot(Path(args.folder), Path(args.screenshot))
    shrink = ["trainer.epochs=2", "dataset.max_samples=300"] if args.quick else []
    grid_values = (
        dict(GRID, **{"optimizer.learning_rate": "0.001", "regularization.rate": "0.0,0.5"})
        if args.quick
        else GRID
    )
    trials = ["hydra.sweeper.n_trials=6", "hydra.sweeper.confirm.seeds=3"] if args.quick else []
    folder = Path(args.folder or tempfile.mkdtemp(prefix="bench_search-"))
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    base = ["regularization=dropout", "tracking.log_model=false", *shrink]
    print(f"store: {uri}", flush=True)
    results = [study(0, [*shrink, *trials], folder, uri)]
    print(json.dumps(results[0], default=float), flush=True)
    full = None if args.no_grid else grid(base, grid_values, folder, uri)  # before the other studies:
    if full is not None:  # the comparison the target is about comes first
        print(json.dumps(full, default=float), flush=True)
    for seed in range(1, args.studies):
        results.append(study(seed, [*shrink, *trials], folder, uri))
        print(json.dumps(results[-1], default=float), flush=True)
    if full is not None:
        report(full, results)


def report(full: dict, results: list[dict]) -> None:
    grid_spent = full["epochs"] + full["confirm_epochs"]
    print("\n| | configuration | val_accuracy over seeds, mean [95% CI] | training epochs | wall time |")
    print("| --- | --- | --- | --- | --- |")
    config = ",".join(f"{k}={v}" for k, v in full["config"].items())
    print(f"| grid best (+ 5 seeds) | {config} | {full['mean']:.4f} [{full['low']:.4f}, {full['high']:.4f}] "
          f"| {full['epochs']} + {full['confirm_epochs']} | {full['seconds'] / 60:.1f} min |")  # fmt: skip
    for r in results:
        spent = r["search_epochs"] + r["confirm_epochs"]
        inside = "inside" if r["mean"] >= full["low"] else "below"
        print(f"| study seed {r['seed']} winner ({r['seeds']} seeds) | {r['winner']} | {r['mean']:.4f} "
              f"[{r['low']:.4f}, {r['high']:.4f}], {inside} the grid's interval | {r['search_epochs']:.0f} + "
              f"{r['confirm_epochs']:.0f} = {spent / grid_spent:.2f}x the grid's ({r['pruned']:.0f} of "
              f"{r['trials']:.0f} trials pruned, {r['saved']:.0f} epochs saved) "
              f"| {r['seconds'] / 60:.1f} min |")  # fmt: skip
    curse = sum(not r["raw_best_is_winner"] for r in results)
    print(f"\nThe search's raw best trial was not the confirmed winner in {curse} of {len(results)} studies.")


def screenshot(folder: Path, png: Path) -> None:
    """The parent run of study ``tune_digits_0`` in MLflow's UI, by headless Chromium."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    parent, _ = children(uri, "tune_digits_0")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--port", str(port)]
    command += ["--workers", "1"]
    server = subprocess.Popen(command, cwd=folder, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        teamserver.wait_until_ready(f"http://127.0.0.1:{port}", server, timeout=300)
        url = f"http://127.0.0.1:{port}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}"
        profile = Path(tempfile.mkdtemp(prefix="chromium-"))
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars"]
        flags += ["--disable-quic", "--disable-background-networking", "--disable-component-update"]
        flags += [f"--user-data-dir={profile}", "--virtual-time-budget=20000", "--window-size=1400,1100"]
        png.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["chromium", *flags, f"--screenshot={png.absolute()}", url], check=True, timeout=600,
                       capture_output=True)  # fmt: skip
        shutil.rmtree(profile, ignore_errors=True)
        print(f"{png}: {url}")
    finally:
        teamserver.stop(server)


if __name__ == "__main__":
    main()
