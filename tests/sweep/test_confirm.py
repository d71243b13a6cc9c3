"""The confirm stage ends: a configuration whose job never finishes leaves it, said once."""

from __future__ import annotations

import logging
import types

import pytest
from conftest import write_child_run, write_sweep_run

from pipeline.config import overrides
from pipeline.sweep.search import confirm

KEY = "optimizer.learning_rate"
FINALS = {"0.001": [0.80, 0.84, 0.79, 0.85, 0.81], "0.002": [0.82, 0.80, 0.83, 0.79, 0.84]}  # noise
FAILS = "-1"  # its job fails every time


class Launcher:
    """Writes each job's run as a real job would (``sweeper.launch``), at most ``limit`` jobs."""

    def __init__(self, client, experiment_id, parent, limit=60):
        self.client, self.experiment_id, self.parent, self.limit = client, experiment_id, parent, limit
        self.jobs: list[tuple[str, str]] = []

    def launch(self, jobs):
        for job in jobs:
            values = overrides.values(job)
            value, seed = values[KEY], int(values["seed"])
            self.jobs.append((value, str(seed)))
            assert len(self.jobs) <= self.limit, "the confirm stage relaunches without end"
            if value == FAILS:
                write_child_run(
                    self.client, self.experiment_id, self.parent, {KEY: value}, seed, None, "NaN loss"
                )
            else:
                write_child_run(
                    self.client, self.experiment_id, self.parent, {KEY: value}, seed, FINALS[value][seed]
                )
        return []


def _study(values):
    import optuna

    study = optuna.create_study(direction="maximize")
    for rank, value in enumerate(values):
        attrs = {confirm.OVERRIDES_ATTR: [f"{KEY}={value}"]}
        study.add_trial(
            optuna.trial.create_trial(params={}, distributions={}, value=0.9 - rank / 10, user_attrs=attrs)
        )
    return study


def test_a_configuration_that_always_fails_leaves_the_confirmation_once(tmp_path, caplog):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment_id = client.create_experiment("confirm", artifact_location=str(tmp_path / "artifacts"))
    parent = write_sweep_run(client, experiment_id, [KEY], {}, 1)
    context = types.SimpleNamespace(uri=uri, parent=parent, experiment_name="confirm", metric="val_accuracy")
    space = types.SimpleNamespace(fixed={"seed": "seed=0"})
    launcher = Launcher(client, experiment_id, parent)

    with caplog.at_level(logging.WARNING, logger=confirm.__name__):
        verdict = confirm.confirm(
            launcher, _study([FAILS, "0.001", "0.002"]), space, context, [], top_k=3, seeds=5
        )

    assert [seed for value, seed in launcher.jobs if value == FAILS] == [
        "0",
        "1",
        "2",
    ]  # the first batch only
    assert len(launcher.jobs) == len(set(launcher.jobs))  # no job launched twice
    assert verdict.winner in (f"{KEY}=0.001", f"{KEY}=0.002")
    assert verdict.stopped[f"{KEY}={FAILS}"].startswith("left the confirmation")
    said = [r.getMessage() for r in caplog.records if "leaves the confirmation" in r.getMessage()]
    assert len(said) == 1 and FAILS in said[0]


def test_the_confirm_stage_says_so_when_no_configuration_finishes(tmp_path):
    import mlflow

    from pipeline.config.errors import ConvlabError

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment_id = client.create_experiment("confirm", artifact_location=str(tmp_path / "artifacts"))
    parent = write_sweep_run(client, experiment_id, [KEY], {}, 1)
    context = types.SimpleNamespace(uri=uri, parent=parent, experiment_name="confirm", metric="val_accuracy")
    launcher = Launcher(client, experiment_id, parent)
    space = types.SimpleNamespace(fixed={"seed": "seed=0"})

    with pytest.raises(ConvlabError, match="no confirmed configuration finished"):
        confirm.confirm(launcher, _study([FAILS]), space, context, [], top_k=1, seeds=5)
    assert len(launcher.jobs) == 3
