"""Early stopping keeps the best epoch's weights: they are what is logged, registered and served."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from tests.conftest import cli

NAME = "early-stopped-digits"
# min_delta 0.5: no epoch after the first improves on it, so the best epoch is 1 and patience 1
# stops training after epoch 2, whatever the data: a deterministic early stop
STOPPING = ["trainer.early_stopping.patience=1", "trainer.early_stopping.min_delta=0.5"]
SMALL = ["dataset.max_samples=300", "trainer.batch_size=32", "tracking.system_metrics=false"]


@pytest.mark.slow
def test_an_early_stopped_sweep_registers_its_best_epochs_model(store, tmp_path):
    sweep = ["-m", "optimizer.learning_rate=0.003,0.002", "seed=0", "trainer.epochs=6", *STOPPING, *SMALL]
    result = cli(
        *sweep, f"sweep.register={NAME}", "sweep.register_undecided=true", *store.overrides, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = store.client()
    version = client.get_model_version_by_alias(NAME, "champion")
    winner = client.get_run(version.run_id)
    assert winner.data.metrics["best_epoch"] == 1 and winner.data.metrics["stopped_epoch"] == 2
    steps = sorted(m.step for m in client.get_metric_history(winner.info.run_id, "val_accuracy"))
    assert steps == [1, 2]  # trained 2 of its 6 epochs
    # the same run trained for 1 epoch holds the best epoch's weights (epoch k's data depend on
    # (seed, k) alone): the registered model predicts as it does
    rate = winner.data.params["optimizer.learning_rate"]
    reference = cli("trainer.epochs=1", f"optimizer.learning_rate={rate}", "seed=0", *SMALL,
                    "tracking.run_name=one-epoch", *store.overrides, cwd=tmp_path)  # fmt: skip
    assert reference.returncode == 0, reference.stderr[-3000:]
    one_epoch = next(run for run in store.runs() if run.info.run_name == "one-epoch")
    images = np.random.default_rng(0).uniform(0, 255, (16, 28, 28, 1)).astype("float32")
    registered = np.asarray(mlflow.pyfunc.load_model(f"models:/{NAME}@champion").predict(images))
    expected = np.asarray(mlflow.pyfunc.load_model(f"runs:/{one_epoch.info.run_id}/model").predict(images))
    np.testing.assert_allclose(registered, expected, atol=1e-5)
    assert "best_val_accuracy" in result.stdout  # the comparison names the metric it compared
