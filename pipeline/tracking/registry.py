"""MLflow's Model Registry: a run's logged model registered as a version, and model URIs resolved.

    from pipeline.tracking import registry
    version = registry.register(uri, run_id, "digits-cnn", description, tags)   # alias "champion"
    spec = registry.model_spec(uri, "models:/digits-cnn@champion")              # shape, classes

The registry lives in the tracking store itself (SQLite, or the team server), so every call
takes the tracking URI. Bad input is a ``ModelError`` with one line: an unknown registered model
name, an alias or version it does not have, a run that does not exist or logged no model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Iterator, Mapping

from pipeline.config.errors import ConvlabError
from pipeline.tracking import contract, redaction


class ModelError(ConvlabError):
    """A model URI, registered model, alias or run that does not give a model."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a logged model takes and gives: read from its MLmodel file, without TensorFlow."""

    uri: str  # the URI it was found by (models:/NAME@ALIAS, models:/NAME/3, runs:/ID/model, ...)
    model_id: str | None  # the logged model's id (MLflow 3), when known
    shape: tuple[int, int, int]  # one image: height, width, channels
    classes: list[str]  # class names in the order of the output probabilities


def client(uri: str):
    """An ``MlflowClient`` whose registry is the tracking store itself."""
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def logged_model_id(uri: str, run_id: str) -> str:
    """The id of the model ``run_id`` logged (its latest, if several)."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client(uri)
    try:
        run = mlflow_client.get_run(run_id)
    except MlflowException:
        raise ModelError(f"no run {run_id!r} in the store at {uri}") from None
    found = mlflow_client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}'",
        order_by=[{"field_name": "creation_time", "ascending": False}],
        max_results=1,
    )
    if not found:
        raise ModelError(
            f"run {run_id} ({run.info.run_name}) has no logged model "
            "(it ran with tracking.log_model=false, or ended before logging one)"
        )
    return found[0].model_id


def version_of(uri: str, name: str, run_id: str):
    """The version of ``name`` that already holds ``run_id``'s model (the oldest), or None."""
    from mlflow.exceptions import MlflowException

    try:
        found = client(uri).search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except MlflowException:  # no such registered model yet
        return None
    return min(found, key=lambda version: int(version.version), default=None)


def register(
    uri: str,
    run_id: str,
    name: str,
    description: str,
    tags: Mapping[str, str],
    alias: str = contract.CHAMPION,
):
    """Registers ``run_id``'s logged model as a new version of ``name`` (created on first use),
    with ``description``, ``tags`` and ``alias`` (moved from any earlier version). Returns the
    ``ModelVersion``."""
    from mlflow.exceptions import MlflowException

    model_id = logged_model_id(uri, run_id)
    mlflow_client = client(uri)
    try:
        mlflow_client.get_registered_model(name)
    except MlflowException:
        try:
            mlflow_client.create_registered_model(name)
        except MlflowException as err:  # another process created it first, or a bad name
            if "already exists" not in str(err).lower():
                raise ModelError(f"cannot register a model named {name!r}: {_first_line(err)}") from None
    with using(uri):  # MLflow resolves the version's source (models:/m-...) in the global store
        version = mlflow_client.create_model_version(
            name,
            source=f"models:/{model_id}",
            run_id=run_id,
            tags=redaction.redact_values(tags),
            description=redaction.redact(description),
            model_id=model_id,
        )
    mlflow_client.set_registered_model_alias(name, alias, version.version)
    return mlflow_client.get_model_version(name, version.version)


def model_spec(uri: str, model_uri: str) -> ModelSpec:
    """The input shape and class names of the model at ``model_uri``; one line if there is none.

    Reads the model's MLmodel file (its signature and metadata), not the model itself, so it
    answers before TensorFlow loads. Models logged before class names were recorded get
    ``"0"``, ``"1"``, ... as names.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    model_id = _check_exists(uri, model_uri)
    _quiet_downloads()
    try:
        with using(uri):
            info = mlflow.models.get_model_info(model_uri)
    except (MlflowException, OSError) as err:
        raise ModelError(f"predict.model={model_uri}: {_first_line(err)}") from None
    inputs = info.signature.inputs.to_dict()[0] if info.signature else {}
    outputs = info.signature.outputs.to_dict()[0] if info.signature and info.signature.outputs else {}
    shape = inputs.get("tensor-spec", {}).get("shape", [])
    if len(shape) != 4:
        raise ModelError(f"predict.model={model_uri}: not an image classifier logged by convlab")
    classes = (info.metadata or {}).get(contract.CLASSES_METADATA)
    if classes is None:
        count = outputs.get("tensor-spec", {}).get("shape", [-1, 0])[-1]
        classes = [str(index) for index in range(max(count, 0))]
    return ModelSpec(model_uri, model_id or info.model_id, tuple(shape[1:]), [str(c) for c in classes])


def load_pyfunc(uri: str, model_uri: str):
    """The model at ``model_uri`` as MLflow's pyfunc (what ``mlflow models serve`` serves)."""
    import mlflow

    _quiet_downloads()
    with using(uri):
        return mlflow.pyfunc.load_model(model_uri)


