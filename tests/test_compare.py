"""The sweep comparison, on a temporary MLflow store written by hand to the tracking contract.

Every statistic is checked against the textbook formula written out here (cross-checked with
scipy where that is the reference): t interval of a mean, Welch's difference, CI and p-value.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline import compare
from pipeline import stats as pipeline_stats

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 3
STRIDE = [0.80, 0.82, 0.84]  # final val_accuracy of downsample=stride, seeds 0, 1, 2
MAXPOOL = [0.90, 0.91, 0.92]
T_975_DF2 = 4.302652729911275  # two-sided 95% t quantile with 2 degrees of freedom (any t table)


def _job(client, experiment_id, parent_id, factors: dict, seed: int, final: float | None, error: str = ""):
    """A child run as ``pipeline.tracking`` writes it; epoch 2 is the best epoch (final + 0.01)."""
    from mlflow.entities import Metric

    variant = ",".join(f"{key}={value}" for key, value in factors.items()) or "default"
    tags = {"mlflow.parentRunId": parent_id, "convlab.role": "job", "convlab.sweep_id": "abc123"}
    tags |= {"convlab.variant": variant, "convlab.seed": str(seed)}
    tags |= {f"convlab.factor.{key}": value for key, value in factors.items()}
    run_id = client.create_run(experiment_id, tags=tags).info.run_id
    if error:
        client.set_tag(run_id, "convlab.error", error)
        client.set_terminated(run_id, "FAILED")
        return
    now, metrics = int(time.time() * 1000), []
    for epoch, val_accuracy in enumerate([final - 0.2, final + 0.01, final], start=1):
        values = {"val_accuracy": val_accuracy, "val_loss": 1 - val_accuracy, "loss": 1.2 - val_accuracy}
        values |= {"accuracy": val_accuracy + 0.02, "epoch_seconds": 2.0 * epoch, "images_per_second": 500.0}
        metrics += [Metric(key, value, now, epoch) for key, value in values.items()]
    once = {"parameter_count": 1000.0, "best_val_accuracy": final + 0.01, "best_epoch": 2.0}
    once["run_seconds"] = 12.0
    metrics += [Metric(key, value, now, 0) for key, value in once.items()]
    client.log_batch(run_id, metrics=metrics, synchronous=True)
    client.set_terminated(run_id, "FINISHED")


def _sweep(client, experiment_id, factors: list, params: dict, start_time: int) -> str:
    tags = {"convlab.role": "sweep", "convlab.sweep_id": "abc123", "convlab.factors": json.dumps(factors)}
    tags["convlab.sweep_params"] = json.dumps(params)
    return client.create_run(experiment_id, start_time=start_time, tags=tags).info.run_id


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> dict:
    """Three experiments: a 1-factor sweep (plus an older one), a 2x2 factorial, a seeds-only sweep."""
    import mlflow

    root = tmp_path_factory.mktemp("mlruns")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    new = lambda name: client.create_experiment(name, artifact_location=(root / name).as_uri())  # noqa: E731
    exp, start = new("stride_vs_pool"), int(time.time() * 1000)
    old = _sweep(client, exp, ["downsample"], {"downsample": "stride,maxpool"}, start - 60_000)
    _job(client, exp, old, {"downsample": "stride"}, 0, 0.5)
    params = {"downsample": "stride,maxpool,none", "seed": "0,1,2"}
    parent = _sweep(client, exp, ["downsample"], params, start)
    for seed in range(3):
        _job(client, exp, parent, {"downsample": "maxpool"}, seed, MAXPOOL[seed])
        _job(client, exp, parent, {"downsample": "stride"}, seed, STRIDE[seed])
    _job(client, exp, parent, {"downsample": "none"}, 0, 0.7)
    _job(client, exp, parent, {"downsample": "maxpool"}, 3, None, error="ValueError: out of memory on GPU")
    exp = new("grid")
    params = {"downsample": "stride,maxpool", "regularization": "choice(none, dropout)", "seed": "0,1,2"}
    grid = _sweep(client, exp, ["downsample", "regularization"], params, start)
    for downsample, regularization, seed in itertools.product(
        ("stride", "maxpool"), ("none", "dropout"), range(3)
    ):
        factors = {"downsample": downsample, "regularization": regularization}
        _job(client, exp, grid, factors, seed, _grid(factors, seed))
    exp = new("seeds_only")
    seeds = _sweep(client, exp, [], {"seed": "0,1"}, start)
    for seed in range(2):
        _job(client, exp, seeds, {}, seed, 0.6 + seed / 100)
    return {"uri": uri, "client": client, "parent": parent, "old": old, "grid": grid}


def _grid(factors: dict, seed: int) -> float:
    """2x2 design: maxpool adds 0.05, dropout 0.02, plus a per-seed offset."""
    maxpool, dropout = factors["downsample"] == "maxpool", factors["regularization"] == "dropout"
    return 0.8 + 0.05 * maxpool + 0.02 * dropout + [-0.01, 0.0, 0.015][seed]


def _t_interval(values) -> tuple[float, float, float, float]:
    x = np.asarray(values)
    mean, std = x.mean(), math.sqrt(((x - x.mean()) ** 2).sum() / (len(x) - 1))
    half = stats.t.ppf(0.975, len(x) - 1) * std / math.sqrt(len(x))
    return mean, std, mean - half, mean + half


def _welch(a, b) -> tuple[float, float, float, float]:
    """Welch's difference a - b: CI from the Welch-Satterthwaite df, two-sided p-value."""
    a, b = np.asarray(a), np.asarray(b)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se, df = math.sqrt(va + vb), (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    difference = a.mean() - b.mean()
    half = stats.t.ppf(0.975, df) * se
    return difference, difference - half, difference + half, 2 * stats.t.sf(abs(difference) / se, df)


def test_load_runs_gives_one_row_per_job_with_history_and_errors(sweeps):
    runs = compare.load_runs("stride_vs_pool", tracking_uri=sweeps["uri"])
    assert len(runs) == 8 and runs.attrs["parent_run_id"] == sweeps["parent"]
    assert runs.attrs["factors"] == ["downsample"]
    failed = runs[runs.status == "FAILED"].iloc[0]
    assert failed.error == "ValueError: out of memory on GPU" and failed.variant == "downsample=maxpool"
    stride = runs[runs.variant == "downsample=stride"].sort_values("seed")
    assert list(stride.val_accuracy) == pytest.approx(STRIDE)
    assert pd.DataFrame(stride.history.iloc[0]).loc[2, "val_accuracy"] == pytest.approx(STRIDE[0] + 0.01)
    assert list(stride.best_val_loss) == pytest.approx([1 - v - 0.01 for v in STRIDE])
    assert set(stride.epochs) == {EPOCHS} and set(stride.seconds_per_epoch) == {4.0}


def test_summary_matches_hand_computed_statistics(sweeps):
    summary = compare.summarize("stride_vs_pool", tracking_uri=sweeps["uri"]).set_index("variant")
    assert summary.attrs["baseline"] == "downsample=stride"  # first value listed in the sweep
    assert list(summary.index) == ["downsample=stride", "downsample=maxpool", "downsample=none"]
    stride, maxpool = summary.loc["downsample=stride"], summary.loc["downsample=maxpool"]
    assert (maxpool.n_seeds, maxpool.n_failed, stride.n_seeds, stride.n_failed) == (3, 1, 3, 0)
    assert (stride.val_accuracy_mean, stride.val_accuracy_std) == pytest.approx((0.82, 0.02))
    half = T_975_DF2 * 0.02 / math.sqrt(3)
    assert (stride.val_accuracy_ci_low, stride.val_accuracy_ci_high) == pytest.approx(
        (0.82 - half, 0.82 + half)
    )
    columns = ["val_accuracy_mean", "val_accuracy_std", "val_accuracy_ci_low", "val_accuracy_ci_high"]
    assert list(maxpool[columns]) == pytest.approx(_t_interval(MAXPOOL))
    assert maxpool.best_val_accuracy_mean == pytest.approx(0.92)
    assert maxpool.best_val_loss_mean == pytest.approx(0.08)
    assert (maxpool.epochs, maxpool.seconds_per_epoch, maxpool.parameter_count) == (3, 4.0, 1000)
    difference, low, high, p_value = _welch(MAXPOOL, STRIDE)
    assert difference == pytest.approx(0.09)
    assert p_value == pytest.approx(stats.ttest_ind(MAXPOOL, STRIDE, equal_var=False).pvalue)
    assert list(
        maxpool[["difference", "difference_ci_low", "difference_ci_high", "p_value"]]
    ) == pytest.approx([difference, low, high, p_value])
    assert p_value < 0.05 and maxpool.verdict == "better"
    assert stride.verdict == "baseline" and summary.loc["downsample=none"].verdict == "too few seeds"


def test_loss_is_better_lower_and_baseline_can_be_chosen(sweeps):
    kwargs = {"tracking_uri": sweeps["uri"], "baseline": "downsample=maxpool"}
    by_accuracy = compare.summarize("stride_vs_pool", **kwargs).set_index("variant")
    assert by_accuracy.loc["downsample=stride", "verdict"] == "worse"
    by_loss = compare.summarize("stride_vs_pool", metric="val_loss", **kwargs).set_index("variant")
    assert by_loss.loc["downsample=stride", "difference"] == pytest.approx(0.09)  # higher loss...
    assert by_loss.loc["downsample=stride", "verdict"] == "worse"  # ...is worse
    assert pipeline_stats.verdict(0.01, 0.3, "val_accuracy") == "no evidence of a difference"


def test_sweep_picks_an_older_sweep_latest_by_default(sweeps):
    latest = compare.load_runs("stride_vs_pool", tracking_uri=sweeps["uri"])
    older = compare.load_runs("stride_vs_pool", sweep=sweeps["old"], tracking_uri=sweeps["uri"])
    assert latest.attrs["parent_run_id"] == sweeps["parent"] and len(older) == 1


def test_main_effects_of_a_2x2_design(sweeps):
    runs = compare.load_runs("grid", tracking_uri=sweeps["uri"])
    effects = compare.effects_table(runs).set_index(["factor", "level"])
    levels = [("downsample", "stride"), ("downsample", "maxpool"), ("regularization", "none")]
    assert list(effects.index) == [*levels, ("regularization", "dropout")]  # the order the sweep lists
    cells = list(
        itertools.product(("none", "dropout"), range(3))
    )  # each level runs with both regularizations
    maxpool = [_grid({"downsample": "maxpool", "regularization": r}, s) for r, s in cells]
    stride = [_grid({"downsample": "stride", "regularization": r}, s) for r, s in cells]
    row = effects.loc[("downsample", "maxpool")]
    assert row.n_runs == 6 and row["mean"] == pytest.approx(np.mean(maxpool))
    assert row.difference == pytest.approx(0.05)
    assert [row.difference_ci_low, row.difference_ci_high, row.p_value] == pytest.approx(
        _welch(maxpool, stride)[1:]
    )
    assert row.verdict == "better" and effects.loc[("downsample", "stride"), "verdict"] == "reference"
    dropout = effects.loc[("regularization", "dropout")]
    assert dropout.difference == pytest.approx(0.02) and dropout.verdict == "no evidence of a difference"
    summary = compare.summary_table(runs)
    assert summary.attrs["baseline"] == "downsample=stride,regularization=none"  # first listed values
    assert len(summary) == 4 and set(summary.n_seeds) == {3}
    runs.attrs["sweep_params"] = {}  # levels not listed: sorted order
    assert compare.summary_table(runs).attrs["baseline"] == "downsample=maxpool,regularization=dropout"
    assert list(compare.effects_table(runs).level) == ["maxpool", "stride", "dropout", "none"]


def test_seeds_only_sweep_has_a_default_baseline_and_no_main_effects(sweeps):
    summary = compare.summarize("seeds_only", tracking_uri=sweeps["uri"])
    assert list(summary.variant) == ["default"] and summary.verdict[0] == "baseline"
    assert compare.main_effects("seeds_only", tracking_uri=sweeps["uri"]).empty


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"experiment": "nope"}, "unknown experiment 'nope'"),
        ({"experiment": "stride_vs_pool", "baseline": "downsample=avg"}, "unknown baseline"),
        ({"experiment": "stride_vs_pool", "metric": "f1"}, "unknown metric 'f1'"),
        ({"experiment": "stride_vs_pool", "sweep": "0" * 32}, "no run with id"),
    ],
)
def test_user_errors_are_one_clear_line(sweeps, kwargs, message):
    with pytest.raises(compare.CompareError, match=message) as caught:
        compare.summarize(tracking_uri=sweeps["uri"], **kwargs)
    assert "\n" not in str(caught.value)


