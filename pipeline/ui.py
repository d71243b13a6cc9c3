"""MLflow's UI on convlab's store, opened on an experiment's training runs.

    python -m pipeline.ui                      # $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    python -m pipeline.ui --open --port 5001   # and open it in the browser
    python -m pipeline.ui --experiment stride_vs_pool

It runs ``mlflow server`` on the store (its URI in the server's environment, not on its command
line, which ``ps`` shows to every local user), with the artifact root where runs on that SQLite
file wrote theirs (``mlruns`` beside it), and prints the URL of the experiment's runs in MLflow's
training view: the experiment named by ``--experiment``, else the one of the latest run. A
tracking server's URI needs no second server: the URL is printed (and opened) at once. Ctrl-C
stops the server. No run in the store, or the port taken: one line, before anything starts.

MLflow 3.18 opens an experiment's bare URL (``/#/experiments/ID``, the experiments list's links)
in its GenAI view, on trace onboarding, unless the browser has chosen the training view
(localStorage ``mlflow.workflowType_v1``), and opens its Assistant panel by itself the first time
a browser visits a server on loopback. So the server runs convlab's MLflow app (``--app-name
convlab``, the ``mlflow.app`` entry point; ``create_app``): MLflow's own, whose page sets those
two defaults in a browser that has none, so the user's own choices still win. Where the entry
point is not installed (an install older than it), it runs MLflow's plain server.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import webbrowser
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pipeline.config.errors import ConvlabError
from pipeline.server import process
from pipeline.server.postgres import ServerError
from pipeline.tracking import redaction, signals, store, ui

START_TIMEOUT_S = 120.0
APP_NAME = "convlab"  # the mlflow.app entry point: mlflow server --app-name convlab
# localStorage keys of MLflow 3.18's UI (JSON values), set where the browser has none
UI_DEFAULTS = {
    "mlflow.workflowType_v1": '"machine_learning"',  # the training view, not GenAI
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",  # the Assistant stays closed
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.ui", description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", help=f"default: $MLFLOW_TRACKING_URI or {store.DEFAULT_URI}")
    parser.add_argument("--experiment", help="the experiment to open (default: the latest run's)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (%(default)s)")
    parser.add_argument("--port", type=int, default=5000, help="port to serve on (%(default)s)")
    parser.add_argument("--open", action="store_true", help="open the URL in the browser")
    args = parser.parse_args(argv)
    uri = store.resolve_uri(args.tracking_uri)
    address = ui.ui_address(uri) or f"http://{_url_host(args.host)}:{args.port}"
    try:
        experiment_id = experiment_to_open(uri, args.experiment)
        if ui.ui_address(uri) is None:
            check_port_free(args.host, args.port)
    except ConvlabError as err:
        print(f"convlab: {err}", file=sys.stderr)
        return 2
    url = f"{address}{ui.experiment_path(experiment_id)}"
    if ui.ui_address(uri) is not None:  # a tracking server serves its own UI
        _show(url, args.open)
        return 0
    return serve(uri, args.host, args.port, lambda: _show(url, args.open))


def experiment_to_open(uri: str, name: str | None) -> str:
    """The id of experiment ``name``, else of the latest run's; ``ConvlabError`` (one line) when
    the store has no such experiment or no run at all. Creates nothing."""
    store.check(uri)
    path = store.sqlite_path(uri)
    if path is not None and not path.exists():
        raise ConvlabError(f"no MLflow store at {path.resolve()}: train a run first (python -m pipeline)")
    import mlflow

    client = mlflow.MlflowClient(uri)
    shown = redaction.redact(uri)
    if name is not None:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise ConvlabError(f"no experiment {name!r} in {shown}")
        if not client.search_runs([found.experiment_id], max_results=1):
            raise ConvlabError(f"experiment {name!r} in {shown} has no runs yet")
        return found.experiment_id
    ids = [e.experiment_id for e in client.search_experiments()]
    latest = client.search_runs(ids, max_results=1, order_by=["attributes.start_time DESC"]) if ids else []
    if not latest:
        raise ConvlabError(f"no runs in {shown} yet: train one with python -m pipeline")
    return latest[0].info.experiment_id


def check_port_free(host: str, port: int) -> None:
    """``ConvlabError`` (one line) when ``host:port`` is taken, by another ``mlflow ui`` say."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ConvlabError(
                f"port {port} on {host} is taken ({err.strerror}): choose another with --port"
            ) from None