@contextlib.contextmanager
def using(uri: str) -> Iterator[None]:
    """MLflow's process-wide tracking and registry URIs set to ``uri`` for the block, then put back
    (``kept_uris``): the calls that only read the global URIs (resolving ``models:/...``, loading
    a model) read this store, and nothing after them is sent to it (an ``MlflowClient(other_uri)``
    takes the global registry URI, when one is set, over its own tracking URI)."""
    import mlflow

    with kept_uris():
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        yield


URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")  # what mlflow.set_*_uri also write


@contextlib.contextmanager
def kept_uris() -> Iterator[None]:
    """MLflow's process-wide tracking and registry URIs, and the variables ``mlflow.set_*_uri``
    write (which the processes started later inherit), as they were before the block. Without
    importing MLflow where it is not imported yet (then both URIs were unset)."""
    environ = {name: os.environ.get(name) for name in URI_VARIABLES}
    before = _set_uris()
    try:
        yield
    finally:
        if "mlflow" in sys.modules:
            import mlflow
            from mlflow.tracking._model_registry import utils as registry_utils

            mlflow.set_tracking_uri(before[0])  # None: MLflow's default again
            registry_utils._registry_uri = before[1]  # (set_registry_uri(None) keeps its variable)
        for name, value in environ.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _set_uris() -> tuple[str | None, str | None]:
    """The tracking and registry URIs set in this process (``mlflow.set_*_uri``), else None: MLflow
    keeps them private (``get_tracking_uri`` answers with the variable or the default instead)."""
    if "mlflow" not in sys.modules:
        return None, None
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    return tracking_utils._tracking_uri, registry_utils._registry_uri


def _quiet_downloads() -> None:
    """No progress bars for the model's files (``$MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR`` still wins)."""
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

    if not MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.is_set():
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.set(False)


def _check_exists(uri: str, model_uri: str) -> str | None:
    """One line for an unknown name, alias, version or run; returns the logged model's id."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client(uri)
    if model_uri.startswith("runs:/"):
        run_id = model_uri.removeprefix("runs:/").split("/", 1)[0]
        return logged_model_id(uri, run_id)
    if not model_uri.startswith("models:/"):
        raise ModelError(
            f"predict.model={model_uri}: expected models:/NAME@ALIAS, models:/NAME/VERSION, "
            "models:/MODEL_ID or runs:/RUN_ID/model"
        )
    path = model_uri.removeprefix("models:/")
    if path.startswith("m-") and "/" not in path and "@" not in path:  # a logged model's id
        try:
            return client(uri).get_logged_model(path).model_id
        except MlflowException:
            raise ModelError(f"predict.model={model_uri}: no logged model {path} in {uri}") from None
    name, alias, version = _split(path)
    try:
        registered = mlflow_client.get_registered_model(name)
    except MlflowException:
        known = [model.name for model in mlflow_client.search_registered_models(max_results=20)]
        listed = ", ".join(known) if known else "none yet"
        raise ModelError(
            f"predict.model={model_uri}: no registered model {name!r} (registered: {listed})"
        ) from None
    try:
        if alias is not None:
            found = mlflow_client.get_model_version_by_alias(name, alias)
        else:
            found = mlflow_client.get_model_version(name, version)
    except MlflowException:
        what = f"alias {alias!r}" if alias is not None else f"version {version}"
        aliases = ", ".join(sorted(registered.aliases)) or "none"
        raise ModelError(
            f"predict.model={model_uri}: model {name!r} has no {what} (aliases: {aliases})"
        ) from None
    return found.model_id


def _split(path: str) -> tuple[str, str | None, str | None]:
    """``NAME@ALIAS`` or ``NAME/VERSION``."""
    if "@" in path:
        name, alias = path.split("@", 1)
        return name, alias, None
    name, _, version = path.partition("/")
    if not version:
        raise ModelError(f"models:/{path}: name a version or an alias (models:/{name}@champion)")
    return name, None, version


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