def test_write_report_writes_files_and_logs_them_to_the_parent(sweeps, tmp_path):
    path = compare.write_report("grid", tracking_uri=sweeps["uri"], out=tmp_path / "report", log=True)
    out = path.parent
    names = {"summary.csv", "main_effects.csv", "report.md", "report.html", "curves.png", "final_metric.png"}
    assert {p.name for p in out.iterdir()} == names
    assert len(pd.read_csv(out / "summary.csv")) == 4 and len(pd.read_csv(out / "main_effects.csv")) == 4
    markdown = path.read_text()
    assert "| variant | seeds | failed |" in markdown and "Welch's two-sample t-test" in markdown
    assert "alpha = 0.05" in markdown and "Seeds: 0, 1, 2" in markdown and "epochs: 3" in markdown
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "<table>" in page
    assert "<script" not in page and "<link" not in page and 'src="http' not in page and "href=" not in page
    logged = {a.path for a in sweeps["client"].list_artifacts(sweeps["grid"], "comparison")}
    assert logged == {f"comparison/{name}" for name in names}


def test_report_lists_failed_jobs_with_their_errors(sweeps, tmp_path):
    path = compare.write_report("stride_vs_pool", tracking_uri=sweeps["uri"], out=tmp_path, log=False)
    assert "ValueError: out of memory on GPU" in path.read_text()
    assert not (tmp_path / "main_effects.csv").exists()  # one factor: no main effects


def _python(code_or_args: list[str], uri: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": uri}
    return subprocess.run([sys.executable, *code_or_args], env=env, cwd=ROOT, capture_output=True, text=True)


def test_cli_unknown_experiment_is_one_line_and_exit_2(sweeps):
    result = _python(["-m", "pipeline.compare", "--experiment", "nope"], sweeps["uri"])
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "unknown experiment 'nope'" in result.stderr and "Traceback" not in result.stderr


def test_cli_never_imports_tensorflow(sweeps, tmp_path):
    code = (
        "import sys; from pipeline import compare;"
        f"rc = compare.main(['--experiment', 'stride_vs_pool', '--no-log', '--out', {str(tmp_path)!r}]);"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')];"
        "print('HEAVY', heavy); sys.exit(rc)"
    )
    result = _python(["-c", code], sweeps["uri"])
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
    assert "downsample=maxpool" in result.stdout and "better" in result.stdout
    assert (tmp_path / "report.html").exists()
