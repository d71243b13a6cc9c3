"""What the per-run evaluation costs, and whether class_weight=balanced helps an imbalanced folder.

(a) ``mlflow.models.evaluate(model_type="classifier")`` against scikit-learn's metrics on the same
    2,000 static predictions of 10 classes (the choice ``training/evaluate.py`` made).
(b) The evaluation's added wall time (``evaluation_seconds``: per-class metrics, table, ROC/PR,
    the mistakes figure with Grad-CAM, the speed and memory measures), against the run's own
    ``run_seconds``, on: the default run (``python -m pipeline``), a folder of PHOTOS photos
    (bench_data's, MobileNetV2 alpha 0.35 at 96x96, random weights), a 10-class folder of
    10,000 28x28 digit PNGs (the course CNN with max pooling, 2 epochs). The default run also
    runs with ``trainer.evaluate=false`` beside it.
(c) An imbalanced 10-class digit folder (class 0 at 10% of the others): val_macro_f1 with
    ``trainer.class_weight=balanced`` against without, paired over SEEDS seeds.

    python benchmarks/bench_evaluation.py [--part mlflow|cost|imbalance|all] [--seeds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_data beside this script
from bench_data import write_digit_csv, write_photo_folder  # noqa: E402

from pipeline import run  # noqa: E402
from pipeline.compare import stats  # noqa: E402
from pipeline.tracking import contract  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
PHOTOS = 300


def mlflow_against_sklearn(folder: Path) -> None:
    import mlflow
    import pandas as pd
    from sklearn import metrics

    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 2000)
    logits = rng.normal(size=(2000, 10))
    logits[np.arange(2000), y] += 2
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    predicted = probabilities.argmax(axis=1)
    mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
    with mlflow.start_run():
        frame = pd.DataFrame({"label": y, "prediction": predicted})
        started = time.perf_counter()
        mlflow.models.evaluate(data=frame, targets="label", predictions="prediction", model_type="classifier")
        took = time.perf_counter() - started
    started = time.perf_counter()
    metrics.precision_recall_fscore_support(y, predicted, zero_division=0)
    metrics.f1_score(y, predicted, average="macro")
    metrics.top_k_accuracy_score(y, probabilities, k=3)
    for c in range(10):
        metrics.roc_curve(y == c, probabilities[:, c])
        metrics.precision_recall_curve(y == c, probabilities[:, c])
    print(f"(a) mlflow.models.evaluate {took:.2f} s, scikit-learn {time.perf_counter() - started:.3f} s")


def digit_folder(root: Path, per_class: int, minority: int | None = None, size: int = 28) -> Path:
    """``root/<digit>/*.png`` from bench_data's digit CSV generator; class 0 with ``minority`` images."""
    from PIL import Image

    rows = per_class * 12
    table = np.loadtxt(write_digit_csv(root.with_suffix(".csv"), rows), delimiter=",", skiprows=1)
    counts: dict[int, int] = {}
    for label, *pixels in table:
        label = int(label)
        wanted = minority if (label == 0 and minority is not None) else per_class
        if counts.get(label, 0) >= wanted:
            continue
        counts[label] = counts.get(label, 0) + 1
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        image = np.asarray(pixels, dtype=np.uint8).reshape(28, 28)
        Image.fromarray(image).resize((size, size)).save(folder / f"{counts[label]:05d}.png")
    return root


def _cost(name: str, overrides: list[str], uri: str, twin: bool = False) -> None:
    import mlflow

    client, common = mlflow.MlflowClient(uri), [f"tracking.uri={uri}", "tracking.log_model=false"]
    on = client.get_run(run([*overrides, *common]).run_id).data.metrics
    added = on[contract.EVALUATION_SECONDS]
    line = (
        f"(b) {name}: evaluation {added:.2f} s of a {on[contract.RUN_SECONDS]:.1f} s run "
        f"({added / on[contract.RUN_SECONDS]:.1%})"
    )
    if twin:
        off = client.get_run(run([*overrides, *common, "trainer.evaluate=false"]).run_id).data.metrics
        line += f"; the same run with trainer.evaluate=false: {off[contract.RUN_SECONDS]:.1f} s"
    print(line, flush=True)


def cost(folder: Path) -> None:
    uri = f"sqlite:///{folder}/mlflow.db"
    _cost("default run (digits, 5 epochs)", [], uri, twin=True)
    photos = write_photo_folder(folder / "photos", PHOTOS)
    mobilenet = [
        "backbone=mobilenet_v2",
        "backbone.alpha=0.35",
        "backbone.weights=null",
        "backbone.input_size=[96,96]",
    ]
    _cost(
        f"{PHOTOS} photos (MobileNetV2 0.35, 96x96)",
        ["dataset=image_folder", f"dataset.path={photos}", *mobilenet, "trainer.epochs=3"],
        uri,
    )
    digits = digit_folder(folder / "digits10k", 1000)
    _cost(
        "10-class folder, 10,000 PNGs",
        [
            "dataset=image_folder",
            f"dataset.path={digits}",
            "dataset.image_size=[28,28]",
            "dataset.color_mode=grayscale",
            "downsample=maxpool",
            "trainer.epochs=2",
        ],
        uri,
    )


def imbalance(folder: Path, seeds: int) -> None:
    root = digit_folder(folder / "imbalanced", 200, minority=20)
    uri = f"sqlite:///{folder}/mlflow.db"
    common = [
        "dataset=image_folder",
        f"dataset.path={root}",
        "dataset.image_size=[28,28]",
        "dataset.color_mode=grayscale",
        "trainer.epochs=5",
        "downsample=maxpool",
        f"tracking.uri={uri}",
        "tracking.log_model=false",
    ]
    scores = {"none": [], "balanced": []}
    recall = {"none": [], "balanced": []}
    for seed in range(seeds):
        for weight, key in (("null", "none"), ("balanced", "balanced")):
            result = run([*common, f"seed={seed}", f"trainer.class_weight={weight}"])
            scores[key].append(result.metrics[contract.VAL_MACRO_F1])
            recall[key].append(result.metrics["val_recall/0"])
    for name, values in (("val_macro_f1", scores), ("val_recall/0 (the minority)", recall)):
        test = stats.paired(values["balanced"], values["none"])
        print(
            f"(c) {name}: balanced {statistics.mean(values['balanced']):.4f}, none "
            f"{statistics.mean(values['none']):.4f}; difference {test.difference:+.4f} "
            f"[{test.ci_low:+.4f}, {test.ci_high:+.4f}], paired t p={test.p_value:.3f} ({seeds} seeds)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["mlflow", "cost", "imbalance", "all"], default="all")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.part in ("mlflow", "all"):
            mlflow_against_sklearn(Path(folder))
        if args.part in ("cost", "all"):
            cost(Path(folder))
        if args.part in ("imbalance", "all"):
            imbalance(Path(folder), args.seeds)


if __name__ == "__main__":
    main()
