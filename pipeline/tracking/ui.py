"""MLflow's UI as the place to compare a sweep: a saved view of its runs, grouped by variant.

MLflow 3.17's experiment page keeps named views as experiment tags
(``mlflow.sharedViewState.<key>``: a JSON envelope ``{name, createdAt, updatedAt, state}`` whose
``state`` is the page's own JSON: search facets plus UI state such as ``groupBy``) and opens one
from the URL parameter ``viewStateShareKey=<key>``; the view also appears in the page's list of
saved views. MLflow 3.17 picks its GenAI or model-training view by the sidebar's switch or the
``workflowType`` URL parameter, not by the ``mlflow.experimentKind`` tag, so every URL here asks
for the training view. ``sweep_view_url`` writes such a view for one sweep (its child runs,
grouped by the ``convlab.variant`` tag, best ``val_accuracy`` first) and returns its URL.

MLflow 3.18 reads the workflow from that URL parameter, else from the browser's own choice
(localStorage ``mlflow.workflowType_v1``, GenAI until the user flips the switch); the
``mlflow.experimentKind`` tag convlab sets on its experiments is read only with that workflow
navigation off, which 3.18 hard-codes on. So on a plain ``mlflow server`` an experiment's bare
URL opens MLflow's trace onboarding (``python -m pipeline.ui``'s server sets the browser's
default: ``pipeline/ui.py``). The links convlab prints (a sweep's view, a single run's page
``run_hint``, ``python -m pipeline.ui``'s) all carry ``workflowType=machine_learning``.

The UI groups only the runs it has loaded, 100 at a time: a sweep of 1,000 runs needs nine "load
more" clicks before its groups are whole. So the link a sweep prints (``sweep_view_hint`` with
the parent's per-variant metrics) opens a second view, the variant summary: the parent run alone,
one column per variant's mean (its description holds the table and the verdict, ``comparison/``
the figures); the grouped view stays in the page's list of saved views.

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


def view_key(parent_run_id: str, summary: bool = False) -> str:
    """The saved view's key: one per sweep (and its summary), so saving it again replaces it."""
    return f"convlab-{parent_run_id}" + ("-summary" if summary else "")


def summary_state(parent_run_id: str, metrics: list[str]) -> dict:
    """The experiment page's state: the sweep's parent alone, a column per variant's mean."""
    columns = [f"metrics.`{name}`" for name in metrics]
    return {
        "searchFilter": f"attributes.run_id = '{parent_run_id}'",
        "selectedColumns": columns,
        "columnOrder": [RUN_NAME_COLUMN, *columns],
        "columnWidths": {RUN_NAME_COLUMN: 300},
    }


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


def run_path(experiment_id: str, run_id: str) -> str:
    """The UI route of one run's page, in the training view."""
    training = f"{contract.UI_WORKFLOW_PARAM}={contract.UI_WORKFLOW_TRAINING}"
    return f"/#/experiments/{experiment_id}/runs/{run_id}?{training}"


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


def save_sweep_view(
    tracking_uri: str, experiment_id: str, parent_run_id: str, metrics: list[str] | None = None
) -> str:
    """Writes the sweep's view to the experiment's tags, and with ``metrics`` (the parent's
    per-variant means) its summary view too; returns the key of the view to open."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    run_name = client.get_run(parent_run_id).info.run_name or parent_run_id
    views = {view_key(parent_run_id): (f"{run_name}: runs by variant", view_state(parent_run_id))}
    if metrics:
        state = summary_state(parent_run_id, metrics)
        views[view_key(parent_run_id, summary=True)] = (f"{run_name}: variant summary", state)
    now = int(time.time() * 1000)
    for key, (name, state) in views.items():
        envelope = {"name": name, "createdAt": now, "updatedAt": now, "state": json.dumps(state)}
        client.set_experiment_tag(experiment_id, f"{contract.SAVED_VIEW_PREFIX}{key}", json.dumps(envelope))
    return key


def sweep_view_url(
    tracking_uri: str, experiment_id: str, parent_run_id: str, metrics: list[str] | None = None
) -> str | None:
    """Saves the sweep's view (with ``metrics``: and its variant summary) and returns the URL
    that opens it (the summary, when there is one).

    Returns:
        The URL on a tracking server; None for a store with no UI of its own (SQLite, files),
        where ``sweep_view_hint`` says how to open it with ``mlflow ui``. The view is saved
        either way.
    """
    key = save_sweep_view(tracking_uri, experiment_id, parent_run_id, metrics)
    address = ui_address(tracking_uri)
    return None if address is None else f"{address}{view_path(experiment_id, key)}"


def sweep_view_hint(
    tracking_uri: str, experiment_id: str, parent_run_id: str, metrics: list[str] | None = None
) -> str:
    """One line for the terminal: the sweep view's URL, or how to serve the store and open it."""
    url = sweep_view_url(tracking_uri, experiment_id, parent_run_id, metrics)
    if url is not None:
        return f"MLflow: {redaction.redact(url)}"
    if tracking_uri.startswith("databricks"):
        return f"MLflow: experiment {experiment_id} in your Databricks workspace"
    return _serve_hint(tracking_uri, view_path(experiment_id, view_key(parent_run_id, summary=bool(metrics))))


def run_hint(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """One line for the terminal at a single run's end: its page in the training view, or how
    to serve the store and open it."""
    address = ui_address(tracking_uri)
    if address is not None:
        return f"MLflow: {redaction.redact(address)}{run_path(experiment_id, run_id)}"
    if tracking_uri.startswith("databricks"):
        return f"MLflow: run {run_id} of experiment {experiment_id} in your Databricks workspace"
    return _serve_hint(tracking_uri, run_path(experiment_id, run_id))


def _serve_hint(tracking_uri: str, path: str) -> str:
    """``python -m pipeline.ui`` on this store (``mlflow server`` with its artifacts), then the URL."""
    store = redaction.redact(_absolute(tracking_uri))  # a terminal line: the password stays yours
    return f"MLflow: python -m pipeline.ui --tracking-uri {store}, then open {DEFAULT_UI}{path}"


def _absolute(tracking_uri: str) -> str:
    """``sqlite:///mlflow.db`` -> ``sqlite:////abs/dir/mlflow.db``: works from any folder."""
    if tracking_uri.startswith("sqlite:///") and tracking_uri != "sqlite:///:memory:":
        return f"sqlite:///{Path(tracking_uri.removeprefix('sqlite:///')).resolve()}"
    if "://" not in tracking_uri:  # a plain folder: MLflow's file store
        return str(Path(tracking_uri).resolve())
    return tracking_uri
