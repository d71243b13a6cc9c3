"""The sweep comparison, on a temporary MLflow store written by hand to the tracking contract.

Every statistic is checked against the textbook formula written out here (cross-checked with
scipy where that is the reference): the logit interval of a mean accuracy, the paired
difference, its CI and p-value, Holm's adjustment; ``test_stats.py`` pins the functions alone.
"""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, write_child_run, write_sweep_run
from scipy import stats

from pipeline import compare
from pipeline.compare import figures, report
from pipeline.compare import stats as pipeline_stats
from pipeline.tracking import contract

EPOCHS = 3
STRIDE = [0.80, 0.82, 0.84]  # final val_accuracy of downsample=stride, seeds 0, 1, 2
MAXPOOL = [0.90, 0.91, 0.92]
TWO_SEEDS = {"stride": [0.7, 0.7], "maxpool": [0.6, 0.7875]}  # the issue's [-1.1975, 1.1850], 1.5313
T_975_DF2 = 4.302652729911275  # two-sided 95% t quantile with 2 degrees of freedom (any t table)
C = contract


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> dict:
    """Three experiments: a 1-factor sweep (plus an older one), a 2x2 factorial, a seeds-only sweep."""
    import mlflow

    root = tmp_path_factory.mktemp("mlruns")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    new = lambda name: client.create_experiment(name, artifact_location=(root / name).as_uri())  # noqa: E731
    exp, start = new("stride_vs_pool"), int(time.time() * 1000)
    old = write_sweep_run(client, exp, ["downsample"], {"downsample": "stride,maxpool"}, start - 60_000)
    write_child_run(client, exp, old, {"downsample": "stride"}, 0, 0.5)
    params = {"downsample": "stride,maxpool,none", "seed": "0,1,2"}
    parent = write_sweep_run(client, exp, ["downsample"], params, start)
    for seed in range(3):
        write_child_run(client, exp, parent, {"downsample": "maxpool"}, seed, MAXPOOL[seed])
        write_child_run(client, exp, parent, {"downsample": "stride"}, seed, STRIDE[seed])
    write_child_run(client, exp, parent, {"downsample": "none"}, 0, 0.7)
    write_child_run(
        client, exp, parent, {"downsample": "maxpool"}, 3, None, error="ValueError: out of memory on GPU"
    )
    exp = new("grid")
    params = {"downsample": "stride,maxpool", "regularization": "choice(none, dropout)", "seed": "0,1,2"}
    grid = write_sweep_run(client, exp, ["downsample", "regularization"], params, start)
    for downsample, regularization, seed in itertools.product(
        ("stride", "maxpool"), ("none", "dropout"), range(3)
    ):
        factors = {"downsample": downsample, "regularization": regularization}
        write_child_run(client, exp, grid, factors, seed, _grid(factors, seed))
    exp = new("seeds_only")
    seeds = write_sweep_run(client, exp, [], {"seed": "0,1"}, start)
    for seed in range(2):
        write_child_run(client, exp, seeds, {}, seed, 0.6 + seed / 100)
    resumed = _resumed(client, new("resumed"), start)
    exp = new("two_seeds")  # a shrunk sweep's numbers: 2 seeds, a spread wider than the difference
    two = write_sweep_run(client, exp, ["downsample"], {"downsample": "stride,maxpool", "seed": "0,1"}, start)
    for seed in range(2):
        write_child_run(client, exp, two, {"downsample": "stride"}, seed, TWO_SEEDS["stride"][seed])
        write_child_run(client, exp, two, {"downsample": "maxpool"}, seed, TWO_SEEDS["maxpool"][seed])
    return {"uri": uri, "client": client, "parent": parent, "old": old, "grid": grid, "resumed": resumed}


JITTER = {  # each cell's own noise per seed, on top of the seed's shared offset
    ("stride", "none"): [0.0, 0.0, 0.0],
    ("stride", "dropout"): [0.004, -0.003, 0.001],
    ("maxpool", "none"): [-0.002, 0.003, 0.0],
    ("maxpool", "dropout"): [0.001, 0.0, -0.002],
}


def _grid(factors: dict, seed: int) -> float:
    """2x2 design: maxpool adds 0.05, dropout 0.006, plus a per-seed offset shared by every cell
    (what pairing by seed removes) and a little noise of each cell's own."""
    cell = (factors["downsample"], factors["regularization"])
    maxpool, dropout = cell[0] == "maxpool", cell[1] == "dropout"
    return 0.8 + 0.05 * maxpool + 0.006 * dropout + [-0.01, 0.0, 0.015][seed] + JITTER[cell][seed]


