"""Everything convlab writes to MLflow. The only module that imports ``mlflow`` for writing.

A run is opened with ``run_context``: whatever happens inside, it ends FINISHED, FAILED
(with the error as the ``convlab.error`` tag) or KILLED on Ctrl-C, never left RUNNING.
"""

from __future__ import annotations

import contextlib
import io
import logging
import signal
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

from pipeline import contract

log = logging.getLogger(__name__)

MAX_KEY = 250  # MLflow's key length limit
MAX_VALUE = 6000  # MLflow's param value length limit


def get_or_create_experiment(uri: str, name: str) -> str:
    """The experiment's id, created on first use; safe when parallel jobs race to create it.

    The experiment carries ``mlflow.experimentKind=custom_model_development`` (set on creation,
    and added to an existing experiment that has no kind), so MLflow's UI opens it on its
    training runs rather than in the GenAI view.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from pipeline import contract

    with _sqlite_init_lock(uri):  # the first client in a process creates or migrates the store
        client = mlflow.MlflowClient(uri)
        client.search_experiments(max_results=1)
    for _ in range(3):
        found = client.get_experiment_by_name(name)
        if found is not None:
            if contract.EXPERIMENT_KIND not in found.tags:  # created before convlab set the kind
                client.set_experiment_tag(
                    found.experiment_id, contract.EXPERIMENT_KIND, contract.MODEL_TRAINING_KIND
                )
            return found.experiment_id
        with contextlib.suppress(MlflowException):  # another job created it first
            return client.create_experiment(
                name, tags={contract.EXPERIMENT_KIND: contract.MODEL_TRAINING_KIND}
            )
    raise RuntimeError(f"could not create MLflow experiment {name!r} at {uri}")


@contextlib.contextmanager
def _sqlite_init_lock(uri: str) -> Iterator[None]:
    """Serialises opening a SQLite store across processes.

    Two runs started at once on a new ``mlflow.db`` would both create its tables (MLflow's
    migrations are not safe to run concurrently); a lock file beside the database makes the
    second wait for the first. Other stores, and systems without ``fcntl``, need no lock.
    """
    path = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None
    try:
        import fcntl
    except ImportError:
        path = None
    if not path or path == ":memory:":
        yield
        return
    lock_file = Path(f"{Path(path).expanduser().resolve()}.lock")
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def run_context(uri: str, experiment_name: str, run_name: str, tags: Mapping[str, str]) -> Iterator:
    """Opens an MLflow run and guarantees it ends in a terminal state.

    ``tags`` may carry ``mlflow.parentRunId`` to nest the run under a sweep's parent run.
    SIGTERM (a scheduler cancelling the job) is treated like Ctrl-C: the run ends KILLED.
    """
    import mlflow

    mlflow.set_tracking_uri(uri)
    experiment_id = get_or_create_experiment(uri, experiment_name)
    run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags))
    previous = _sigterm_as_interrupt()
    try:
        yield run
    except KeyboardInterrupt:
        _end(mlflow, "KILLED", "interrupted (Ctrl-C or SIGTERM)")
        raise
    except BaseException as err:
        _end(mlflow, "FAILED", f"{type(err).__name__}: {err}")
        raise
    else:
        _end(mlflow, "FINISHED")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _end(mlflow, status: str, error: str | None = None) -> None:
    """Ends the active run; a failure's first line goes to the ``convlab.error`` tag."""
    if error:
        with contextlib.suppress(Exception):
            mlflow.set_tag(contract.ERROR, (error.splitlines() or [""])[0][:MAX_VALUE])
    mlflow.end_run(status)


def _sigterm_as_interrupt():
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        return None


def flatten(config: Mapping, prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}} -> {"a.b": "1"}``: a nested config as MLflow params."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        flat |= flatten(value, f"{name}.") if isinstance(value, Mapping) else {name: str(value)}
    return flat


def log_params(params: Mapping[str, str]) -> None:
    """Logs any number of params: MLflow batches them (100 a request) and truncates long values."""
    import mlflow

    mlflow.log_params(dict(params), synchronous=True)


