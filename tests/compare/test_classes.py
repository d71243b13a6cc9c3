"""The per-class comparison (recall per class against the baseline, as pipeline.compare would say
it) and the speed comparison (ratios to the baseline on the log scale), on the same runs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, write_child_run, write_sweep_run

from pipeline.compare import classes, load, report, speed, stats
from pipeline.tracking import contract

SEEDS = range(5)
BASELINE_RECALL = {"cat": [0.60, 0.62, 0.58, 0.61, 0.59], "dog": [0.8, 0.7, 0.9, 0.75, 0.85],
                   "sea lion": [0.5, 0.55, 0.45, 0.52, 0.48]}  # fmt: skip
EPOCH_SECONDS = [1.0, 1.1, 0.9, 1.05, 0.95]  # the baseline's; flip_shift's: 1.9x these, give or take 2%
SLOWER = [1.9 * (1 + jitter) for jitter in (0.01, -0.02, 0.0, 0.02, -0.01)]
SHIFT = {"cat": [0.06, 0.07, 0.05, 0.06, 0.065], "dog": [0.1, -0.12, 0.05, -0.02, 0.0],
         "sea lion": [-0.01, 0.02, -0.03, 0.0, -0.02]}  # fmt: skip


@pytest.fixture
def runs(store):
    """A sweep of augmentation=none,flip_shift over 5 seeds, each run with val_recall/<class>."""
    client = store.client()
    experiment = client.create_experiment(store.experiment)
    parent = write_sweep_run(
        client, experiment, ["augmentation"], {"augmentation": "none,flip_shift"}, int(time.time() * 1000)
    )
    for level in ("none", "flip_shift"):
        for seed in SEEDS:
            write_child_run(client, experiment, parent, {"augmentation": level}, seed, 0.8)
    for run in client.search_runs([experiment], f"tags.`{contract.PARENT}` = '{parent}'"):
        seed, shifted = int(run.data.tags[contract.SEED]), "flip_shift" in run.data.tags[contract.VARIANT]
        for name, values in BASELINE_RECALL.items():
            value = values[seed] + (SHIFT[name][seed] if shifted else 0.0)
            client.log_metric(
                run.info.run_id, contract.class_metric(contract.VAL_PREFIX, "recall", name), value
            )
        seconds = EPOCH_SECONDS[seed] * (SLOWER[seed] if shifted else 1.0)
        client.log_metric(run.info.run_id, contract.TRAIN_SECONDS_PER_EPOCH, seconds)
        client.log_metric(run.info.run_id, contract.inference_ms(1), 2.0 * (1.5 if shifted else 1.0))
    return load.load_runs(store.experiment, None, store.uri)


def test_per_class_differences_equal_pipeline_compare_on_each_class(runs):
    frame = classes.per_class_frame(
        runs, ["augmentation=none", "augmentation=flip_shift"], "augmentation=none"
    )
    assert list(frame["class"]) == ["cat", "dog", "sea lion"]
    for row in frame.itertuples():
        metric = contract.class_metric(contract.VAL_PREFIX, "recall", row[2])
        summary = load.summary_table(runs, metric, "augmentation=none").set_index("variant")
        theirs = summary.loc["augmentation=flip_shift"]
        assert row.difference == pytest.approx(theirs.difference)
        assert row.ci_low == pytest.approx(theirs.difference_ci_low)
        assert row.ci_high == pytest.approx(theirs.difference_ci_high)
        assert row.p_value == pytest.approx(theirs.p_value)
    assert row.difference == pytest.approx(np.mean(SHIFT["sea lion"]))
    # Holm across the three classes: cat decided better, the others not
    p = frame.set_index("class").p_value
    assert frame.set_index("class").p_adjusted["cat"] == pytest.approx(min(1.0, 3 * p.min()))
    assert list(frame.verdict) == ["better", "no evidence of a difference", "no evidence of a difference"]
    (line,) = classes.sentences(frame)
    assert line.startswith("augmentation=flip_shift: recall on `cat` +0.06 [")
    assert line.endswith(", decided; no class decided worse")


def test_the_report_and_the_parents_description_name_a_decided_class(runs, tmp_path):
    result = load.report_runs(runs, out=tmp_path, log=False)
    text = (tmp_path / "report.md").read_text()
    assert "## Per class: recall against the baseline" in text and "per_class_recall.png" in text
    assert (tmp_path / "per_class_recall.png").stat().st_size > 1000
    note = report.markdown_summary(result.summary, result.effects, result.per_class)
    assert "recall on `cat` +0.06" in note and "dog" not in note  # only the decided class, one line
    undecided = result.per_class.assign(decided=False)
    assert "Per class" not in report.markdown_summary(result.summary, result.effects, undecided)


@pytest.mark.slow
def test_a_sweep_decides_on_sweep_metric_and_reports_per_class_on_its_parent(store, tmp_path):
    shrunk = ["trainer.epochs=1", "dataset.max_samples=150", "tracking.log_model=false"]
    args = ["-m", "optimizer=adam,sgd", "seed=0,1", "sweep.metric=val_macro_f1", *shrunk, *store.overrides]
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (parent,) = [r for r in store.runs() if r.data.tags.get(contract.ROLE) == contract.ROLE_SWEEP]
    assert {"val_macro_f1/optimizer:adam", "val_macro_f1/optimizer:sgd"} <= set(parent.data.metrics)
    assert "final `val_macro_f1`" in parent.data.tags[contract.NOTE]
    files = {a.path for a in store.client().list_artifacts(parent.info.run_id, "comparison")}
    assert {"comparison/per_class_recall.png", "comparison/per_class_recall.csv"} <= files
    text = Path(store.client().download_artifacts(parent.info.run_id, "comparison/report.md", str(tmp_path)))
    assert "## Per class: recall against the baseline" in text.read_text()


def test_speed_ratios_are_paired_over_seeds_on_the_log_scale(runs, tmp_path):
    frame = speed.ratio_frame(runs, ["augmentation=none", "augmentation=flip_shift"], "augmentation=none")
    row = frame.set_index("measure").loc[contract.TRAIN_SECONDS_PER_EPOCH]
    by_hand = stats.paired(np.log(np.multiply(EPOCH_SECONDS, SLOWER)), np.log(EPOCH_SECONDS))
    assert row.ratio == pytest.approx(np.exp(np.mean(np.log(SLOWER))))  # the geometric mean of the ratios
    assert (row.ci_low, row.ci_high) == pytest.approx((np.exp(by_hand.ci_low), np.exp(by_hand.ci_high)))
    assert row.ci_low < 1.9 < row.ci_high and row.decided
    result = load.report_runs(runs, out=tmp_path, log=False)
    (line,) = speed.sentences(result.speed, result.summary)
    assert line.startswith("augmentation=flip_shift: 1.90x slower per epoch [1.8")
    assert ", val_accuracy +0.0 points [" in line  # the same final accuracy for both (0.8)
    assert (tmp_path / "accuracy_vs_speed.png").stat().st_size > 1000
    assert "1.90x slower per epoch" in (tmp_path / "report.md").read_text()
    assert "1.90x slower per epoch" in report.markdown_summary(
        result.summary, result.effects, None, result.speed
    )
    assert speed.ratio_text(0.5, 0.4, 0.625, "slower", "faster") == "2.00x faster [1.60, 2.50]"


def test_the_pareto_front_keeps_the_variants_nothing_beats_on_both_time_and_accuracy():
    points = [(1.0, 0.90), (2.0, 0.95), (2.5, 0.93), (0.5, 0.80), (3.0, 0.95)]
    assert speed.pareto(points) == [0, 1, 3]  # (2.5, 0.93) and (3.0, 0.95) are beaten by (2.0, 0.95)
