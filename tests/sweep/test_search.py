"""``hydra/sweeper=optuna``: real studies on digits, their trials as child runs, pruning, resume, confirm.

Studies are shared through session fixtures: each one runs once and several tests read it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import cli

from pipeline.tracking import contract

TINY = ["dataset.max_samples=300", "trainer.batch_size=64", "tracking.log_model=false"]
STUDY = ["hydra/sweeper=optuna", "hydra.sweeper.sampler.seed=0"]


class Study:
    """A study's command, its tracking store and what the runs say."""

    def __init__(self, uri: str, experiment: str, cwd, args: list[str]):
        self.uri, self.experiment, self.cwd = uri, experiment, cwd
        self.args = [*args, f"tracking.uri={uri}", f"tracking.experiment_name={experiment}"]

    def run(self, *extra: str, timeout: int = 900):
        return cli("-m", *self.args, *extra, cwd=self.cwd, timeout=timeout)

    def runs(self):
        import mlflow

        client = mlflow.MlflowClient(self.uri)
        found = client.get_experiment_by_name(self.experiment)
        return [] if found is None else client.search_runs([found.experiment_id], max_results=1000)

    def parent_and_trials(self):
        runs = self.runs()
        (parent,) = [r for r in runs if r.data.tags.get(contract.ROLE) == contract.ROLE_SWEEP]
        children = [r for r in runs if r.data.tags.get(contract.PARENT) == parent.info.run_id]
        trials = [r for r in children if contract.TRIAL in r.data.tags]
        return parent, trials, children

    def optuna_study(self):
        import optuna

        from pipeline.tracking import studies

        parent = self.parent_and_trials()[0]
        storage = studies.open_storage(studies.storage_for(self.uri, None))
        return optuna.load_study(study_name=parent.data.tags[contract.STUDY], storage=storage)


def _study(tmp_path_factory, tracking_uri, name: str, args: list[str]) -> Study:
    return Study(tracking_uri, name, tmp_path_factory.mktemp(name), args)


@pytest.fixture(scope="session")
def seeded_study(tmp_path_factory, tracking_uri):
    """The tune_digits preset shrunk: seeded TPE, 4 trials, the top 2 confirmed over 3 seeds."""
    study = _study(tmp_path_factory, tracking_uri, "study_seeded", [
        "experiment=tune_digits", "hydra.sweeper.n_trials=4", "hydra.sweeper.confirm.top_k=2",
        "hydra.sweeper.confirm.seeds=3", "trainer.epochs=2", *TINY,
    ])  # fmt: skip
    result = study.run()
    assert result.returncode == 0, result.stderr[-3000:]
    return study


@pytest.fixture(scope="session")
def parallel_pruned_study(tmp_path_factory, tracking_uri):
    """Two joblib workers, two trials at a time, a learning-rate range mostly too small or too
    large, median pruning from the third trial on: trials get pruned after their first epoch."""
    study = _study(tmp_path_factory, tracking_uri, "study_pruned", [
        *STUDY, "hydra/sweeper/sampler=random", "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=2",
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.pruner=median",
        "hydra.sweeper.pruner_startup_trials=2", "hydra.sweeper.pruner_warmup_epochs=0",
        "hydra.sweeper.confirm.top_k=0", "optimizer.learning_rate=tag(log, interval(1e-7, 30))",
        "trainer.epochs=4", *TINY,
    ])  # fmt: skip
    result = study.run()
    assert result.returncode == 0, result.stderr[-3000:]
    return study


@pytest.mark.slow
def test_a_seeded_tpe_study_finishes_n_trials_under_one_parent(seeded_study):
    parent, trials, children = seeded_study.parent_and_trials()
    assert parent.info.status == contract.FINISHED
    assert sorted(int(t.data.tags[contract.TRIAL]) for t in trials) == [0, 1, 2, 3]
    assert {t.info.status for t in children} == {contract.FINISHED}
    assert all(t.data.tags[contract.SEED] == "0" and t.info.run_name.endswith("seed=0") for t in trials)
    study = seeded_study.optuna_study()
    assert len(study.trials) == 4 and type(study.sampler).__name__ == "TPESampler"
    assert parent.data.metrics["study.trials"] == 4
    # the winner's values as params, the figures, the verdict as the description
    assert {k for k in parent.data.params if k.startswith("best.")} >= {"best.optimizer.learning_rate"}
    import mlflow

    client = mlflow.MlflowClient(seeded_study.uri)
    figures = {a.path for a in client.list_artifacts(parent.info.run_id, "figures")}
    assert figures == {f"figures/{n}.png" for n in ("optimization_history", "param_importances", "slice")}
    assert "**Winner**" in parent.data.tags[contract.NOTE]


