"""Two-stage fine-tuning against the frozen backbone, and tune_folder's winner against the default
scratch CNN, on real photos (bench_data.py's scikit-image folder: 2 classes), each a real sweep.

1. ``fine_tune``: ``experiment=fine_tune`` over SEEDS seeds on PHOTOS photos (80% train, 20% val):
   VGG16 at 64x64 (random weights: no ImageNet download here), softmax head, 5 epochs frozen
   (features computed once) against the same plus 5 epochs with the last 4 layers (block 5)
   unfrozen at a tenth of the rate. Prints both intervals and the difference's.
2. ``tune_folder``: ``experiment=tune_folder`` (TRIALS trials, the top 2 confirmed over SEEDS
   seeds) on the same photos plus a test/ folder, against the default scratch CNN
   (``dataset=image_folder dataset.image_size=[64,64]``) over the same seeds: test_accuracy.

    python benchmarks/bench_fine_tune.py --only fine_tune [--seeds 5] [--backbone vgg16] [--data DIR]
    python benchmarks/bench_fine_tune.py --only tune_folder [--seeds 5] [--trials 8] [--epochs 10]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bench_data beside this script; convlab itself is installed

import bench_data  # noqa: E402

from pipeline.compare import load  # noqa: E402
from pipeline.tracking import contract  # noqa: E402

PHOTOS = 300
# Random weights (no ImageNet download here). MobileNetV2's BatchNorm, frozen with its initial
# statistics, leaves random features at chance; VGG16 has no BatchNorm: its random features carry signal.
BACKBONES = {
    "vgg16": ["backbone=vgg16", "backbone.weights=null", "backbone.input_size=[64,64]", "fine_tune.layers=4"],
    "mobilenet_v2": ["backbone.alpha=0.35", "backbone.weights=null", "backbone.input_size=[96,96]"],
}


def photos(folder: Path, with_test: bool) -> Path:
    """``folder/photos/{train,val}`` (and ``test/``: other crops of the same scenes, seed 1)."""
    root = folder / "photos"
    if not (root / "train").exists():
        bench_data.write_photo_folder(root, PHOTOS)
    if with_test and not (root / "test").exists():
        spare = bench_data.write_photo_folder(folder / "spare", PHOTOS // 3, val_fraction=0.0, seed=1)
        shutil.move(spare / "train", root / "test")
    return root


def sweep(args: list[str], uri: str, cwd: Path) -> float:
    """Runs ``python -m pipeline -m ARGS``; returns its wall time in seconds."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "pipeline", "-m", *args, f"tracking.uri={uri}"]
    print("$", " ".join(command[1:]), flush=True)
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return time.perf_counter() - started


def interval(row, metric: str) -> str:
    return f"{row[f'{metric}_mean']:.3f} [{row[f'{metric}_ci_low']:.3f}, {row[f'{metric}_ci_high']:.3f}]"


def report(experiment: str, uri: str, metric: str, baseline: str | None = None) -> None:
    summary = load.summarize(experiment, metric=metric, baseline=baseline, tracking_uri=uri)
    for _, row in summary.iterrows():
        versus = "" if row["variant"] == summary.attrs["baseline"] else (
            f"  difference {row['difference']:+.3f} [{row['difference_ci_low']:+.3f}, "
            f"{row['difference_ci_high']:+.3f}] p={row['p_adjusted']:.3g}: {row['verdict']}"
        )  # fmt: skip
        print(f"{row['variant']:<40} n={row['n_seeds']} {metric} {interval(row, metric)}{versus}")


def fine_tune(root: Path, seeds: int, backbone: str, uri: str, cwd: Path) -> None:
    seconds = sweep(
        [
            "experiment=fine_tune",
            f"dataset.path={root}",
            *BACKBONES[backbone],
            "seed=" + ",".join(map(str, range(seeds))),
        ],
        uri,
        cwd,
    )
    print(f"fine_tune sweep: {seconds:.0f} s")
    report("fine_tune", uri, contract.VAL_ACCURACY)


def tune_folder(root: Path, seeds: int, trials: int, epochs: int, uri: str, cwd: Path) -> None:
    common = [f"dataset.path={root}", f"trainer.epochs={epochs}"]
    search = [f"hydra.sweeper.n_trials={trials}", "hydra.sweeper.confirm.top_k=2"]
    searched = sweep(
        ["experiment=tune_folder", *common, *search, f"hydra.sweeper.confirm.seeds={seeds}"], uri, cwd
    )
    default = [
        "dataset=image_folder", "dataset.image_size=[64,64]", *common,
        f"seed={','.join(map(str, range(seeds)))}",
        "tracking.experiment_name=tune_folder_default", "tracking.log_model=false",
    ]  # fmt: skip
    default_seconds = sweep(default, uri, cwd)
    print(f"tune_folder: search + confirm {searched:.0f} s, default {default_seconds:.0f} s")
    report("tune_folder", uri, contract.TEST_ACCURACY)
    report("tune_folder_default", uri, contract.TEST_ACCURACY)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=("fine_tune", "tune_folder"), required=True)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--backbone", choices=list(BACKBONES), default="vgg16", help="fine_tune's backbone")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data", type=Path, default=None, help="a folder to keep the photos in")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.data or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{folder / 'mlflow.db'}"  # with --data: kept, to read the runs afterwards
        root = photos(folder, with_test=args.only == "tune_folder")
        if args.only == "fine_tune":
            fine_tune(root, args.seeds, args.backbone, uri, Path(scratch))
        else:
            tune_folder(root, args.seeds, args.trials, args.epochs, uri, Path(scratch))


if __name__ == "__main__":
    main()
