"""Where a study lives, and a trial's handle from inside the job that trains it.

A study (``hydra/sweeper=optuna``) keeps its trials in an Optuna storage that every job can
reach, chosen from the tracking store unless ``hydra.sweeper.storage`` names one:

- ``sqlite:///DIR/mlflow.db``: the journal file ``DIR/optuna.journal`` beside it (Optuna's
  storage for several processes on one machine: appends under a file lock);
- ``postgresql://...`` (MLflow straight on PostgreSQL): the same database, in a schema of its
  own (``convlab_optuna``: Optuna's tables and MLflow's never meet);
- an ``http(s)://`` team server: the server's PostgreSQL, named by ``$CONVLAB_STUDY_STORAGE``
  (``python -m pipeline.server`` prints the line to export), or ``hydra.sweeper.storage``.

A job learns its trial from ``hydra.job.env_set`` (``contract.ENV_STUDY``, ``ENV_STUDY_STORAGE``,
``ENV_TRIAL``), loads the study and reports each epoch's val_accuracy to it, so a median or
Hyperband pruner in any process sees every trial's curve. Imports Optuna only in functions.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

from pipeline.config.errors import ConfigError
from pipeline.tracking import contract, store

JOURNAL_FILE = "optuna.journal"
SCHEMA = "convlab_optuna"
PRUNER_ATTR = "convlab.pruner"  # the study's user attribute: {"kind", "startup_trials", "warmup_epochs"}
PRUNED_AT_ATTR = "convlab.pruned_at_epoch"  # a trial's user attribute, set by the job that pruned it
PRUNERS = ("median", "hyperband", "none")


def storage_for(tracking_uri: str, storage: str | None) -> str:
    """The study storage: ``storage`` if given, else the one that goes with the tracking store."""
    if storage:
        return storage
    path = store.sqlite_path(tracking_uri)
    if path is not None:
        return f"journal:{path.absolute().parent / JOURNAL_FILE}"
    if urlparse(tracking_uri).scheme.startswith("postgresql"):
        return tracking_uri
    if os.environ.get(contract.ENV_STUDY_STORAGE):  # a team server's database, exported once
        return os.environ[contract.ENV_STUDY_STORAGE]
    raise ConfigError(
        f"hydra.sweeper.storage: a study tracked at {store.redact(tracking_uri)} needs a storage every job "
        f"can reach: export {contract.ENV_STUDY_STORAGE}=postgresql://USER:PW@HOST/DB "
        "(python -m pipeline.server prints it) or set hydra.sweeper.storage"
    )


def open_storage(spec: str):
    """The Optuna storage ``spec`` names (``journal:PATH`` or a database URL); one line if it cannot open."""
    try:
        return _open(spec)
    except Exception as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"study storage {store.redact(spec)} cannot be opened: {reason}") from None


def _open(spec: str):
    import optuna

    if spec.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = spec.removeprefix("journal:")
        if not os.path.isdir(os.path.dirname(path) or "."):
            raise FileNotFoundError(f"no folder {os.path.dirname(path)}")
        return optuna.storages.JournalStorage(JournalFileBackend(path))
    engine: dict = {"pool_pre_ping": True}
    if spec.startswith("postgresql"):
        _create_schema(spec)
        engine["connect_args"] = {"options": f"-csearch_path={SCHEMA}", "connect_timeout": 10}
    elif spec.startswith("sqlite"):
        engine["connect_args"] = {"timeout": 60}  # jobs writing at once wait their turn
    return optuna.storages.RDBStorage(spec, engine_kwargs=engine)


def _create_schema(url: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 10})
    try:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
    finally:
        engine.dispose()


def make_pruner(kind: str, epochs: int, startup_trials: int = 5, warmup_epochs: int = 1):
    """Optuna's pruner for ``hydra.sweeper.pruner``; steps are epochs (1 = after the first)."""
    import optuna

    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    return optuna.pruners.NopPruner()


def current_trial(epochs: int):
    """This job's trial (an ``optuna.trial.Trial`` whose study has its pruner), or None outside a study."""
    number = os.environ.get(contract.ENV_TRIAL)
    name = os.environ.get(contract.ENV_STUDY)
    if not number or not name:
        return None
    import optuna

    storage = open_storage(os.environ[contract.ENV_STUDY_STORAGE])
    study = optuna.load_study(study_name=name, storage=storage)
    pruner = study.user_attrs.get(PRUNER_ATTR, {"kind": "none"})
    study.pruner = make_pruner(
        pruner["kind"], epochs, pruner.get("startup_trials", 5), pruner.get("warmup_epochs", 1)
    )
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, int(number))
    return optuna.trial.Trial(study, trial_id)


def trial_runs(uri: str, parent_run_id: str, metric: str = contract.VAL_ACCURACY) -> dict[int, dict]:
    """Each trial's latest child run of a study's parent: status, final ``metric``, pruned epoch."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    query = f"tags.`{contract.PARENT}` = '{parent_run_id}'"
    found: dict[int, dict] = {}
    for run in client.search_runs(
        [experiment_id], query, order_by=["attributes.start_time ASC"], max_results=50_000
    ):
        number = run.data.tags.get(contract.TRIAL)
        if number is None:
            continue
        found[int(number)] = {
            "run_id": run.info.run_id,
            "status": run.info.status,
            "value": run.data.metrics.get(metric),
            "pruned_at": run.data.tags.get(contract.PRUNED_AT_EPOCH),
        }
    return found