@pytest.mark.slow
def test_the_confirm_verdict_is_what_compare_says_on_the_same_runs(seeded_study):
    from pipeline.compare import load

    parent, trials, children = seeded_study.parent_and_trials()
    confirmed = json.loads(parent.data.tags[contract.CONFIRMED])
    summary = load.summarize(seeded_study.experiment, parent.info.run_id, tracking_uri=seeded_study.uri)
    assert sorted(summary.variant) == sorted(confirmed) and len(confirmed) == 2
    winner = parent.data.tags[contract.BASELINE]
    assert summary.attrs["baseline"] == winner and summary.set_index("variant").n_seeds.min() >= 3
    note = parent.data.tags[contract.NOTE]
    for _, row in summary.iterrows():
        line = next(line for line in note.splitlines() if line.startswith(f"| {row.variant} |"))
        expected = {"baseline": "**winner**", "worse": "the winner beats it"}.get(row.verdict, "tied with")
        assert expected in line, (row.verdict, line)
    # each confirmed configuration ran over the same seeds; its trial counts as seed 0
    seeds = {c.data.tags[contract.SEED] for c in children if c.data.tags[contract.VARIANT] == winner}
    assert seeds == {"0", "1", "2"}


@pytest.mark.slow
def test_a_bad_learning_rate_range_gets_trials_pruned_before_their_last_epoch(parallel_pruned_study):
    import mlflow

    from pipeline.compare import load

    parent, trials, _ = parallel_pruned_study.parent_and_trials()
    pruned = [t for t in trials if contract.PRUNED_AT_EPOCH in t.data.tags]
    assert pruned and all(int(t.data.tags[contract.PRUNED_AT_EPOCH]) < 4 for t in pruned)
    client = mlflow.MlflowClient(parallel_pruned_study.uri)
    for run in pruned:  # it stopped training at that epoch
        steps = [m.step for m in client.get_metric_history(run.info.run_id, contract.VAL_ACCURACY)]
        assert max(steps) == int(run.data.tags[contract.PRUNED_AT_EPOCH])
    states = [t.state.name for t in parallel_pruned_study.optuna_study().trials]
    assert states.count("PRUNED") == len(pruned)
    assert parent.data.metrics["study.epochs_saved"] == sum(
        4 - int(t.data.tags[contract.PRUNED_AT_EPOCH]) for t in pruned
    )
    counted = load.load_runs(parallel_pruned_study.experiment, parent.info.run_id, parallel_pruned_study.uri)
    assert not set(counted.run_id) & {t.info.run_id for t in pruned}  # never a finished run in a comparison


