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

from pipeline import contract, store

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

    store.check(uri)  # an unusable store: one line, before MLflow touches it
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
    path = store.sqlite_path(uri)
    try:
        import fcntl
    except ImportError:
        path = None
    if path is None:
        yield
        return
    lock_file = Path(f"{path.resolve()}.lock")
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
    """Ends the active run; a failure's first line goes to the ``convlab.error`` tag, and a
    cluster job's scheduler output (submitit's stdout/stderr files) goes to ``scheduler/``."""
    from pipeline import scheduler

    for path in scheduler.job_log_files():
        with contextlib.suppress(Exception):
            mlflow.log_artifact(str(path), "scheduler")
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
    for attempt in range(3):
        try:
            return mlflow.log_input(dataset, context=context)
        except mlflow.exceptions.MlflowException as err:
            # Parallel jobs logging the same data set race to create its row in a SQL store
            # (MLflow checks, then inserts): the loser finds it there on a second try.
            duplicate = "UNIQUE constraint" in str(err) or "duplicate key" in str(err)
            if not duplicate or attempt == 2:
                raise
            time.sleep(0.2)


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

    MLflow 3 offers no working switch for it: ``Model.log`` reads a ``validate_serving_input``
    keyword, but passes it on to the TensorFlow flavor's ``save_model``, which refuses it. Where
    the helper is missing (another MLflow version) nothing is patched and the check runs.
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
