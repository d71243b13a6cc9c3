"""A sweep named by its sweep id or its parent run's id: resume and compare find the same run."""

from __future__ import annotations

import pytest

from pipeline.config.errors import CompareError
from pipeline.tracking import contract, sweep_lookup


@pytest.fixture
def sweeps(tmp_path):
    """``(uri, client, {sweep id: parent run id}, a child's run id)``: two sweeps of two presets."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment_id = client.create_experiment("lookup", artifact_location=str(tmp_path / "artifacts"))
    parents = {}
    for start, (sweep_id, preset) in enumerate([("aaa111", "grid"), ("bbb222", "other")], start=1):
        tags = {contract.ROLE: contract.ROLE_SWEEP, contract.SWEEP_ID: sweep_id, contract.EXPERIMENT: preset}
        parents[sweep_id] = client.create_run(experiment_id, start_time=start, tags=tags).info.run_id
    child_tags = {contract.ROLE: contract.ROLE_JOB, contract.PARENT: parents["aaa111"]}
    child = client.create_run(experiment_id, start_time=3, tags=child_tags).info.run_id
    return uri, client, parents, child


def test_resume_and_compare_resolve_a_sweep_id_or_a_run_id_alike(sweeps):
    uri, client, parents, _ = sweeps
    for name in ("aaa111", parents["aaa111"]):
        assert sweep_lookup.find_parent(uri, "lookup", name, "") == ("aaa111", parents["aaa111"])
        assert sweep_lookup.find_sweep(client, "lookup", name).info.run_id == parents["aaa111"]
    assert sweep_lookup.find_parent(uri, "lookup", None, "grid") == ("aaa111", parents["aaa111"])
    assert sweep_lookup.find_sweep(client, "lookup", None).info.run_id == parents["bbb222"]  # the latest


def test_what_is_not_a_sweep_is_none_for_resume_and_one_line_for_compare(sweeps):
    uri, client, _, child = sweeps
    for name, why in ((child, "is not a sweep of experiment 'lookup'"), ("nosuchsweep", "no sweep or run")):
        assert sweep_lookup.find_parent(uri, "lookup", name, "") is None
        with pytest.raises(CompareError, match=why):
            sweep_lookup.find_sweep(client, "lookup", name)
    assert sweep_lookup.find_parent(uri, "lookup", None, "nosuchpreset") is None
    assert sweep_lookup.find_parent(uri, "nosuchexperiment", "aaa111", "") is None