def set_tags(tags: Mapping[str, str]) -> None:
    import mlflow

    mlflow.set_tags({k[:MAX_KEY]: str(v)[:MAX_VALUE] for k, v in tags.items()})


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def log_dataset(name: str, source: str, digest: str, features, targets, context: str) -> None:
    """Records a data set as an MLflow input (name, digest, source: a file, or the loader's name)."""
    import mlflow
    from mlflow.data.code_dataset_source import CodeDatasetSource

    found = Path(source).exists()
    origin = str(Path(source).resolve()) if found else CodeDatasetSource(tags={contract.LOADER: source})
    with warnings.catch_warnings():  # MLflow registers the local-file source twice and says so
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_numpy(features, targets=targets, name=name, digest=digest, source=origin)
    mlflow.log_input(dataset, context=context)


def log_artifacts(folder: str | Path, artifact_path: str) -> None:
    import mlflow

    if Path(folder).is_dir():
        mlflow.log_artifacts(str(folder), artifact_path)


def log_figure(figure, artifact_file: str) -> None:
    import matplotlib.pyplot as plt
    import mlflow

    mlflow.log_figure(figure, artifact_file)
    plt.close(figure)


def log_table(frame, artifact_file: str) -> None:
    import mlflow

    mlflow.log_table(frame, artifact_file)


def log_text(text: str, artifact_file: str) -> None:
    import mlflow

    mlflow.log_text(text, artifact_file)


def log_keras_model(model, input_example, probabilities, step: int) -> str:
    """Logs the model with a signature and input example; returns its ``models:/`` URI.

    MLflow copies onto the logged model the run's metrics logged at ``step`` (pass the last
    epoch's: the Models tab then ranks by the final metrics). Requirements are pinned from the
    installed versions: inferring them would load the model again in a subprocess (seconds).
    MLflow's served-input check (load the saved model again, predict the example) is skipped:
    ``probabilities`` are this very model's prediction on the example, made a moment ago, and
    the check cost 5 s of a 20 s transfer run (the tests load the logged model and predict).
    """
    from importlib.metadata import version

    import mlflow
    from mlflow.models import infer_signature

    # MLflow checks the logged model by predicting on the example: keep its progress bar quiet.
    with contextlib.redirect_stdout(io.StringIO()), _without_served_input_check():
        info = mlflow.tensorflow.log_model(
            model,
            name="model",
            signature=infer_signature(input_example, probabilities),
            input_example=input_example,
            step=step,
            pip_requirements=[f"tensorflow=={version('tensorflow')}", f"keras=={version('keras')}"],
        )
    return info.model_uri


@contextlib.contextmanager
def _without_served_input_check() -> Iterator[None]:
    """``mlflow.models.utils._validate_serving_input`` as a no-op while a model is logged.

    MLflow 3 offers no switch for it in ``log_model``; where the helper is missing (another
    MLflow version) nothing is patched and the check runs as before.
    """
    from mlflow.models import utils

    original = getattr(utils, "_validate_serving_input", None)
    if original is None:
        yield
        return
    utils._validate_serving_input = lambda model_uri, serving_input: None
    try:
        yield
    finally:
        utils._validate_serving_input = original


def epoch_logger(train_images: int):
    """MLflow's Keras callback with timing: loss, accuracy, val_*, epoch_seconds and images_per_second
    (training images over training time, validation excluded), one batch per epoch, step = epoch."""
    from mlflow.tensorflow import MlflowCallback

    class EpochLogger(MlflowCallback):
        def on_epoch_begin(self, epoch, logs=None):
            self._started = self._trained = time.perf_counter()

        def on_test_begin(self, logs=None):
            self._trained = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            train_seconds = (self._trained if self._trained > self._started else now) - self._started
            metrics = {k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"}
            metrics[contract.EPOCH_SECONDS] = now - self._started
            metrics[contract.IMAGES_PER_SECOND] = train_images / max(train_seconds, 1e-9)
            metrics[contract.HEARTBEAT] = time.time()  # resume tells a live run from a dead one
            log_metrics(metrics, step=epoch + 1)

        def on_test_end(self, logs=None):
            """val_* metrics already arrive with the epoch's logs."""

    return EpochLogger()


def log_artifacts_to(uri: str, run_id: str, folder: str | Path, artifact_path: str) -> None:
    """Logs a folder's files to a run that need not be active (a sweep's parent run)."""
    import mlflow

    mlflow.MlflowClient(uri).log_artifacts(run_id, str(folder), artifact_path)


# --- sweeps: the parent run is driven through the client, never made the active run, so
# --- jobs running in the same process can still open their own runs.
def start_parent_run(uri: str, experiment_name: str, run_name: str, tags: Mapping[str, str]) -> str:
    import mlflow

    experiment_id = get_or_create_experiment(uri, experiment_name)
    run = mlflow.MlflowClient(uri).create_run(experiment_id, run_name=run_name, tags=dict(tags))
    return run.info.run_id


def end_run(uri: str, run_id: str, status: str, error: str | None = None) -> None:
    """Ends a run that need not be active (a sweep's parent, a stale child) in ``status``."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    if error:
        client.set_tag(run_id, contract.ERROR, error[:MAX_VALUE])
    client.set_terminated(run_id, status)


def reopen_run(uri: str, run_id: str) -> None:
    """Sets an ended run RUNNING again: a resumed sweep's parent."""
    import mlflow

    mlflow.MlflowClient(uri).update_run(run_id, status=contract.RUNNING)


def run_tags(uri: str, run_id: str) -> dict[str, str]:
    import mlflow

    return dict(mlflow.MlflowClient(uri).get_run(run_id).data.tags)


def set_run_tags(uri: str, run_id: str, tags: Mapping[str, str]) -> None:
    import mlflow
    from mlflow.entities import RunTag

    items = [RunTag(k, str(v)) for k, v in tags.items()]
    mlflow.MlflowClient(uri).log_batch(run_id, tags=items, synchronous=True)


def log_metrics_to(uri: str, run_id: str, metrics: Mapping[str, float]) -> None:
    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k[:MAX_KEY], float(v), now, 0) for k, v in metrics.items()]
    mlflow.MlflowClient(uri).log_batch(run_id, metrics=items, synchronous=True)


