"""Adaptive seeding: seeds go only to undecided variants, each stops for the right reason."""

from __future__ import annotations

import re

import pytest
from conftest import write_child_run, write_sweep_run

from pipeline import compare
from pipeline.sweep import adaptive
from pipeline.tracking import contract

BASELINE = [0.80, 0.82, 0.84, 0.83]  # optimizer=adam, seeds 0-3
DECIDED = [0.50, 0.51, 0.52]  # optimizer=sgd: 0.31 worse on every seed
UNDECIDED = [0.81, 0.80, 0.86]  # optimizer=rmsprop: noise around the baseline
AT_BUDGET = [0.79, 0.84, 0.83, 0.85]  # optimizer=nadam: 4 seeds, still noise


@pytest.fixture
def runs(tmp_path):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = client.create_experiment("adaptive", artifact_location=str(tmp_path / "artifacts"))
    parent = write_sweep_run(client, experiment_id, ["optimizer"], {"optimizer": "adam,sgd,rmsprop,nadam"}, 1)
    for name, finals in (("adam", BASELINE), ("sgd", DECIDED), ("rmsprop", UNDECIDED), ("nadam", AT_BUDGET)):
        for seed, final in enumerate(finals):
            write_child_run(client, experiment_id, parent, {"optimizer": name}, seed, final)
    return compare.load_runs("adaptive", parent, f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_seeds_go_only_to_undecided_variants_and_each_stops_for_its_reason(runs):
    summary = compare.summary_table(runs, baseline="optimizer=adam")
    jobs, stopped = adaptive.plan(runs, summary, max_seeds=4)
    assert stopped == {
        "optimizer=sgd": "decided after 3 seeds",
        "optimizer=nadam": "undecided at the 4-seed budget",
    }
    assert jobs == [{"optimizer": "rmsprop", "seed": "3"}]  # the baseline already ran seed 3
    jobs, stopped = adaptive.plan(runs, summary, max_seeds=3)
    assert jobs == [] and stopped["optimizer=rmsprop"] == "undecided at the 3-seed budget"


def test_the_baseline_runs_a_new_seed_too_so_the_comparison_stays_paired(runs):
    summary = compare.summary_table(runs, baseline="optimizer=adam")
    jobs, _ = adaptive.plan(runs, summary, max_seeds=6)
    assert jobs == [
        {"optimizer": "rmsprop", "seed": "3"},
        {"optimizer": "nadam", "seed": "4"},
        {"optimizer": "adam", "seed": "4"},
    ]


def test_the_baseline_reruns_a_paired_seed_that_failed(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment_id = client.create_experiment("failed", artifact_location=str(tmp_path / "artifacts"))
    parent = write_sweep_run(client, experiment_id, ["optimizer"], {"optimizer": "adam,rmsprop"}, 1)
    for seed, final in enumerate(UNDECIDED + [0.82]):
        write_child_run(client, experiment_id, parent, {"optimizer": "rmsprop"}, seed, final)
    for seed, final in enumerate(BASELINE[:3]):
        write_child_run(client, experiment_id, parent, {"optimizer": "adam"}, seed, final)
    write_child_run(client, experiment_id, parent, {"optimizer": "adam"}, 3, None, error="out of memory")
    runs = compare.load_runs("failed", parent, uri)
    jobs, _ = adaptive.plan(runs, compare.summary_table(runs, baseline="optimizer=adam"), max_seeds=8)
    assert jobs == [{"optimizer": "rmsprop", "seed": "4"}, *({"optimizer": "adam", "seed": s} for s in "34")]


def test_passes_run_a_full_grid_at_once_and_other_jobs_one_by_one():
    lines = ["experiment=stride_vs_pool", "seed=0,1,2", "hydra/launcher=joblib", "sweep.max_seeds=8"]
    grid = [{"downsample": d, "seed": "3"} for d in ("stride", "maxpool")]
    (one,) = adaptive.passes(grid, lines, "abc")
    assert "seed=0,1,2" not in one and "downsample=maxpool,stride" in one and "sweep.resume=abc" in one
    assert "hydra/launcher=joblib" in one and "experiment=stride_vs_pool" in one
    ragged = [{"downsample": "stride", "seed": "3"}, {"downsample": "maxpool", "seed": "4"}]
    assert [p[-2:] for p in adaptive.passes(ragged, lines, "abc")] == [
        ["downsample=stride", "seed=3"],
        ["downsample=maxpool", "seed=4"],
    ]


@pytest.mark.slow
def test_a_sweep_with_max_seeds_adds_seeds_until_each_variant_stops(adam_sgd_sweep):
    result, store = adam_sgd_sweep  # optimizer=adam,sgd seed=0,1 sweep.max_seeds=3, on joblib
    assert result.returncode == 0, result.stderr[-3000:]
    runs = store.runs()
    parents = [r for r in runs if r.data.tags.get(contract.ROLE) == contract.ROLE_SWEEP]
    assert len(parents) == 1 and parents[0].info.status == contract.FINISHED  # one parent for all rounds
    children = [r for r in runs if r.data.tags.get(contract.PARENT) == parents[0].info.run_id]
    seeds = {}
    for child in children:
        assert child.info.status == contract.FINISHED
        seeds.setdefault(child.data.tags[contract.VARIANT], []).append(int(child.data.tags[contract.SEED]))
    note = parents[0].data.tags[contract.NOTE]  # the verdict, in MLflow's description of the sweep
    stopped = re.search(
        r"optimizer=sgd \|.*\((?:[^;)]*; )?(decided after \d+ seeds|undecided at the 3-seed budget)", note
    )
    assert stopped, note
    expected = 3 if "budget" in stopped.group(1) else int(re.search(r"\d+", stopped.group(1)).group())
    assert sorted(seeds["optimizer=sgd"]) == list(range(expected))
    assert sorted(seeds["optimizer=adam"]) == list(range(expected))  # paired: the baseline ran them too
