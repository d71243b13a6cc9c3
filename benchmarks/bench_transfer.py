"""Transfer-learning throughput, in training images per second, side by side.

(a) Frozen backbone, no augmentation: convlab's head trained on features computed once
    (``trainer.cache_features=true``) against the whole model run every epoch (``=false``).
    Both are real ``pipeline.run`` calls; the rate is the ``images_per_second`` convlab logs
    per epoch (training time only), the one-off feature extraction is shown beside it.
(b) Frozen backbone with the course's augmentation (flips, 10% shifts): convlab's ``tf.data``
    pipeline (files decoded once in parallel into a cache, batched ``Random*`` layers mapped in
    parallel, prefetch) against the course's ``ImageDataGenerator.flow_from_directory`` + ``fit``.
    Same model object design, same data, timed by the same callback.

Same generated image folder (IMAGES JPEGs of 160x160, 2 classes), same model (MobileNetV2 alpha
0.35, random weights, 96x96 input, softmax head, SGD, batch 32). Steady-state rates are medians
over epochs 2..N of every repeat (the first epoch traces the graph); repeats are interleaved.

    python benchmarks/bench_transfer.py [--repeats 3] [--epochs 5]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline import run
from pipeline.data import sources
from pipeline.data.augment import build_augmentation
from pipeline.model import backbones, features, scratch

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

IMAGES = 200  # training images, 100 per class
SIZE = 96
BATCH = 32
BACKBONE = [
    "backbone=mobilenet_v2",
    "backbone.alpha=0.35",
    "backbone.weights=null",
    f"backbone.input_size=[{SIZE},{SIZE}]",
]


def write_folder(root: Path) -> Path:
    """root/train/<class>/*.jpg (IMAGES in all) and a small root/val/."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", IMAGES // 2), ("val", 10)):
        for label, name in enumerate(("rural", "urban")):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 120, (160, 160, 3)) + 100 * label
                Image.fromarray(pixels.clip(0, 255).astype("uint8")).save(folder / f"{i}.jpg", quality=90)
    return root


def cached_vs_whole(folder: Path, uri: str, cache: bool, epochs: int) -> tuple[list[float], float, float]:
    """One real run: (images/s of epochs 2..N, feature seconds, run seconds)."""
    import mlflow

    features._memory.clear()  # every run pays for its own features, as a fresh process would
    overrides = [
        "experiment=transfer_learning",
        *BACKBONE,
        f"dataset.path={folder}",
        f"trainer.epochs={epochs}",
    ]
    overrides += [f"trainer.batch_size={BATCH}", f"trainer.cache_features={str(cache).lower()}"]
    overrides += [f"tracking.uri={uri}", "tracking.log_model=false"]
    result = run(overrides)
    client = mlflow.MlflowClient(uri)
    rates = sorted(client.get_metric_history(result.run_id, "images_per_second"), key=lambda m: m.step)
    metrics = client.get_run(result.run_id).data.metrics
    return [m.value for m in rates[1:]], metrics.get("feature_seconds", 0.0), metrics["run_seconds"]


class EpochTimer:
    """Seconds per epoch, training only (no validation is passed to fit)."""

    def __new__(cls):
        import keras

        class Timer(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.seconds = []

            def on_epoch_begin(self, epoch, logs=None):
                self.started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self.started)

        return Timer()


def frozen_model():
    import keras

    backbone = functools.partial(
        backbones.pretrained, name="mobilenet_v2", weights=None, trainable=0, alpha=0.35, dropout_rate=0.0
    )
    model = scratch.build_model((SIZE, SIZE, 3), 2, backbone, head_units=None, head_activation=None)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return model


def augmented_tf_data(folder: Path, epochs: int, seed: int) -> tuple[list[float], float]:
    """convlab's pipeline: (images/s of epochs 2..N, seconds for everything incl. decoding)."""
    import keras

    keras.utils.set_random_seed(seed)
    started = time.perf_counter()
    images = sources.load("image_folder", (SIZE, SIZE), 0.2, 0, path=str(folder), color_mode="rgb")
    augment = build_augmentation(True, 0.1, 0.1, 0.0, seed)
    train, _ = sources.to_tf_datasets(images, BATCH, seed, augment)
    model, timer = frozen_model(), EpochTimer()
    model.fit(train, epochs=epochs, callbacks=[timer], shuffle=False, verbose=0)  # tf.data shuffles, seeded
    return [len(images.y_train) / s for s in timer.seconds[1:]], time.perf_counter() - started


def augmented_image_data_generator(folder: Path, epochs: int, seed: int) -> tuple[list[float], float]:
    """The course's way: (images/s of epochs 2..N, seconds for everything)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    started = time.perf_counter()
    generator = tf.keras.preprocessing.image.ImageDataGenerator(
        horizontal_flip=True, width_shift_range=0.1, height_shift_range=0.1
    )  # no preprocessing_function: the model preprocesses raw pixels itself, as in (a)
    train = generator.flow_from_directory(
        str(folder / "train"), target_size=(SIZE, SIZE), batch_size=BATCH, class_mode="sparse", seed=seed
    )
    model, timer = frozen_model(), EpochTimer()
    model.fit(train, epochs=epochs, callbacks=[timer], verbose=0)
    return [train.n / s for s in timer.seconds[1:]], time.perf_counter() - started


def row(name: str, rates: list[float], base: float, extra: str) -> str:
    median = statistics.median(rates)
    return f"  {name:<52}{median:>10.0f}{min(rates):>8.0f}{max(rates):>8.0f}{median / base:>8.2f}x   {extra}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    import keras

    keras.config.disable_interactive_logging()
    header = f"  {'':<52}{'img/s':>10}{'min':>8}{'max':>8}{'ratio':>9}"
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_folder(Path(tmp) / "images")
        uri = f"sqlite:///{tmp}/mlflow.db"
        a = {True: ([], [], []), False: ([], [], [])}
        b = {"tf.data": ([], []), "ImageDataGenerator": ([], [])}
        for repeat in range(args.repeats):
            for cache in (False, True):
                rates, feature_s, run_s = cached_vs_whole(folder, uri, cache, args.epochs)
                a[cache][0].extend(rates), a[cache][1].append(feature_s), a[cache][2].append(run_s)
            for name, fn in (
                ("ImageDataGenerator", augmented_image_data_generator),
                ("tf.data", augmented_tf_data),
            ):
                rates, total = fn(folder, args.epochs, repeat)
                b[name][0].extend(rates), b[name][1].append(total)

    print(
        f"{IMAGES} training images 160x160 -> {SIZE}x{SIZE}, MobileNetV2 alpha 0.35 (random weights), "
        f"frozen, batch {BATCH}, {args.epochs} epochs, {args.repeats} repeats, {os.cpu_count()} CPUs"
    )
    print("(a) no augmentation: head epochs, cached features vs the whole model every epoch")
    print(header)
    (whole, _, whole_s), (cached, feature_s, cached_s) = a[False], a[True]
    base = statistics.median(whole)
    print(
        row(
            "whole model every epoch (cache_features=false)",
            whole,
            base,
            f"run {statistics.median(whole_s):.1f} s",
        )
    )
    extra = f"run {statistics.median(cached_s):.1f} s, features once {statistics.median(feature_s):.2f} s"
    print(row("head on cached features (cache_features=true)", cached, base, extra))
    print("(b) augmentation (flip + 10% shifts): the backbone runs every epoch")
    print(header)
    base = statistics.median(b["ImageDataGenerator"][0])
    labels = {
        "ImageDataGenerator": "ImageDataGenerator.flow_from_directory + fit",
        "tf.data": "convlab tf.data (parallel decode/augment, prefetch)",
    }
    for name, label in labels.items():
        rates, totals = b[name]
        print(row(label, rates, base, f"{args.epochs} epochs incl. setup {statistics.median(totals):.1f} s"))


if __name__ == "__main__":
    main()