def _resumed(client, exp: str, start: int) -> str:
    """A sweep resumed after failures: old KILLED/FAILED runs and reruns of the same jobs."""
    parent = write_sweep_run(client, exp, ["optimizer"], {"optimizer": "adam,sgd", "seed": "0,1,2"}, start)
    adam, sgd = {"optimizer": "adam"}, {"optimizer": "sgd"}
    for seed, final in enumerate([0.9, 0.92, 0.91]):
        write_child_run(client, exp, parent, adam, seed, final, start_time=start)
    write_child_run(
        client, exp, parent, sgd, 0, None, error="KeyboardInterrupt", start_time=start, status=C.KILLED
    )
    write_child_run(client, exp, parent, sgd, 0, 0.5, start_time=start + 1000)  # the rerun that finished
    write_child_run(client, exp, parent, sgd, 1, 0.1, start_time=start)  # finished twice: the latest counts
    write_child_run(client, exp, parent, sgd, 1, 0.99, start_time=start + 2000)
    write_child_run(client, exp, parent, sgd, 2, None, error="ValueError: nan loss", start_time=start)
    write_child_run(client, exp, parent, sgd, 2, None, error="ValueError: nan loss", start_time=start + 1000)
    for seed, final in zip((5, 6, 7), (0.7, 0.75, 0.72), strict=True):  # seeds the baseline never ran
        write_child_run(client, exp, parent, {"optimizer": "rmsprop"}, seed, final, start_time=start)
    return parent


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
    failed = runs[runs.status == C.FAILED].iloc[0]
    assert failed.error == "ValueError: out of memory on GPU" and failed.variant == "downsample=maxpool"
    stride = runs[runs.variant == "downsample=stride"].sort_values("seed")
    assert list(stride.val_accuracy) == pytest.approx(STRIDE)
    assert pd.DataFrame(stride.history.iloc[0]).loc[2, C.VAL_ACCURACY] == pytest.approx(STRIDE[0] + 0.01)
    assert list(stride.best_val_loss) == pytest.approx([1 - v - 0.01 for v in STRIDE])
    assert set(stride.epochs) == {EPOCHS} and set(stride.seconds_per_epoch) == {4.0}


def _logit_interval(values) -> tuple[float, float]:
    """The t interval of logit(mean), standard error std / sqrt(n) / (m (1 - m)), mapped back."""
    x = np.asarray(values)
    mean, n = x.mean(), len(x)
    half = stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n) / (mean * (1 - mean))
    centre = math.log(mean / (1 - mean))
    return 1 / (1 + math.exp(-(centre - half))), 1 / (1 + math.exp(-(centre + half)))


def _paired(a, b) -> tuple[float, float, float, float]:
    """The paired difference a - b: mean of the per-seed differences, its t CI, two-sided p."""
    d = np.subtract(a, b)
    se = d.std(ddof=1) / math.sqrt(len(d))
    half = stats.t.ppf(0.975, len(d) - 1) * se
    return d.mean(), d.mean() - half, d.mean() + half, 2 * stats.t.sf(abs(d.mean()) / se, len(d) - 1)