def log_params_to(uri: str, run_id: str, params: Mapping[str, str]) -> None:
    import mlflow
    from mlflow.entities import Param

    items = [Param(k[:MAX_KEY], str(v)[:MAX_VALUE]) for k, v in params.items()]
    mlflow.MlflowClient(uri).log_batch(run_id, params=items, synchronous=True)


def log_text_to(uri: str, run_id: str, text: str, artifact_file: str) -> None:
    import mlflow

    mlflow.MlflowClient(uri).log_text(run_id, text, artifact_file)


def record_failed_run(uri: str, experiment_name: str, run_name: str, tags: Mapping[str, str]) -> str:
    """A run that failed before it could start training: created and ended FAILED at once."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment_id = get_or_create_experiment(uri, experiment_name)
    run = client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
    client.set_terminated(run.info.run_id, contract.FAILED)
    return run.info.run_id


def find_parent(
    uri: str, experiment_name: str, sweep_id: str | None, experiment: str
) -> tuple[str, str] | None:
    """``(sweep id, parent run id)`` of sweep ``sweep_id``, or of the latest sweep of preset
    ``experiment`` when ``sweep_id`` is None; None when there is no such sweep."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment_name)
    if found is None:
        return None
    query = f"tags.`{contract.ROLE}` = '{contract.ROLE_SWEEP}'"
    if sweep_id is not None:
        query += f" and tags.`{contract.SWEEP_ID}` = '{sweep_id}'"
    else:
        query += f" and tags.`{contract.EXPERIMENT}` = '{experiment}'"
    runs = client.search_runs(
        [found.experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1
    )
    if not runs and sweep_id is not None:  # a parent run id works too
        runs = [
            r
            for r in client.search_runs([found.experiment_id], query.split(" and ")[0])
            if r.info.run_id == sweep_id
        ]
    return (runs[0].data.tags[contract.SWEEP_ID], runs[0].info.run_id) if runs else None


def children(uri: str, parent_run_id: str) -> list[dict]:
    """Each child run of a sweep, oldest first: what resume and the summary need to know."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.{contract.PARENT} = '{parent_run_id}'",
        order_by=["attributes.start_time ASC"],
        max_results=50_000,
    )
    return [_child(r) for r in runs]


def _child(run) -> dict:
    tags = run.data.tags
    return {
        "run_id": run.info.run_id,
        "status": run.info.status,
        "start_time": run.info.start_time or 0,
        "variant": tags.get(contract.VARIANT, "?"),
        "seed": tags.get(contract.SEED, "?"),
        "error": tags.get(contract.ERROR, ""),
        "config_hash": tags.get(contract.CONFIG_HASH, ""),
        "host": tags.get(contract.HOST, ""),
        "pid": tags.get(contract.PID, ""),
        "process_start": tags.get(contract.PROCESS_START, ""),
        "heartbeat": run.data.metrics.get(contract.HEARTBEAT),
    }