@pytest.mark.slow
def test_joblib_trials_two_at_a_time_share_one_study(parallel_pruned_study):
    parent, trials, _ = parallel_pruned_study.parent_and_trials()
    assert sorted(int(t.data.tags[contract.TRIAL]) for t in trials) == list(range(6))
    assert len({t.data.tags[contract.PID] for t in trials}) >= 2  # two worker processes
    study = parallel_pruned_study.optuna_study()
    assert len(study.trials) == 6 and parent.data.tags[contract.STUDY] == study.study_name
    assert {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_a_free_worker_starts_the_next_trial_before_the_batch_ends(tmp_path_factory, tracking_uri, launcher):
    """Trials of 30 and 1 epochs side by side (the sampler, seeded 2, draws 30, 1, 2): the third
    trial is asked (and launched) as soon as the short one ends, before the long one has; on
    joblib's warm workers its run even starts before."""
    study = _study(tmp_path_factory, tracking_uri, f"study_free_{launcher}", [
        "hydra/sweeper=optuna", "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=2",
        "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2", f"hydra/launcher={launcher}",
        "hydra.sweeper.confirm.top_k=0", "trainer.epochs=choice(1, 2, 30)", *TINY,
        *(["hydra.launcher.n_jobs=2"] if launcher == "joblib" else []),
    ])  # fmt: skip
    result = study.run()
    assert result.returncode == 0, result.stderr[-3000:]
    _, trials, _ = study.parent_and_trials()
    by_number = {int(t.data.tags[contract.TRIAL]): t for t in trials}
    epochs = [int(by_number[n].data.params["trainer.epochs"]) for n in range(3)]
    assert epochs == [30, 1, 2], epochs
    long_end = by_number[0].info.end_time / 1000
    asked = study.optuna_study().trials[2].datetime_start.timestamp()  # Optuna's clock: local time
    assert by_number[1].info.end_time / 1000 < asked < long_end, "the third trial waited for the batch"
    if launcher == "joblib":  # a new process (submitit) takes longer to start than 28 epochs here
        assert by_number[2].info.start_time / 1000 < long_end
    folders = {p.parent.parent.name for p in study.cwd.glob("multirun/*/*/*/.hydra/overrides.yaml")}
    assert folders == {"0", "1", "2"}  # every trial its own job number and folder


@pytest.mark.slow
def test_a_killed_study_resumes_to_exactly_n_trials_with_nothing_rerun(tmp_path_factory, tracking_uri):
    import mlflow

    study = _study(tmp_path_factory, tracking_uri, "study_killed", [
        *STUDY, "hydra.sweeper.n_trials=4", "hydra.sweeper.confirm.top_k=0", "trainer.epochs=3",
        "optimizer.learning_rate=tag(log, interval(1e-4, 1e-1))", *TINY,
    ])  # fmt: skip
    command = [sys.executable, "-m", "pipeline", "-m", *study.args]
    process = subprocess.Popen(command, cwd=study.cwd, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip

    def one_finished_one_training():
        statuses = [r.info.status for r in study.runs() if contract.TRIAL in r.data.tags]
        return statuses.count(contract.FINISHED) >= 1 and contract.RUNNING in statuses

    deadline = time.time() + 600
    while not one_finished_one_training():
        assert time.time() < deadline and process.poll() is None, "the study ended before it was killed"
        time.sleep(0.3)
    os.killpg(process.pid, signal.SIGKILL)  # a lost node: nothing gets to clean up
    process.wait(timeout=30)
    first = {r.info.run_id for r in study.runs() if r.info.status == contract.FINISHED}
    (killed,) = [c.info.run_id for c in study.parent_and_trials()[2] if c.info.status == contract.RUNNING]
    # the killed trial's run goes on in the same run (from its checkpoint, or from the start when it
    # logged no epoch), for the trial that reruns its values; else a new run and it stays KILLED
    logged = mlflow.MlflowClient(study.uri).get_metric_history(killed, contract.VAL_ACCURACY)
    continued = (study.cwd / ".convlab" / "checkpoints" / killed / "state.json").exists() or not logged

    resumed = study.run("sweep.resume=last")
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-4000:]
    parent, trials, children = study.parent_and_trials()
    finished = [t for t in trials if t.info.status == contract.FINISHED]
    assert len(finished) == 4 and parent.info.status == contract.FINISHED
    assert first <= {t.info.run_id for t in finished}  # what had finished did not run again
    left = [(c.info.run_id, c.info.status) for c in children if c.info.status != contract.FINISHED]
    if continued:
        assert f"resuming run {killed}" in resumed.stdout + resumed.stderr
        assert killed in {t.info.run_id for t in finished} and left == [] and len(children) == 4
    else:
        assert left == [(killed, contract.KILLED)]
    optuna_trials = study.optuna_study().trials
    states = [t.state.name for t in optuna_trials]
    assert (
        states.count("COMPLETE") + states.count("PRUNED") == 4 and states.count("FAIL") == 1
    )  # the lost one
    # one run per trial that counts, none for the lost one: the continued run is its rerun's
    counted = sorted(t.number for t in optuna_trials if t.state.name in ("COMPLETE", "PRUNED"))
    assert sorted(int(t.data.tags[contract.TRIAL]) for t in finished) == counted
    for run in finished:  # every epoch once, the continued run's too
        history = mlflow.MlflowClient(study.uri).get_metric_history(run.info.run_id, contract.VAL_ACCURACY)
        last = int(run.data.tags.get(contract.PRUNED_AT_EPOCH, 3))  # trainer.epochs=3
        assert sorted(m.step for m in history) == list(range(1, last + 1))
    variant = mlflow.MlflowClient(study.uri).get_run(killed).data.tags[contract.VARIANT]
    rerun = [t for t in finished if t.data.tags[contract.VARIANT] == variant]
    assert len(rerun) == 1  # its slot ran again, with the same values


def test_hydra_discovers_the_sweeper_as_a_plugin():
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    found = {f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover(Sweeper)}
    assert "hydra_plugins.convlab_optuna_sweeper.optuna_sweeper.OptunaSweeper" in found


@pytest.mark.parametrize("sampler", ["tpe", "random", "grid", "cmaes", "qmc"])
def test_every_sampler_is_optunas_own(sampler):
    import optuna
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from pipeline.config import composition

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(composition.CONF_DIR)):
        lines = ["hydra/sweeper=optuna", f"hydra/sweeper/sampler={sampler}", "hydra.sweeper.sampler.seed=3"]
        cfg = compose("config", overrides=lines, return_hydra_config=True)
    built = instantiate(cfg.hydra.sweeper.sampler)
    if sampler == "grid":  # built once the search space is known
        built = built({"backbone.filters": [8, 16]})
    assert isinstance(built, optuna.samplers.BaseSampler) and sampler in type(built).__name__.lower()