def test_summary_matches_hand_computed_statistics(sweeps):
    summary = compare.summarize("stride_vs_pool", tracking_uri=sweeps["uri"]).set_index("variant")
    assert summary.attrs["baseline"] == "downsample=stride"  # first value listed in the sweep
    assert list(summary.index) == ["downsample=stride", "downsample=maxpool", "downsample=none"]
    stride, maxpool = summary.loc["downsample=stride"], summary.loc["downsample=maxpool"]
    assert (maxpool.n_seeds, maxpool.n_failed, stride.n_seeds, stride.n_failed) == (3, 1, 3, 0)
    assert (stride.val_accuracy_mean, stride.val_accuracy_std) == pytest.approx((0.82, 0.02))
    assert (stride.val_accuracy_ci_low, stride.val_accuracy_ci_high) == pytest.approx(_logit_interval(STRIDE))
    assert stride.ci_scale == pipeline_stats.LOGIT
    half = T_975_DF2 * 0.02 / math.sqrt(3)  # a loss keeps the plain t interval
    assert (stride.val_loss_ci_low, stride.val_loss_ci_high) == pytest.approx((0.18 - half, 0.18 + half))
    assert maxpool.best_val_accuracy_mean == pytest.approx(0.92)
    assert maxpool.best_val_loss_mean == pytest.approx(0.08)
    assert (maxpool.epochs, maxpool.seconds_per_epoch, maxpool.parameter_count) == (3, 4.0, 1000)
    difference, low, high, p_value = _paired(MAXPOOL, STRIDE)  # seeds 0-2 ran for both: paired
    assert difference == pytest.approx(0.09)
    assert p_value == pytest.approx(stats.ttest_rel(MAXPOOL, STRIDE).pvalue)
    columns = ["difference", "difference_ci_low", "difference_ci_high", "p_value", "p_adjusted"]
    assert list(maxpool[columns]) == pytest.approx([difference, low, high, p_value, p_value])  # one test
    assert maxpool.test == pipeline_stats.PAIRED and maxpool.n_compared == 3
    assert p_value < 0.05 and maxpool.verdict == "better" and maxpool.decided
    assert maxpool.detectable_difference == pytest.approx(pipeline_stats.detectable(0.01 / math.sqrt(3), 2))
    assert math.isnan(maxpool.seeds_needed)  # decided: nothing more to ask
    none = summary.loc["downsample=none"]
    assert stride.verdict == "baseline" and none.verdict == "too few seeds" and not none.decided
    assert compare.undecided(summary.reset_index()) == ["downsample=none"]


def test_a_difference_of_accuracies_is_bounded_and_the_method_named(sweeps, tmp_path):
    # unbounded, the paired t interval of 2 seeds is [-1.1975, 1.1850] and 'detectable' 1.5313
    raw = pipeline_stats.paired(TWO_SEEDS["maxpool"], TWO_SEEDS["stride"])
    assert (raw.ci_low, raw.ci_high, raw.detectable) == pytest.approx((-1.1975, 1.1850, 1.5313), abs=1e-4)
    summary = compare.summarize("two_seeds", tracking_uri=sweeps["uri"]).set_index("variant")
    maxpool = summary.loc["downsample=maxpool"]
    assert maxpool.difference == pytest.approx(-0.00625) and maxpool.test == pipeline_stats.PAIRED
    assert (maxpool.difference_ci_low, maxpool.difference_ci_high) == (-1.0, 1.0)
    assert maxpool.detectable_difference == 1.0
    assert maxpool.p_value == pytest.approx(raw.p_value)  # the test itself is unchanged
    markdown = compare.write_report("two_seeds", tracking_uri=sweeps["uri"], out=tmp_path).read_text()
    assert "intersected with [-1, 1], where a difference of two accuracies lies" in markdown
    assert "1.1850" not in markdown and "1.5313" not in markdown
    loss = compare.summarize("two_seeds", tracking_uri=sweeps["uri"], metric="val_loss")
    assert loss.difference_ci_high.max() > 1  # a loss is not bounded: its plain t interval stays


def test_holm_corrects_across_the_comparisons_and_verdicts_use_it(sweeps):
    summary = compare.summarize("grid", tracking_uri=sweeps["uri"]).set_index("variant")
    baseline = [_grid({"downsample": "stride", "regularization": "none"}, seed) for seed in range(3)]
    raw = {}
    for variant in summary.index[1:]:
        factors = dict(pair.split("=") for pair in variant.split(","))
        raw[variant] = _paired([_grid(factors, seed) for seed in range(3)], baseline)[3]
    ranked = sorted(raw, key=raw.get)  # Holm: (m - rank) * p, made non-decreasing
    adjusted = dict(zip(ranked, np.maximum.accumulate([(3 - i) * raw[v] for i, v in enumerate(ranked)])))
    for variant in raw:
        assert summary.loc[variant, "p_value"] == pytest.approx(raw[variant])
        assert summary.loc[variant, "p_adjusted"] == pytest.approx(min(1.0, adjusted[variant]))
    dropout = summary.loc["downsample=stride,regularization=dropout"]
    assert dropout.verdict == "no evidence of a difference" and not dropout.decided
    differences = np.subtract(
        [_grid({"downsample": "stride", "regularization": "dropout"}, s) for s in range(3)], baseline
    )
    assert dropout.seeds_needed == pipeline_stats.seeds_needed(dropout.difference, differences.var(ddof=1))
    assert dropout.seeds_needed > 3
    assert compare.undecided(summary.reset_index()) == ["downsample=stride,regularization=dropout"]


