"""Long runs: what a checkpoint costs, what a resume costs, what early stopping saves.

Every number comes from whole ``python -m pipeline`` processes and the metrics their runs log:

1. checkpoint cost: ``checkpoint_seconds`` (time spent writing checkpoints) over the training
   time (the sum of ``epoch_seconds``), on the default run (digits, 5 epochs) and on a MobileNet
   alpha 0.25 fine-tuning (last 20 layers) on ~200 photos, each with a checkpoint at every epoch
   (``trainer.checkpoint.every_seconds=0``) and with the default interval (30 s);
2. resume: the fine-tuning killed (SIGKILL) once its checkpoint holds half its epochs, then
   resumed (``trainer.resume=RUN_ID``): both processes' wall time against an uninterrupted run's;
3. early stopping on the photo folder (scratch CNN with max-pooling and flips/shifts at 32x32,
   patience 3, at most 30 epochs): epochs
   trained, and the best epoch's val_accuracy against the last epoch's.

No ImageNet weights can be downloaded here: MobileNet starts from random weights that this
script saves once (``bench_data.write_mobilenet_weights``), which costs the same to checkpoint.

    python benchmarks/bench_longruns.py [--repeats 3] [--data DIR] [--only checkpoint|resume|early]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_data  # noqa: E402  (the benchmarks' photo folder and weights file)

QUIET = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def fine_tuning(paths: dict[str, Path], epochs: int) -> list[str]:
    return [
        "experiment=transfer_learning", "backbone=mobilenet", "backbone.alpha=0.25", "backbone.trainable=20",
        "backbone.input_size=[160,160]", f"backbone.weights={paths['weights']}",
        f"dataset.path={paths['photos']}", f"trainer.epochs={epochs}", "trainer.batch_size=16",
    ]  # fmt: skip


def pipeline(args: list[str], uri: str, cwd: str, name: str) -> tuple[float, dict]:
    """Runs ``python -m pipeline ARGS``; returns its wall time and its run's metrics."""
    import mlflow

    started = time.perf_counter()
    command = [sys.executable, "-m", "pipeline", *args, f"tracking.uri={uri}", f"tracking.run_name={name}",
               "tracking.experiment_name=bench_longruns", "tracking.log_model=false"]  # fmt: skip
    done = subprocess.run(command, cwd=cwd, env=QUIET, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"failed: {' '.join(args)}\n{done.stderr[-2000:]}")
    wall = time.perf_counter() - started
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("bench_longruns")
    (run,) = client.search_runs([experiment.experiment_id], f"attributes.run_name = '{name}'")
    return wall, run.data.metrics | {"run_id": run.info.run_id}


def checkpoint_share(uri: str, cwd: str, args: list[str], name: str) -> float:
    """Checkpoint seconds over training seconds, in percent."""
    import mlflow

    _, metrics = pipeline(args, uri, cwd, name)
    epochs = mlflow.MlflowClient(uri).get_metric_history(metrics["run_id"], "epoch_seconds")
    return 100 * metrics["checkpoint_seconds"] / sum(m.value for m in epochs)


def bench_checkpoint(paths, uri: str, cwd: str, repeats: int) -> None:
    cases = {
        "default run (digits, 5 epochs)": [],
        "MobileNet 0.25 fine-tuning, photos, 3 epochs": fine_tuning(paths, 3),
    }
    for case, (label, args) in enumerate(cases.items()):
        for every in ("0", "30"):
            every_args = [*args, f"trainer.checkpoint.every_seconds={every}"]
            shares = [
                checkpoint_share(uri, cwd, every_args, f"ck-{case}-{every}-{i}") for i in range(repeats)
            ]
            print(f"{label}, every_seconds={every}: checkpoint {statistics.median(shares):.2f}% of training "
                  f"(median of {repeats}: {', '.join(f'{s:.2f}' for s in shares)})", flush=True)  # fmt: skip


def bench_resume(paths, uri: str, cwd: str, epochs: int = 8) -> None:
    args = [
        *fine_tuning(paths, epochs),
        "trainer.checkpoint.every_seconds=0",
        f"trainer.checkpoint.dir={cwd}/ck",
    ]
    uninterrupted, _ = pipeline(args, uri, cwd, "uninterrupted")
    started = time.perf_counter()
    command = [sys.executable, "-m", "pipeline", *args, f"tracking.uri={uri}", "tracking.run_name=killed",
               "tracking.experiment_name=bench_longruns", "tracking.log_model=false"]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=cwd, env=QUIET, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    half = f'"epoch": {epochs // 2},'
    while not any(half in p.read_text() for p in Path(cwd, "ck").glob("*/state.json") if p.exists()):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed = time.perf_counter() - started
    run_id = next(Path(cwd, "ck").glob("*/state.json")).parent.name
    resumed, _ = pipeline([*args, f"trainer.resume={run_id}"], uri, cwd, "killed")
    print(f"resume: killed at {epochs // 2}/{epochs} epochs {killed:.1f} s + resumed {resumed:.1f} s = "
          f"{killed + resumed:.1f} s vs uninterrupted {uninterrupted:.1f} s: "
          f"{(killed + resumed) / uninterrupted:.2f}x", flush=True)  # fmt: skip


def bench_early(paths, uri: str, cwd: str) -> None:
    import mlflow

    args = ["dataset=image_folder", f"dataset.path={paths['photos']}", "dataset.image_size=[32,32]",
            "dataset.color_mode=rgb", "downsample=maxpool", "augmentation=flip_shift",
            "trainer.batch_size=16", "trainer.epochs=30", "trainer.early_stopping.patience=3"]  # fmt: skip
    wall, metrics = pipeline(args, uri, cwd, "early")
    history = mlflow.MlflowClient(uri).get_metric_history(metrics["run_id"], "val_accuracy")
    last = max(history, key=lambda m: m.step)
    best, best_epoch = metrics["best_val_accuracy"], metrics["best_epoch"]
    print(f"early stopping (patience 3, at most 30 epochs): {last.step} epochs trained ({30 - last.step} "
          f"saved, {wall:.0f} s); best epoch {best_epoch:.0f}: val_accuracy {best:.4f} (kept) vs last "
          f"epoch's {last.value:.4f}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, help="bench_data's folder (kept, reused)")
    parser.add_argument("--only", choices=("checkpoint", "resume", "early"))
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-longruns-") as cwd:
        paths = bench_data.prepare(options.data or Path(cwd) / "data", rows=2000, photos=200)
        uri = f"sqlite:///{cwd}/mlflow.db"
        if options.only in (None, "checkpoint"):
            bench_checkpoint(paths, uri, cwd, options.repeats)
        if options.only in (None, "resume"):
            bench_resume(paths, uri, cwd)
        if options.only in (None, "early"):
            bench_early(paths, uri, cwd)


if __name__ == "__main__":
    main()