def test_the_search_space_syntax_is_hydras():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from pipeline.sweep.search import space

    found = space.parse([
        "optimizer.learning_rate=tag(log, interval(1e-4, 1e-1))", "backbone.conv_layers=int(interval(1, 3))",
        "regularization.rate=interval(0.1, 0.5)", "backbone.kernel_size=choice([3,3],[5,5])",
        "head.units=range(32, 257, 32)", "seed=0", "backbone.filters=choice(8, 16, 32)",
        "backbone.filters=choice(8, 16)",  # a later line wins, as the command line over a preset
    ])  # fmt: skip
    assert found.distributions() == {
        "optimizer.learning_rate": FloatDistribution(1e-4, 0.1, log=True),
        "backbone.conv_layers": IntDistribution(1, 3),
        "regularization.rate": FloatDistribution(0.1, 0.5),
        "backbone.kernel_size": CategoricalDistribution(["[3,3]", "[5,5]"]),
        "head.units": IntDistribution(32, 256, step=32),
        "backbone.filters": CategoricalDistribution([8, 16]),
    }
    assert found.fixed == {"seed": "seed=0"}
    values = {"optimizer.learning_rate": 0.0012345678, "backbone.kernel_size": "[5,5]"}
    assert found.overrides(values) == [
        "seed=0",
        "optimizer.learning_rate=0.001235",
        "backbone.kernel_size=[5,5]",
    ]