def test_loss_is_better_lower_and_baseline_can_be_chosen(sweeps):
    kwargs = {"tracking_uri": sweeps["uri"], "baseline": "downsample=maxpool"}
    by_accuracy = compare.summarize("stride_vs_pool", **kwargs).set_index("variant")
    assert by_accuracy.loc["downsample=stride", "verdict"] == "worse"
    by_loss = compare.summarize("stride_vs_pool", metric=C.VAL_LOSS, **kwargs).set_index("variant")
    assert by_loss.loc["downsample=stride", "difference"] == pytest.approx(0.09)  # higher loss...
    assert by_loss.loc["downsample=stride", "verdict"] == "worse"  # ...is worse
    assert pipeline_stats.verdict(0.01, 0.3, C.VAL_ACCURACY) == "no evidence of a difference"


def test_sweep_picks_an_older_sweep_latest_by_default(sweeps):
    latest = compare.load_runs("stride_vs_pool", tracking_uri=sweeps["uri"])
    older = compare.load_runs("stride_vs_pool", sweep=sweeps["old"], tracking_uri=sweeps["uri"])
    assert latest.attrs["parent_run_id"] == sweeps["parent"] and len(older) == 1


def test_main_effects_of_a_2x2_design_pair_by_seed_and_other_factor(sweeps):
    runs = compare.load_runs("grid", tracking_uri=sweeps["uri"])
    effects = compare.effects_table(runs).set_index(["factor", "level"])
    levels = [("downsample", "stride"), ("downsample", "maxpool"), ("regularization", "none")]
    assert list(effects.index) == [*levels, ("regularization", "dropout")]  # the order the sweep lists
    cells = list(itertools.product(("none", "dropout"), range(3)))  # pairs: (regularization, seed)
    maxpool = [_grid({"downsample": "maxpool", "regularization": r}, s) for r, s in cells]
    stride = [_grid({"downsample": "stride", "regularization": r}, s) for r, s in cells]
    row = effects.loc[("downsample", "maxpool")]
    assert row.n_runs == 6 and row["mean"] == pytest.approx(np.mean(maxpool))
    assert row.test == pipeline_stats.PAIRED and row.n_compared == 6
    difference, low, high, p_maxpool = _paired(maxpool, stride)
    assert [row.difference, row.difference_ci_low, row.difference_ci_high] == pytest.approx(
        [difference, low, high]
    )
    assert row.verdict == "better" and effects.loc[("downsample", "stride"), "verdict"] == "reference"
    cells = list(itertools.product(("stride", "maxpool"), range(3)))  # pairs: (downsample, seed)
    dropout = [_grid({"downsample": d, "regularization": "dropout"}, s) for d, s in cells]
    none = [_grid({"downsample": d, "regularization": "none"}, s) for d, s in cells]
    p_dropout = _paired(dropout, none)[3]
    row = effects.loc[("regularization", "dropout")]
    assert row.difference == pytest.approx(0.006) and row.p_value == pytest.approx(p_dropout)
    assert row.p_adjusted == pytest.approx(max(2 * min(p_maxpool, p_dropout), max(p_maxpool, p_dropout)))
    assert row.verdict == "better"  # the seed offsets that hide it from Welch cancel in the pairs
    assert stats.ttest_ind(dropout, none, equal_var=False).pvalue > 0.5
    summary = compare.summary_table(runs)
    assert summary.attrs["baseline"] == "downsample=stride,regularization=none"  # first listed values
    assert len(summary) == 4 and set(summary.n_seeds) == {3}
    runs.attrs["sweep_params"] = {}  # levels not listed: sorted order
    assert compare.summary_table(runs).attrs["baseline"] == "downsample=maxpool,regularization=dropout"
    assert list(compare.effects_table(runs).level) == ["maxpool", "stride", "dropout", "none"]


