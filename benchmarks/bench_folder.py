"""Seeds 0-2 on a large JPEG folder: convlab's sweep in one process against plain Keras, one process per seed.

The folder (written once into ``--data``, then reused): TRAIN training and TEST test JPEGs in
``train/<class>/`` and ``test/<class>/``, ten classes, each cut from one of scikit-image's photos
(astronaut, chelsea, coffee, rocket, camera, brick, grass, gravel, immunohistochemistry,
hubble_deep_field): a random crop of 15-50% of its side, 64-128 px, flipped, re-lit, with
sensor grain, saved at JPEG quality 90.

The work, the course CNN (Conv2D(20, 3x3) twice, Dense(128), softmax; adam, batch 128), 3 epochs
at 32x32 RGB, 20% of train/ held out for validation, the test set scored at the end, seeds 0-2:

(a) plain Keras, one process per seed: ``image_dataset_from_directory`` for train/ (validation
    split, seed 0) and test/, ``fit``, ``evaluate`` (``--keras SEED`` runs one);
(b) ``python -m pipeline -m dataset=image_folder dataset.path=DIR dataset.image_size=[32,32]
    trainer.epochs=3 seed=0,1,2``: one process, the basic launcher, an MLflow run per job.

Printed: wall seconds from start to exit (for Keras the three processes' sum), the ratio, the
mean validation and test accuracy, and peak RSS (``wait4``; for Keras the largest of the three).
The two sides alternate which goes first over ``--repeats``.

    python benchmarks/bench_folder.py --data /work/bench_data/folder            # 50,000 + 10,000
    python benchmarks/bench_folder.py --data /tmp/small --train 2000 --test 400 # quick

Measured 2026-12-08 (00:11-00:30 UTC), 2 shared cores under load average 8-15 (other jobs on
the machine), one repeat, ``python benchmarks/bench_folder.py --data /work/bench_data/folder``:

| side | wall s | val acc | test acc | peak RSS MiB |
|---|---|---|---|---|
| plain Keras, 3 processes | 1199 | 0.946 | 0.947 | 1123 |
| convlab sweep, 1 process | 1105 | 0.938 | 0.937 | 2216 |

0.92x the wall time (target 0.8x: not met), 1.97x the peak RSS. The sweep decoded 60,000 files
once (19 s train, 9 s val, 4 s test in job 1; jobs 2 and 3 took them from memory): about 32 s of
its 1105 s. The rest is training, evaluation and logging, each job about 6 minutes on this load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.tracking import contract

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "brick", "grass", "gravel")
PHOTOS += ("immunohistochemistry", "hubble_deep_field")
IMAGE_SIZE, EPOCHS, SEEDS, BATCH = 32, 3, (0, 1, 2), 128


def _crop(source: np.ndarray, rng: np.random.Generator):
    """A random crop of ``source``, 64-128 px, flipped, re-lit and grainy, as a PIL image."""
    from PIL import Image

    height, width = source.shape[:2]
    side = int(min(height, width) * rng.uniform(0.15, 0.5))
    top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
    crop = source[top : top + side, left : left + side].astype(np.float32)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = crop * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20)
    size = int(rng.integers(64, 129))
    image = Image.fromarray(crop.clip(0, 255).astype(np.uint8)).resize((size, size), Image.BILINEAR)
    grain = rng.normal(0, 4, (size, size, 1))
    return Image.fromarray((np.asarray(image, dtype=np.float32) + grain).clip(0, 255).astype(np.uint8))


def write_folder(root: Path, train: int, test: int, seed: int = 0) -> Path:
    """``root/{train,test}/<photo>/*.jpg``, written once: an existing ``root/done`` is reused."""
    import skimage.color
    import skimage.data

    if (root / "done").exists():
        return root
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for name in PHOTOS:
        photo = getattr(skimage.data, name)()
        photo = skimage.color.gray2rgb(photo) if photo.ndim == 2 else photo[..., :3]
        for split, count in (("train", train), ("test", test)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count // len(PHOTOS)):
                _crop(photo, rng).save(folder / f"{i:05d}.jpg", quality=90)
    (root / "done").write_text(f"{train} {test}\n")
    print(f"wrote {train} + {test} JPEGs into {root} in {time.perf_counter() - started:.0f} s", flush=True)
    return root


def keras_run(root: Path, seed: int) -> None:
    """One seed of the course CNN in plain Keras on ``image_dataset_from_directory``; prints accuracies."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(seed)
    size = (IMAGE_SIZE, IMAGE_SIZE)
    train, val = keras.utils.image_dataset_from_directory(
        root / "train", validation_split=0.2, subset="both", seed=0, image_size=size, batch_size=BATCH,
        verbose=False,
    )  # fmt: skip
    test = keras.utils.image_dataset_from_directory(
        root / "test", image_size=size, batch_size=BATCH, shuffle=False, verbose=False
    )
    model = keras.Sequential([
        keras.Input((*size, 3)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(20, kernel_size=(3, 3), activation="relu"),
        keras.layers.Conv2D(20, kernel_size=(3, 3), activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(len(PHOTOS), activation="softmax"),
    ])  # fmt: skip
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    history = model.fit(train, validation_data=val, epochs=EPOCHS, verbose=0)
    _, test_accuracy = model.evaluate(test, verbose=0)
    print(json.dumps({"val_accuracy": history.history["val_accuracy"][-1], "test_accuracy": test_accuracy}))


def measure(command: list[str], cwd: str) -> dict:
    """Runs ``command`` to its end: seconds, peak RSS (MiB, from ``wait4``) and its stdout."""
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        stdout.seek(0), stderr.seek(0)
        if os.waitstatus_to_exitcode(status):
            raise SystemExit(f"failed: {' '.join(command)}\n{stderr.read().decode()[-3000:]}")
        return {"seconds": seconds, "rss_mib": usage.ru_maxrss / 1024, "stdout": stdout.read().decode()}


def keras_side(root: Path, cwd: str) -> dict:
    runs = [
        measure([sys.executable, __file__, "--keras", str(seed), "--data", str(root)], cwd) for seed in SEEDS
    ]
    scores = [json.loads(run["stdout"].strip().splitlines()[-1]) for run in runs]
    return {
        "seconds": sum(run["seconds"] for run in runs),
        "rss_mib": max(run["rss_mib"] for run in runs),
        **{key: statistics.mean(score[key] for score in scores) for key in ("val_accuracy", "test_accuracy")},
    }


def convlab_side(root: Path, cwd: str, number: int, cache: str) -> dict:
    import mlflow

    uri, experiment = f"sqlite:///{cwd}/mlflow.db", f"folder-{number}"
    command = [
        sys.executable, "-m", "pipeline", "-m", "dataset=image_folder", f"dataset.path={root}",
        f"dataset.image_size=[{IMAGE_SIZE},{IMAGE_SIZE}]", f"dataset.cache={cache}",
        f"trainer.epochs={EPOCHS}", f"trainer.batch_size={BATCH}", f"seed={','.join(map(str, SEEDS))}",
        f"tracking.uri={uri}", f"tracking.experiment_name={experiment}",
    ]  # fmt: skip
    sample = measure(command, cwd)
    for line in sample["stdout"].splitlines():  # where the decoding seconds went
        if "image files in" in line or "files from memory" in line:
            print("  convlab:", line.split(" - ")[-1], flush=True)
    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id])
    jobs = [r for r in runs if r.data.tags.get(contract.ROLE) == contract.ROLE_JOB]
    assert len(jobs) == len(SEEDS), f"{len(jobs)} jobs"
    return {
        "seconds": sample["seconds"],
        "rss_mib": sample["rss_mib"],
        **{
            key: statistics.mean(r.data.metrics[key] for r in jobs)
            for key in ("val_accuracy", "test_accuracy")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/bench_data/folder"))
    parser.add_argument("--train", type=int, default=50_000)
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--cache", default="memory", help="convlab's dataset.cache (memory or disk)")
    parser.add_argument("--keras", type=int, default=None, help=argparse.SUPPRESS)  # one Keras seed
    args = parser.parse_args()
    if args.keras is not None:
        return keras_run(args.data, args.keras)
    root = write_folder(args.data, args.train, args.test)
    samples: dict[str, list[dict]] = {"keras": [], "convlab": []}
    with tempfile.TemporaryDirectory() as cwd:
        for repeat in range(args.repeats):
            order = ("keras", "convlab") if repeat % 2 == 0 else ("convlab", "keras")
            for side in order:
                sample = (
                    keras_side(root, cwd) if side == "keras" else convlab_side(root, cwd, repeat, args.cache)
                )
                samples[side].append(sample)
                print(f"[{repeat + 1}/{args.repeats}] {side}: {json.dumps(sample)}", flush=True)
    report(samples, root)


def report(samples: dict[str, list[dict]], root: Path) -> None:
    def median(side, key):
        return statistics.median(s[key] for s in samples[side])

    ratios = [c["seconds"] / k["seconds"] for k, c in zip(samples["keras"], samples["convlab"], strict=True)]
    print(f"\n{root}: seeds {SEEDS}, {EPOCHS} epochs, {IMAGE_SIZE}x{IMAGE_SIZE}")
    print("| side | wall s | val acc | test acc | peak RSS MiB |\n|---|---|---|---|---|")
    for side in samples:
        cells = [f"{median(side, key):.3f}" for key in ("val_accuracy", "test_accuracy")]
        seconds, rss = median(side, "seconds"), median(side, "rss_mib")
        print(f"| {side} | {seconds:.1f} | {' | '.join(cells)} | {rss:.0f} |")
    each = ", ".join(f"{ratio:.2f}" for ratio in ratios)
    print(f"ratio convlab/keras: median {statistics.median(ratios):.2f}x ({each})")
    print(f"peak RSS convlab/keras: {median('convlab', 'rss_mib') / median('keras', 'rss_mib'):.2f}x")


if __name__ == "__main__":
    main()
