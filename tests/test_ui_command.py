"""``python -m pipeline.ui``'s one-line refusals, before any server starts, and the line a single
run ends with. Serving and the browser: ``tests/tracking/test_ui.py``."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from pipeline import ui as ui_command
from pipeline.tracking import contract, store, ui


def test_a_store_with_no_run_is_one_line(tmp_path, capsys):
    missing = f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}"
    empty = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store.get_or_create_experiment(empty, "convlab")  # an experiment, no run
    capsys.readouterr()  # MLflow's lines as it creates the store

    assert ui_command.main(["--tracking-uri", missing]) == 2
    nothing = tmp_path / "none" / "mlflow.db"
    assert (
        capsys.readouterr().err
        == f"convlab: no MLflow store at {nothing}: train a run first (python -m pipeline)\n"
    )
    assert ui_command.main(["--tracking-uri", empty]) == 2
    assert capsys.readouterr().err == f"convlab: no runs in {empty} yet: train one with python -m pipeline\n"
    assert ui_command.main(["--tracking-uri", empty, "--experiment", "other"]) == 2
    assert capsys.readouterr().err == f"convlab: no experiment 'other' in {empty}\n"
    assert not (tmp_path / "none").exists()  # nothing created


def test_a_taken_port_is_one_line(tmp_path, capsys):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.MlflowClient(uri).create_run(store.get_or_create_experiment(uri, "convlab"))
    capsys.readouterr()  # MLflow's lines as it creates the store
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert ui_command.main(["--tracking-uri", uri, "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"convlab: port {port} on 127.0.0.1 is taken (") and err.count("\n") == 1
    assert err.endswith("choose another with --port\n")


def test_a_tracking_server_needs_no_second_server_and_its_login_stays_out_of_the_url(capsys):
    with pytest.raises(SystemExit):  # argparse: --help
        ui_command.main(["--help"])
    url = "https://alice:s3cret@mlflow.example:5000/#/experiments/7/runs?workflowType=machine_learning"
    ui_command._show(url, open_it=False)
    assert capsys.readouterr().out.endswith(
        "MLflow: https://mlflow.example:5000/#/experiments/7/runs?workflowType=machine_learning\n"
    )


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("https://bob:pw@mlflow.example", "MLflow: https://bob:***@mlflow.example/#/experiments/3/runs/abc?"),
        ("databricks", "MLflow: run abc of experiment 3 in your Databricks workspace"),
    ],
)
def test_a_single_runs_line_names_its_page_in_the_training_view(uri, expected):
    hint = ui.run_hint(uri, "3", "abc")
    assert hint.startswith(expected) and "pw" not in hint
    if uri.startswith("https"):
        assert hint.endswith(f"{contract.UI_WORKFLOW_PARAM}={contract.UI_WORKFLOW_TRAINING}")


def test_a_single_runs_line_on_sqlite_says_how_to_serve_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hint = ui.run_hint("sqlite:///mlflow.db", "3", "abc")
    path = ui.run_path("3", "abc")
    serve = f"python -m pipeline.ui --tracking-uri sqlite:///{tmp_path / 'mlflow.db'}"
    assert hint == f"MLflow: {serve}, then open {ui.DEFAULT_UI}{path}"


def test_convlab_apps_page_sets_the_uis_defaults_where_the_browser_has_none():
    """``mlflow server --app-name convlab``'s page: MLflow's, with ``UI_DEFAULTS`` set before the
    UI's own script runs; the rest of the server is MLflow's."""
    flask_app = ui_command.create_app()  # the Flask app outside uvicorn
    client = flask_app.test_client()

    page = client.get("/").get_data(as_text=True)
    assert page.index("localStorage.setItem") < page.index("static/js/main.")
    for key, value in ui_command.UI_DEFAULTS.items():
        assert f'"{key}": {json.dumps(value)}' in page
    assert client.get("/health").get_data(as_text=True) == "OK"


def test_the_defaults_name_keys_mlflows_ui_reads():
    """The keys (``NAME_vVERSION``) as MLflow's bundle declares them: a renamed key fails here."""
    import mlflow.server

    (bundle,) = (Path(mlflow.server.__file__).parent / "js" / "build" / "static" / "js").glob("main.*.js")
    declared = set(re.findall(r'key:"([\w.]+)",version:(\d+)', bundle.read_text()))
    for key in ui_command.UI_DEFAULTS:
        name, _, version = key.rpartition("_v")
        assert (name, version) in declared, key