def test_resumed_sweep_counts_the_latest_finished_run_of_each_seed(sweeps):
    runs = compare.load_runs("resumed", tracking_uri=sweeps["uri"])
    assert len(runs) == 9  # one row per (variant, seed), whatever was rerun
    sgd = runs[runs.variant == "optimizer=sgd"].set_index("seed")
    assert list(sgd.status) == [C.FINISHED, C.FINISHED, C.FAILED] and list(sgd.attempts) == [2, 2, 2]
    assert list(sgd.val_accuracy[:2]) == pytest.approx([0.5, 0.99])  # the rerun, the later finish
    summary = compare.summary_table(runs).set_index("variant")
    assert (summary.loc["optimizer=sgd", "n_seeds"], summary.loc["optimizer=sgd", "n_failed"]) == (2, 1)
    assert summary.loc["optimizer=adam", "n_failed"] == 0
    assert summary.loc["optimizer=sgd", ["test", "n_compared"]].tolist() == [pipeline_stats.PAIRED, 2]
    rmsprop = summary.loc["optimizer=rmsprop"]  # no seed in common with the baseline: Welch
    assert rmsprop.test == pipeline_stats.WELCH and rmsprop.n_compared == 3
    welch = stats.ttest_ind([0.7, 0.75, 0.72], [0.9, 0.92, 0.91], equal_var=False)
    assert rmsprop.p_value == pytest.approx(welch.pvalue) and rmsprop.verdict == "worse"
    # two seeds far apart: the accuracy interval stays inside [0, 1], and so does the figure's axis
    low, high = summary.loc["optimizer=sgd", ["val_accuracy_ci_low", "val_accuracy_ci_high"]]
    assert 0 < low < 0.745 < high < 1
    axis = figures.final_metric(runs, summary.reset_index()).axes[0].get_xlim()
    assert 0 <= axis[0] < 0.5 and 0.99 < axis[1] <= 1


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
        ({"experiment": "stride_vs_pool", "sweep": "0" * 32}, "no sweep or run with id"),
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
    assert (
        "| variant | seeds | failed |" in markdown and "paired t-test on the per-seed differences" in markdown
    )
    assert "| test | p | p (Holm) | verdict | detectable | seeds needed |" in markdown
    assert "logit scale" in markdown and "Holm-adjusted across the main effects" in markdown
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


def test_every_output_carries_the_same_corrected_verdicts(sweeps, tmp_path):
    stopped = {"downsample=stride,regularization=dropout": "undecided at the 3-seed budget"}
    runs = compare.load_runs("grid", tracking_uri=sweeps["uri"])
    summary, effects = compare.summary_table(runs, stopped=stopped), compare.effects_table(runs)
    assert list(summary.stopped) == ["", "undecided at the 3-seed budget", "", ""]
    path = compare.write_report("grid", tracking_uri=sweeps["uri"], out=tmp_path, log=False, stopped=stopped)
    markdown, page, table = (
        path.read_text(),
        (tmp_path / "report.html").read_text(),
        report.terminal_table(summary),
    )
    note = report.markdown_summary(summary, effects)
    saved = pd.read_csv(tmp_path / "summary.csv")
    assert list(saved.verdict) == list(summary.verdict) and list(saved.p_adjusted) == pytest.approx(
        summary.p_adjusted, nan_ok=True
    )
    rows = {
        "note": note.split("\n| "),
        "markdown": markdown.split("## Variants")[0].split("\n| "),  # the comparison table only
        "terminal": table.splitlines(),
        "html": page.split("<h2>Variants")[0].split("<tr>"),
    }
    for row in summary.itertuples():
        for name, chunks in rows.items():
            mine = [
                c
                for c in chunks
                if c.startswith(row.variant + " ") or c.startswith(f"<td>{row.variant}</td>")
            ]
            assert mine and all(row.verdict in chunk for chunk in mine), (name, row.variant)
    undecided = summary.set_index("variant").loc["downsample=stride,regularization=dropout"]
    assert f"~{undecided.seeds_needed:.0f} seeds would detect it; undecided at the 3-seed budget" in note
    assert "| stopped |" in markdown and "undecided at the 3-seed budget" in page and "stopped" in table
    assert "Main effects:" in note and "| regularization | dropout | 6 |" in note


@pytest.mark.slow  # a subprocess that imports MLflow
def test_cli_output_folder_that_cannot_be_written_is_one_line(sweeps, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")  # root can write anywhere, but not under a regular file
    args = ["-m", "pipeline.compare", "--experiment", "stride_vs_pool", "--out", str(blocker / "report")]
    result = _python(args, sweeps["uri"])
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"convlab: cannot write the report to {blocker / 'report'}")
    assert "Traceback" not in result.stderr
    assert not sweeps["client"].list_artifacts(sweeps["parent"])  # nothing logged to the sweep