def server_command(host: str, port: int) -> list[str]:
    """``mlflow server`` by this environment's Python, with convlab's app where it is installed;
    the store's URI goes in its environment."""
    command = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port)]
    app = ["--app-name", APP_NAME] if app_installed() else []
    return [*command, "--workers", "1", *app]


def app_installed() -> bool:
    """Whether ``mlflow server --app-name convlab`` finds convlab's app (its entry point)."""
    from importlib.metadata import entry_points

    return bool(entry_points(group="mlflow.app", name=APP_NAME))


def create_app():
    """convlab's MLflow app (``mlflow server --app-name convlab``): MLflow's own server, whose
    page first sets ``UI_DEFAULTS`` in a browser that has none of them.

    Returns:
        The ASGI app under uvicorn (``mlflow server``'s default), else the Flask app, as MLflow's
        own ``basic-auth`` app does (``_MLFLOW_SGI_NAME``: how ``mlflow server`` tells its app).
    """
    import json

    from flask import Response, request
    from mlflow.server import app as flask_app

    defaults = json.dumps(UI_DEFAULTS)
    script = (
        f"<script>(function(){{try{{var d={defaults};for(var k in d)"
        "if(localStorage.getItem(k)===null)localStorage.setItem(k,d[k]);}catch(e){}})();</script>"
    )
    index = Path(flask_app.static_folder) / "index.html"
    page = index.read_text().replace("<title>", f"{script}<title>", 1)  # before the UI's own script

    @flask_app.before_request
    def _page_with_defaults():
        if request.path == "/":  # the UI's one page; its routes live after the '#'
            return Response(page, mimetype="text/html")
        return None

    if os.environ.get("_MLFLOW_SGI_NAME") == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        return create_fastapi_app(flask_app)
    return flask_app


def server_env(uri: str) -> dict[str, str]:
    """The server's environment: the store (``--backend-store-uri``'s variable), the artifact
    root where runs on a SQLite file wrote (``mlruns`` beside it), MLflow's job runner off."""
    env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": uri}
    path = store.sqlite_path(uri)
    if path is not None:  # MLflow's client puts a new experiment's artifacts in ./mlruns
        env["MLFLOW_DEFAULT_ARTIFACT_ROOT"] = str(path.resolve().parent / "mlruns")
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # GenAI judges: not needed here
    return env


def serve(uri: str, host: str, port: int, on_ready) -> int:
    """Runs ``mlflow server`` until Ctrl-C, SIGTERM or SIGHUP (its terminal closed), or until it
    exits; ``on_ready()`` once it answers. The server runs in a session of its own, ended here
    with the uvicorn worker it starts: none is left holding the port."""
    signals.handle(signals.as_interrupt, (signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
    server = subprocess.Popen(server_command(host, port), env=server_env(uri), start_new_session=True)
    try:
        try:
            process.wait_until_ready(f"http://{_url_host(host)}:{port}", server, START_TIMEOUT_S)
        except ServerError:
            pass  # it exited, or never answered: its exit code is the command's
        else:
            on_ready()
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        process.stop(server, timeout=20)  # the server and the uvicorn worker it started


def _url_host(host: str) -> str:
    """The host part of a URL to reach a server bound to ``host`` (all interfaces: loopback)."""
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _show(url: str, open_it: bool) -> None:
    """Prints (and opens) ``url`` without a login in it: the browser asks for one."""
    parts = urlsplit(url)
    url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    print(f"MLflow: {url}", flush=True)
    if open_it:
        webbrowser.open(url)


if __name__ == "__main__":
    sys.exit(main())
