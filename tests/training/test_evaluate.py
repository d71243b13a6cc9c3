"""The per-class evaluation: scikit-learn's own numbers, MLflow-legal names, logged once per run."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import write_image_folder
from sklearn import metrics

import pipeline
from pipeline.tracking import contract
from pipeline.training import evaluate


def _predictions(classes: int, images: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, images)
    logits = rng.normal(size=(images, classes))
    logits[np.arange(images), y] += 1.5  # better than chance, far from perfect
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probabilities


@pytest.mark.parametrize("classes", [2, 10])
def test_per_class_numbers_equal_scikit_learns_on_a_fixed_prediction_set(classes):
    y, probabilities = _predictions(classes)
    names = [f"c{i}" for i in range(classes)]
    result = evaluate.evaluate(y, probabilities, names, contract.VAL_PREFIX)
    predicted = probabilities.argmax(axis=1)
    report = metrics.classification_report(
        y, predicted, target_names=names, output_dict=True, zero_division=0
    )
    for name in names:
        for stat, key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert result.metrics[f"val_{stat}/{name}"] == pytest.approx(report[name][key])
        assert result.metrics[f"val_support/{name}"] == report[name]["support"]
    assert result.metrics["val_macro_f1"] == pytest.approx(report["macro avg"]["f1-score"])
    assert result.metrics["val_weighted_f1"] == pytest.approx(report["weighted avg"]["f1-score"])
    assert list(result.table["class"]) == names
    np.testing.assert_allclose(result.table.recall, [report[n]["recall"] for n in names])
    if classes > evaluate.TOP_K_FROM:  # top-k only beyond 5 classes
        for k in (3, 5):
            expected = metrics.top_k_accuracy_score(y, probabilities, k=k)
            assert result.metrics[f"val_top{k}_accuracy"] == pytest.approx(expected)
    else:
        assert not any("top" in key for key in result.metrics)


def test_a_class_never_predicted_or_absent_counts_as_zero_not_an_error():
    y = np.array([0, 0, 1, 1])
    probabilities = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.7, 0.3, 0.0], [0.4, 0.6, 0.0]])
    result = evaluate.evaluate(y, probabilities, ["a", "b", "c"], contract.TEST_PREFIX)
    assert result.metrics["test_recall/b"] == 0.5 and result.metrics["test_support/c"] == 0
    assert result.metrics["test_precision/c"] == 0.0
    evaluate.curves(y, probabilities, ["a", "b", "c"])  # an absent class has no curve, and no error


def test_class_names_become_mlflow_legal_metric_keys():
    from mlflow.utils.validation import _validate_metric_name

    for name in ("cat", "sea lion", "n02085620-Chihuahua", "a/b", "50%", "..", "ünïcödé", "x:y?"):
        key = contract.class_metric(contract.VAL_PREFIX, "recall", name)
        _validate_metric_name(key)  # raises on a key MLflow refuses
        assert key.startswith("val_recall/")


@pytest.mark.slow
def test_a_folder_run_logs_per_class_metrics_tables_curves_and_class_counts(store, tmp_path):

    root = write_image_folder(tmp_path / "images", classes=("cat", "dog", "sea lion"), per_class=8)
    shutil.copytree(root / "val", root / "test")  # a labelled test/
    for extra in sorted((root / "train" / "sea lion").iterdir())[2:]:  # imbalanced: 8, 8, 2
        extra.unlink()
    common = ["dataset=image_folder", f"dataset.path={root}", "dataset.image_size=[16,16]",
              "trainer.epochs=1", "tracking.log_model=false", *store.overrides]  # fmt: skip
    result = pipeline.run([*common, "trainer.class_weight=balanced"])
    run = store.client().get_run(result.run_id)
    logged = run.data.metrics
    for prefix in ("val_", "test_"):
        for name in ("cat", "dog", "sea lion"):
            assert {f"{prefix}{stat}/{name}" for stat in contract.PER_CLASS} <= set(logged)
        assert 0 <= logged[f"{prefix}macro_f1"] <= 1 and f"{prefix}weighted_f1" in logged
        # what mlflow.load_table reads (it takes the active experiment; the client names one)
        table = store.client().load_table(
            run.info.experiment_id, f"evaluation/{prefix}per_class.json", run_ids=[result.run_id]
        )
        assert list(table["class"]) == ["cat", "dog", "sea lion"] and table.support.sum() > 0
    assert logged["class_count/sea lion"] == 2 and run.data.params["trainer.class_weight"] == "balanced"
    figures = {a.path for a in store.client().list_artifacts(result.run_id, "figures")}
    assert {"figures/val_roc_pr.png", "figures/test_roc_pr.png"} <= figures

    unweighted = pipeline.run([*common, "trainer.evaluate=false"])
    assert unweighted.history["loss"] != result.history["loss"]  # balanced: the loss was weighted
    off = store.client().get_run(unweighted.run_id)
    assert not [
        key for key in off.data.metrics if key.startswith(("val_recall/", "val_macro", "test_recall/"))
    ]


def test_balanced_class_weights_are_scikit_learns_and_one_class_is_refused():
    from types import SimpleNamespace

    from sklearn.utils.class_weight import compute_class_weight

    from pipeline.config.errors import DataError
    from pipeline.training import train

    y = np.array([0] * 30 + [1] * 3 + [2] * 12)
    data = SimpleNamespace(y_train=y, class_names=["a", "b", "c"])
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    np.testing.assert_allclose(list(train._class_weight(data).values()), expected)
    with pytest.raises(DataError, match="trainer.class_weight=balanced needs at least 2 classes") as err:
        train._class_weight(SimpleNamespace(y_train=np.zeros(5, int), class_names=["a"]))
    assert "\n" not in str(err.value)
