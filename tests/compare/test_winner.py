"""The decided winner of a sweep (``pipeline.compare.winner``), read through the real comparison from a
temporary MLflow store written by hand to the tracking contract (no training)."""

from __future__ import annotations

import json
import time

import pytest

from pipeline.compare import load, winner
from pipeline.tracking import contract

FACTOR = "optimizer.learning_rate"


def _write_sweep(client, experiment_id: str, finals: dict[str, list[float]]) -> str:
    """A finished sweep over ``FACTOR``'s levels (the first is the baseline), one run per seed."""
    from mlflow.entities import Metric

    params = {FACTOR: ",".join(finals), "seed": "0,1,2"}
    tags = {contract.ROLE: contract.ROLE_SWEEP, contract.SWEEP_ID: "cafe01"}
    tags |= {contract.FACTORS: json.dumps([FACTOR]), contract.SWEEP_PARAMS: json.dumps(params)}
    parent = client.create_run(experiment_id, tags=tags).info.run_id
    now = int(time.time() * 1000)
    for level, values in finals.items():
        for seed, final in enumerate(values):
            tags = {contract.PARENT: parent, contract.ROLE: contract.ROLE_JOB, contract.SWEEP_ID: "cafe01"}
            tags |= {contract.VARIANT: f"{FACTOR}={level}", contract.SEED: str(seed)}
            tags[contract.factor_tag(FACTOR)] = level
            run = client.create_run(experiment_id, tags=tags).info.run_id
            metrics = [Metric(contract.VAL_ACCURACY, final - 0.1, now, 1)]
            metrics += [
                Metric(contract.VAL_ACCURACY, final, now, 2),
                Metric(contract.VAL_LOSS, 1 - final, now, 2),
            ]
            client.log_batch(run, metrics=metrics, synchronous=True)
            client.set_terminated(run, contract.FINISHED)
    client.set_terminated(parent, contract.FINISHED)
    return parent


@pytest.fixture(scope="module")
def decide(tmp_path_factory):
    """``decide(finals)``: the comparison of a sweep with those final accuracies, and its winner."""
    import mlflow

    root = tmp_path_factory.mktemp("winner")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)

    def decided(name: str, finals: dict[str, list[float]]):
        experiment_id = client.create_experiment(name, artifact_location=(root / name).as_uri())
        parent = _write_sweep(client, experiment_id, finals)
        runs = load.load_runs(name, parent, uri)
        summary = load.summary_table(runs)
        return runs, summary, winner.decide(runs, summary)

    return decided


def test_the_best_of_the_variants_decided_better_wins_with_its_median_seed(decide):
    runs, _, found = decide(
        "several_better",
        {"0.0001": [0.80, 0.81, 0.82], "0.001": [0.92, 0.90, 0.91], "0.003": [0.88, 0.885, 0.89]},
    )
    assert found.variant == f"{FACTOR}=0.001" and found.decided
    assert found.seed == "2" and found.seeds == ["0", "1", "2"]  # 0.91 is the median of 0.92, 0.90, 0.91
    median = runs[(runs.variant == found.variant) & (runs.seed == "2")].run_id.item()
    assert found.run_id == median
    assert "decided better than the baseline optimizer.learning_rate=0.0001" in found.description
    # paired differences 0.04, 0.015, 0.02: p = 0.08, so not decided against the runner-up
    assert "not decided against the runner-up optimizer.learning_rate=0.003" in found.description
    assert "Holm p = " in found.description and "the median" in found.description


def test_the_baseline_wins_when_every_other_variant_is_decided_worse(decide):
    _, _, found = decide("baseline_wins", {"0.001": [0.90, 0.91, 0.92], "0.1": [0.80, 0.805, 0.81]})
    assert found.variant == f"{FACTOR}=0.001" and found.decided and found.seed == "1"
    assert "every other variant is decided worse" in found.description


def test_an_undecided_sweep_has_no_winner_but_a_best_mean_on_request(decide):
    runs, summary, found = decide("undecided", {"0.001": [0.90, 0.91, 0.92], "0.002": [0.91, 0.90, 0.93]})
    assert found is None
    best = winner.best_mean(runs, summary)
    assert best.variant == f"{FACTOR}=0.002" and not best.decided
    assert best.description.startswith("UNDECIDED")


def test_a_sweep_over_seeds_alone_hands_on_its_median_run(decide):
    _, _, found = decide("seeds_only", {"0.001": [0.91, 0.93, 0.92]})
    assert found.variant == f"{FACTOR}=0.001" and found.seed == "2" and found.decided
    assert "the sweep's only variant" in found.description


def test_runs_tied_on_the_metric_are_ordered_by_seed_for_the_median():
    import pandas as pd

    runs = pd.DataFrame(
        {
            "run_id": ["a", "b", "c", "d"],
            "variant": ["v"] * 4,
            "status": [contract.FINISHED] * 4,
            "seed": ["10", "2", "1", "3"],
            contract.VAL_ACCURACY: [0.8, 0.8, 0.6, 0.9],
        }
    )
    # 0.6 (seed 1), 0.8 (seed 2), 0.8 (seed 10), 0.9 (seed 3): the lower middle one is seed 2's
    assert winner.median_run(runs, "v", contract.VAL_ACCURACY) == ("b", "2", ["10", "2", "1", "3"])


def test_a_variant_without_a_finished_seed_leaves_the_verdict_undecided(decide):
    runs, summary, _ = decide("one_failed", {"0.001": [0.90, 0.91, 0.92], "0.003": [0.95, 0.96, 0.97]})
    failed = runs.assign(status=runs.status.where(runs.variant == f"{FACTOR}=0.001", contract.FAILED))
    summary = load.summary_table(failed)  # every job of 0.003 failed (a GPU variant on a CPU machine)

    assert winner.decide(failed, summary) is None  # not "the baseline: every other worse" over nothing
    assert winner.undecided_reason(summary) == f"no finished seed of {FACTOR}=0.003 (every job of it failed)"