BAD = [
    (["optimizer.learning_rate=interval(0.1, 0.01)"], "needs low below high"),
    (["optimizer.learning_rate=tag(log, interval(0, 0.1))"], "needs low above 0"),
    (["optimizer.learnin_rate=interval(0.001, 0.1)"], "no such config key"),
    (["regularization=dropout", "regularization.rate=choice(0.2, 1.5)"], "regularization.rate=1.5"),
    (["downsample=choice(stride, avgpool)"], "not an option"),
    (["backbone.filters=choice(8)", "hydra.sweeper.pruner=average"], "hydra.sweeper.pruner='average'"),
    (
        ["backbone.filters=choice(8,16)", "hydra.sweeper.storage=sqlite:////no/such/folder/optuna.db"],
        "cannot be opened",
    ),
    (
        [
            "backbone.filters=choice(8,16)",
            "hydra/sweeper/sampler=grid",
            "optimizer.learning_rate=interval(0.001, 0.1)",
        ],
        "needs discrete values",
    ),
    (["trainer.epochs=1"], "the search space is empty"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[m for _, m in BAD])
def test_a_bad_search_space_is_one_line_before_anything_runs(args, message, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = cli("-m", "hydra/sweeper=optuna", *args, f"tracking.uri={uri}", cwd=tmp_path, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("convlab: ") and message in lines[0], result.stderr[-2000:]
    assert "Launching" not in result.stdout and not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_the_transfer_preset_searches_a_frozen_backbones_head(tmp_path_factory, tracking_uri):
    from conftest import write_image_folder

    folder = tmp_path_factory.mktemp("images")
    root = write_image_folder(folder / "images", per_class=6)
    study = _study(tmp_path_factory, tracking_uri, "study_transfer", [
        "experiment=tune_transfer", f"dataset.path={root}", "backbone=mobilenet_v2", "backbone.alpha=0.35",
        "backbone.weights=null", "backbone.input_size=[32,32]", "hydra.sweeper.n_trials=2",
        "hydra.sweeper.confirm.top_k=0", "trainer.epochs=1",
    ])  # fmt: skip
    result = study.run()
    assert result.returncode == 0, result.stderr[-3000:]
    parent, trials, _ = study.parent_and_trials()
    assert len(trials) == 2 and {t.info.status for t in trials} == {contract.FINISHED}
    assert {t.data.tags[contract.group_tag("backbone")] for t in trials} == {"mobilenet_v2"}


@pytest.mark.slow
def test_the_folder_preset_searches_a_scratch_cnn_and_its_schedule(tmp_path_factory, tracking_uri):
    from conftest import write_image_folder

    root = write_image_folder(tmp_path_factory.mktemp("photos") / "images", per_class=6)
    study = _study(tmp_path_factory, tracking_uri, "study_folder", [
        "experiment=tune_folder", f"dataset.path={root}", "hydra.sweeper.n_trials=3",
        "hydra.sweeper.confirm.top_k=0", "trainer.epochs=2",
    ])  # fmt: skip
    result = study.run()
    assert result.returncode == 0, result.stderr[-3000:]
    parent, trials, _ = study.parent_and_trials()
    assert len(trials) == 3 and {t.info.status for t in trials} == {contract.FINISHED}
    assert {t.data.tags[contract.group_tag("backbone")] for t in trials} == {"scratch_cnn"}
    searched = {"constant", "cosine", "step", "plateau"}
    assert {t.data.tags[contract.group_tag("schedule")] for t in trials} <= searched
    assert all(contract.LEARNING_RATE in t.data.metrics for t in trials)


@pytest.mark.server
@pytest.mark.slow
def test_a_study_on_the_team_server_and_its_resume(team_server, tmp_path, monkeypatch):
    """Tracked to the PostgreSQL-backed server, the study in the same PostgreSQL: trials in two
    worker processes, then a resume that takes the study from 2 trials to 3."""
    import mlflow
    import optuna

    from pipeline.tracking import studies

    url, database = team_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv(contract.ENV_STUDY_STORAGE, database.uri)  # what python -m pipeline.server prints
    previous = mlflow.get_tracking_uri()  # in-process runs of other tests set MLflow's URI
    mlflow.set_tracking_uri(url)
    try:
        study = Study(url, "server_study", tmp_path, [
            *STUDY, "hydra.sweeper.confirm.top_k=0", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
            "hydra.sweeper.n_jobs=2", "optimizer.learning_rate=tag(log, interval(1e-4, 1e-1))",
            "trainer.epochs=1", "dataset.max_samples=200", "tracking.log_model=false",
        ])  # fmt: skip
        first = study.run("hydra.sweeper.n_trials=2")
        assert first.returncode == 0, first.stderr[-3000:]
        parent, trials, _ = study.parent_and_trials()
        assert len(trials) == 2 and parent.data.tags[contract.STUDY_STORAGE].startswith("postgresql")
        assert f":{database.password}@" not in parent.data.tags[contract.STUDY_STORAGE]  # redacted

        resumed = study.run("hydra.sweeper.n_trials=3", "sweep.resume=last")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        again, trials_again, _ = study.parent_and_trials()
        assert again.info.run_id == parent.info.run_id and again.info.status == contract.FINISHED
        assert sorted(int(t.data.tags[contract.TRIAL]) for t in trials_again) == [0, 1, 2]
        assert {t.info.run_id for t in trials} <= {t.info.run_id for t in trials_again}
        on_postgres = optuna.load_study(
            study_name=parent.data.tags[contract.STUDY], storage=studies.open_storage(database.uri)
        )
        assert [t.state.name for t in on_postgres.trials] == ["COMPLETE"] * 3
    finally:
        mlflow.set_tracking_uri(previous)
