"""MLflow's UI as the place to compare a sweep: a saved view of its runs, grouped by variant.

MLflow 3.17's experiment page keeps named views as experiment tags
(``mlflow.sharedViewState.<key>``: a JSON envelope ``{name, createdAt, updatedAt, state}`` whose
``state`` is the page's own JSON: search facets plus UI state such as ``groupBy``) and opens one
from the URL parameter ``viewStateShareKey=<key>``; the view also appears in the page's list of
saved views. MLflow 3.17 picks its GenAI or model-training view by the sidebar's switch or the
``workflowType`` URL parameter, not by the ``mlflow.experimentKind`` tag, so every URL here asks
for the training view. ``sweep_view_url`` writes such a view for one sweep (its child runs,
grouped by the ``convlab.variant`` tag, best ``val_accuracy`` first) and returns its URL.

    from pipeline.tracking import ui
    print(ui.sweep_view_hint(tracking_uri, experiment_id, parent_run_id))
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pipeline.tracking import contract, redaction

DEFAULT_UI = "http://127.0.0.1:5000"  # where ``mlflow ui`` serves by default
RUN_NAME_COLUMN = "attributes.`Run Name`"  # the runs table's column id for run names


def view_key(parent_run_id: str) -> str:
    """The saved view's key: one per sweep, so saving it again replaces it."""
    return f"convlab-{parent_run_id}"


def view_state(parent_run_id: str) -> dict:
    """The experiment page's state: the sweep's jobs, grouped by variant (mean over seeds)."""
    columns = [f"metrics.`{name}`" for name in (contract.VAL_ACCURACY, contract.BEST_VAL_ACCURACY)]
    columns.append(f"tags.`{contract.SEED}`")  # the variant is the group's name
    return {
        "searchFilter": f"tags.`{contract.PARENT}` = '{parent_run_id}'",
        "orderByKey": f"metrics.`{contract.VAL_ACCURACY}`",
        "orderByAsc": False,
        "selectedColumns": columns,
        "groupBy": {
            "aggregateFunction": "average",
            "groupByKeys": [{"mode": "tag", "groupByData": contract.VARIANT}],
        },
        "groupsExpanded": {},
        # the run name wide enough for a variant's name (the group's label), the metrics next to it
        "columnOrder": [RUN_NAME_COLUMN, *columns],
        "columnWidths": {RUN_NAME_COLUMN: 400},
    }


def experiment_path(experiment_id: str) -> str:
    """The UI route (after the server's address) of an experiment's runs, in the training view."""
    return f"/#/experiments/{experiment_id}/runs?{contract.UI_WORKFLOW_PARAM}={contract.UI_WORKFLOW_TRAINING}"


def view_path(experiment_id: str, key: str) -> str:
    """The UI route that opens experiment ``experiment_id``'s runs on the saved view ``key``."""
    return f"{experiment_path(experiment_id)}&{contract.SAVED_VIEW_PARAM}={key}"


def ui_address(tracking_uri: str) -> str | None:
    """The UI's address for a tracking server (``http(s)://``); None for a store with no UI."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return None


def experiment_url(tracking_uri: str, experiment_id: str) -> str | None:
    """The URL of an experiment's runs on a tracking server; None for a store with no UI."""
    address = ui_address(tracking_uri)
    return None if address is None else f"{address}{experiment_path(experiment_id)}"


def save_sweep_view(tracking_uri: str, experiment_id: str, parent_run_id: str) -> str:
    """Writes the sweep's view to the experiment's tags; returns its key."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    run_name = client.get_run(parent_run_id).info.run_name or parent_run_id
    now = int(time.time() * 1000)
    envelope = {
        "name": f"{run_name}: runs by variant",
        "createdAt": now,
        "updatedAt": now,
        "state": json.dumps(view_state(parent_run_id)),
    }
    key = view_key(parent_run_id)
    client.set_experiment_tag(experiment_id, f"{contract.SAVED_VIEW_PREFIX}{key}", json.dumps(envelope))
    return key


def sweep_view_url(tracking_uri: str, experiment_id: str, parent_run_id: str) -> str | None:
    """Saves the sweep's view and returns the URL that opens it.

    Returns:
        The URL on a tracking server; None for a store with no UI of its own (SQLite, files),
        where ``sweep_view_hint`` says how to open it with ``mlflow ui``. The view is saved
        either way.
    """
    key = save_sweep_view(tracking_uri, experiment_id, parent_run_id)
    address = ui_address(tracking_uri)
    return None if address is None else f"{address}{view_path(experiment_id, key)}"


def sweep_view_hint(tracking_uri: str, experiment_id: str, parent_run_id: str) -> str:
    """One line for the terminal: the sweep view's URL, or how to serve the store and open it."""
    url = sweep_view_url(tracking_uri, experiment_id, parent_run_id)
    if url is not None:
        return f"MLflow: {url}"
    if tracking_uri.startswith("databricks"):
        return f"MLflow: experiment {experiment_id} in your Databricks workspace"
    path = view_path(experiment_id, view_key(parent_run_id))
    store = redaction.redact(_absolute(tracking_uri))  # a terminal line: the password stays yours
    return f"MLflow: mlflow ui --backend-store-uri {store}, then open {DEFAULT_UI}{path}"


def _absolute(tracking_uri: str) -> str:
    """``sqlite:///mlflow.db`` -> ``sqlite:////abs/dir/mlflow.db``: works from any folder."""
    if tracking_uri.startswith("sqlite:///") and tracking_uri != "sqlite:///:memory:":
        return f"sqlite:///{Path(tracking_uri.removeprefix('sqlite:///')).resolve()}"
    if "://" not in tracking_uri:  # a plain folder: MLflow's file store
        return str(Path(tracking_uri).resolve())
    return tracking_uri
