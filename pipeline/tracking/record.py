"""Everything convlab writes to MLflow. The only module that imports ``mlflow`` for writing.

A run is opened with ``lifecycle.run_context``: whatever happens inside, it ends FINISHED,
FAILED (with the error as the ``convlab.error`` tag) or KILLED on Ctrl-C, never left RUNNING.
Logging calls made while that run is still being opened in the background are queued by
``lifecycle`` and made, in order, once it is open (``@_deferrable``). Those whose answer nobody
needs (``@_queueable``: metrics, tags, params) are queued while the tracking server does not
answer, and training goes on (``backlog``).
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

from pipeline.tracking import backlog, contract, lifecycle, redaction

log = logging.getLogger(__name__)


def _deferrable(function):
    """A logging call that waits in ``lifecycle``'s queue while the run is still being opened."""

    @functools.wraps(function)
    def call(*args, **kwargs):
        return lifecycle.call(function, args, kwargs)

    return call


def _queueable(as_batch):
    """A deferrable call whose answer nobody needs: ``as_batch(*args, **kwargs)`` is what it
    writes, sent later by ``backlog`` while the server is down (training goes on meanwhile)."""

    def wrap(function):
        @functools.wraps(function)
        def call(*args, **kwargs):
            return lifecycle.call(function, args, kwargs, as_batch(*args, **kwargs))

        return call

    return wrap


def flatten(config: Mapping, prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}} -> {"a.b": "1"}``: a nested config as MLflow params."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        flat |= flatten(value, f"{name}.") if isinstance(value, Mapping) else {name: str(value)}
    return flat


@_queueable(lambda params: backlog.Batch(params=redaction.redact_values(params)))
def log_params(params: Mapping[str, str]) -> None:
    """Logs any number of params, redacted: MLflow batches them (100 a request) and truncates long values."""
    import mlflow

    mlflow.log_params(redaction.redact_values(params), synchronous=True)


def _short(tags: Mapping[str, str]) -> dict[str, str]:
    """Tags redacted, then cut to MLflow's lengths."""
    return {k[: contract.MAX_KEY]: v[: contract.MAX_VALUE] for k, v in redaction.redact_values(tags).items()}


@_queueable(lambda tags: backlog.Batch(tags=_short(tags)))
def set_tags(tags: Mapping[str, str]) -> None:
    import mlflow

    mlflow.set_tags(_short(tags))


@_queueable(
    lambda metrics, step=None: backlog.Batch(metrics={k: float(v) for k, v in metrics.items()}, step=step)
)
def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


@_deferrable
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


@_deferrable
def log_artifacts(folder: str | Path, artifact_path: str) -> None:
    """Logs a folder's files; its text files (``.hydra/``'s records) are redacted in place first."""
    import mlflow

    redaction.redact_files(folder)
    if Path(folder).is_dir():
        mlflow.log_artifacts(str(folder), artifact_path)


@_deferrable
def log_figure(figure, artifact_file: str) -> None:
    import matplotlib.pyplot as plt
    import mlflow

    mlflow.log_figure(figure, artifact_file)
    plt.close(figure)


@_deferrable
def log_table(frame, artifact_file: str) -> None:
    import mlflow

    mlflow.log_table(frame, artifact_file)


@_deferrable
def log_text(text: str, artifact_file: str) -> None:
    import mlflow

    mlflow.log_text(redaction.redact(text), artifact_file)


def log_keras_model(model, input_example, probabilities, step: int, class_names=None) -> str:
    """Logs the model with a signature and input example; returns its ``models:/`` URI.

    ``class_names`` (in the order of the model's outputs) go into the model's metadata
    (``contract.CLASSES_METADATA``), so whoever loads, serves or registers it can name a class.

    MLflow copies onto the logged model the run's metrics logged at ``step`` (pass the last
    epoch's: the Models tab then ranks by the final metrics). Requirements are pinned from the
    installed versions: inferring them would load the model again in a subprocess (seconds).
    Two MLflow checks that cannot fail here are skipped (``_without_redundant_checks``): the
    served-input check cost 5 s of a 20 s transfer run, the requirements check 1 to 2.5 s.
    The tests load the logged model and predict.
    """
    from importlib.metadata import version

    import mlflow
    from mlflow.models import infer_signature

    lifecycle.settle()  # the model is logged to the open run, after what an outage queued

    # MLflow checks the logged model by predicting on the example: keep its progress bar quiet.
    with contextlib.redirect_stdout(io.StringIO()), _without_redundant_checks():
        info = mlflow.tensorflow.log_model(
            model,
            name="model",
            signature=infer_signature(input_example, probabilities),
            input_example=input_example,
            step=step,
            pip_requirements=[f"tensorflow=={version('tensorflow')}", f"keras=={version('keras')}"],
            metadata={contract.CLASSES_METADATA: list(class_names)} if class_names is not None else None,
        )
    return info.model_uri


@contextlib.contextmanager
def _without_redundant_checks() -> Iterator[None]:
    """Two checks MLflow makes while logging a model, as no-ops; both cannot fail here.

    - ``mlflow.models.utils._validate_serving_input`` loads the saved model again and predicts
      the example: the probabilities passed in are this very model's prediction on it. MLflow 3
      offers no working switch: ``Model.log`` reads a ``validate_serving_input`` keyword but
      passes it on to the TensorFlow flavor's ``save_model``, which refuses it.
    - ``mlflow.utils.environment.warn_dependency_requirement_mismatches`` maps every installed
      file to its package (1 to 2.5 s, once per process) to compare the requirements with the
      installed versions: they are pinned from the installed versions.

    Where a helper is missing (another MLflow version) it is not patched and its check runs.
    """
    from mlflow.models import utils
    from mlflow.utils import environment

    patches = [
        (utils, "_validate_serving_input", lambda model_uri, serving_input: None),
        (environment, "warn_dependency_requirement_mismatches", lambda requirements: None),
    ]
    originals = [
        (module, name, getattr(module, name)) for module, name, _ in patches if hasattr(module, name)
    ]
    for module, name, replacement in patches:
        if hasattr(module, name):
            setattr(module, name, replacement)
    try:
        yield
    finally:
        for module, name, original in originals:
            setattr(module, name, original)
