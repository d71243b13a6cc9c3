"""MLflow's UI as a user sees it: a sweep's store served by a real ``mlflow server`` and read by
headless Chromium (Debian's ``chromium``; ``.ci/run`` installs it).

The sweep is written through ``MlflowClient`` to the tracking contract (no training), the
experiment through ``store.get_or_create_experiment``, the saved view through ``pipeline.tracking.ui``.
``CONVLAB_SCREENSHOT=path.png`` also saves the sweep view's screenshot there (the README's figure).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import free_port, require, wait_until_serving

from pipeline import ui as ui_command
from pipeline.server import process
from pipeline.tracking import contract, store, ui

CHROMIUM = Path("/usr/bin/chromium")
# val_accuracy of the stride_vs_pool sweep in the README, per variant and seed (3 seeds)
SWEEP = {
    "downsample=stride,regularization=none": [0.9148, 0.9333, 0.9491],
    "downsample=stride,regularization=dropout": [0.9000, 0.9130, 0.9204],
    "downsample=maxpool,regularization=none": [0.8963, 0.9074, 0.9185],
    "downsample=maxpool,regularization=dropout": [0.8722, 0.8778, 0.8806],
}
EPOCHS = 5
UNLOOPED = "convlab.test"  # a name for 127.0.0.1 that MLflow's UI does not take for a local server


def require_chromium() -> None:
    missing = f"{CHROMIUM} is missing: apt-get install chromium (the browser tests need it)"
    require("Chromium", None if CHROMIUM.exists() else missing)


@dataclass
class ServedSweep:
    url: str
    experiment_id: str
    parent_id: str
    parent_name: str
    child_names: list[str]
    profile: Path  # Chromium's user data folder
    uri: str  # the store
    printed: str  # the URL python -m pipeline.ui printed
    single: tuple[str, str, str]  # a single run's experiment id, run id and name


def _child_name(variant: str, seed: int) -> str:
    return f"{variant} seed={seed}"


def _write_sweep(uri: str) -> tuple[str, str, str]:
    """A finished 2x2 sweep over 3 seeds, as ``sweep`` and ``tracking`` write it."""
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient(uri)
    experiment_id = store.get_or_create_experiment(uri, "stride_vs_pool")
    start = int(time.time() * 1000) - 120_000
    parent_name = "sweep stride_vs_pool 3f2a1c"
    parent_tags = {contract.ROLE: contract.ROLE_SWEEP, contract.SWEEP_ID: "3f2a1c"}
    parent_tags[contract.FACTORS] = json.dumps(["downsample", "regularization"])
    parent = client.create_run(experiment_id, start_time=start, run_name=parent_name, tags=parent_tags)
    for job, (variant, finals) in enumerate(SWEEP.items()):
        for seed, final in enumerate(finals):
            tags = {contract.PARENT: parent.info.run_id, contract.ROLE: contract.ROLE_JOB}
            tags |= {contract.SWEEP_ID: "3f2a1c", contract.VARIANT: variant, contract.SEED: str(seed)}
            tags |= {
                contract.factor_tag(part.split("=")[0]): part.split("=")[1] for part in variant.split(",")
            }
            begin = start + (job * 3 + seed) * 9_000
            run = client.create_run(
                experiment_id, start_time=begin, run_name=_child_name(variant, seed), tags=tags
            )
            curve = [final - 0.3 / epoch for epoch in range(1, EPOCHS)] + [final]
            metrics = [
                Metric(contract.VAL_ACCURACY, value, begin, epoch) for epoch, value in enumerate(curve, 1)
            ]
            metrics += [
                Metric(contract.VAL_LOSS, 1.0 - value, begin, epoch) for epoch, value in enumerate(curve, 1)
            ]
            metrics.append(Metric(contract.BEST_VAL_ACCURACY, max(curve), begin, 0))
            client.log_batch(run.info.run_id, metrics=metrics, synchronous=True)
            client.set_terminated(run.info.run_id, contract.FINISHED, end_time=begin + 8_000)
    client.set_terminated(parent.info.run_id, contract.FINISHED, end_time=start + 110_000)
    return experiment_id, parent.info.run_id, parent_name


def _write_single_run(uri: str) -> tuple[str, str, str]:
    """One run of ``python -m pipeline`` (no sweep), before the sweep: another experiment."""
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient(uri)
    experiment_id = store.get_or_create_experiment(uri, "convlab")
    start = int(time.time() * 1000) - 600_000
    name = "downsample=stride seed=0"
    run = client.create_run(experiment_id, start_time=start, run_name=name, tags={contract.SEED: "0"})
    curve = [0.52, 0.81, 0.90]
    metrics = [Metric(contract.VAL_ACCURACY, value, start, epoch) for epoch, value in enumerate(curve, 1)]
    client.log_batch(run.info.run_id, metrics=metrics, synchronous=True)
    client.set_terminated(run.info.run_id, contract.FINISHED, end_time=start + 30_000)
    return experiment_id, run.info.run_id, name


@pytest.fixture(scope="module")
def served_sweep(tmp_path_factory) -> ServedSweep:
    """``python -m pipeline.ui`` on a free port over a SQLite store holding one run and one sweep.

    It runs in a process group of its own, and ends the ``mlflow server`` it started on SIGTERM.
    The server also answers as ``UNLOOPED`` (Chromium maps that name to 127.0.0.1), where MLflow's
    Assistant panel does not open itself: the screenshots' address.
    """
    require_chromium()
    root = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    single = _write_single_run(uri)
    experiment_id, parent_id, parent_name = _write_sweep(uri)
    port = free_port()
    command = [sys.executable, "-m", "pipeline.ui", "--tracking-uri", uri, "--port", str(port)]
    log = root / "server.log"
    hosts = f"127.0.0.1:{port},localhost:{port},{UNLOOPED}:{port}"
    with open(log, "w") as out:
        env = {**os.environ, "MLFLOW_SERVER_ALLOWED_HOSTS": hosts}
        env["MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"] = f"http://{UNLOOPED}:{port}"  # its requests too
        server = subprocess.Popen(
            command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, server, log)
        printed = _printed_url(log)
        names = [
            _child_name(variant, seed) for variant, finals in SWEEP.items() for seed in range(len(finals))
        ]
        yield ServedSweep(
            url, experiment_id, parent_id, parent_name, names, root / "chromium", uri, printed, single
        )
    finally:
        process.stop(server)  # pipeline.ui ends its server, then itself


def _printed_url(log: Path, timeout: float = 30) -> str:
    """The URL ``python -m pipeline.ui`` printed (``MLflow: URL``), once the server answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [line for line in log.read_text().splitlines() if line.startswith("MLflow: ")]
        if lines:
            return lines[0].removeprefix("MLflow: ")
        time.sleep(0.2)
    pytest.fail(f"python -m pipeline.ui printed no URL:\n{log.read_text()[-2000:]}")


def chromium(profile: Path, *args: str) -> str:
    """Runs headless Chromium once; returns its stdout (the DOM for ``--dump-dom``)."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    flags += [f"--user-data-dir={profile}", "--virtual-time-budget=15000"]
    shutil.rmtree(profile, ignore_errors=True)  # a fresh browser: no view remembered from before
    done = subprocess.run(
        [str(CHROMIUM), *flags, *args], capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class _Text(HTMLParser):
    """The text a user reads on a page, one string per element, scripts and styles left out."""

    def __init__(self):
        super().__init__()
        self.strings: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        self._hidden += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._hidden -= tag in ("script", "style")

    def handle_data(self, data):
        if not self._hidden and data.strip():
            self.strings.append(data.strip())


def page_text(url: str, profile: Path) -> list[str]:
    parser = _Text()
    parser.feed(chromium(profile, "--dump-dom", url))
    return parser.strings


def assert_training_view(strings: list[str]) -> None:
    """The model-training view on the Runs tab, not the GenAI view (Overview, Traces, Judges, Prompts)."""
    assert strings[0].startswith("Runs - Experiment"), strings[:5]
    assert "Model registry" in strings
    assert not {"Judges", "Prompts", "Overview"} & set(strings), strings[:40]


@pytest.mark.browser
@pytest.mark.slow
def test_the_ui_command_prints_the_latest_experiments_runs_in_the_training_view(served_sweep):
    """``python -m pipeline.ui``'s URL: the latest run's experiment (the sweep's), on its runs.
    ``CONVLAB_UI_SCREENSHOTS=folder`` also saves it there (``ui_training_view.png``)."""
    assert served_sweep.printed == ui.experiment_url(served_sweep.url, served_sweep.experiment_id)
    strings = page_text(served_sweep.printed, served_sweep.profile)

    assert_training_view(strings)
    assert served_sweep.parent_name in strings  # the sweep's parent, its jobs nested (collapsed) under it
    count = strings.index("matching runs") - 1
    assert strings[count] == str(1 + len(served_sweep.child_names))
    screenshot(served_sweep, served_sweep.printed, "ui_training_view.png")


@pytest.mark.browser
@pytest.mark.slow
def test_a_single_runs_printed_link_opens_its_run(served_sweep):
    """The line a single run ends with (``ui.run_hint``) names a page that shows that run.
    ``CONVLAB_UI_SCREENSHOTS=folder`` also saves it there (``ui_single_run.png``)."""
    experiment_id, run_id, name = served_sweep.single
    hint = ui.run_hint(served_sweep.uri, experiment_id, run_id)
    assert f"python -m pipeline.ui --tracking-uri {served_sweep.uri}, then open {ui.DEFAULT_UI}" in hint
    url = served_sweep.url + hint.partition(ui.DEFAULT_UI)[2]  # this test's port, not 5000
    strings = page_text(url, served_sweep.profile)

    assert strings[0] == f"Run {run_id} - MLflow", strings[:5]
    assert name in strings and "Model registry" in strings  # the training view's sidebar
    overview = strings[strings.index("Overview") :]
    assert overview[overview.index(contract.VAL_ACCURACY) + 1] == "0.9"  # its last val_accuracy
    screenshot(served_sweep, url, "ui_single_run.png")


@pytest.mark.browser
@pytest.mark.slow
def test_a_bare_experiment_url_lands_on_its_runs(served_sweep):
    """``/#/experiments/ID`` with no ``workflowType``, as MLflow's experiments list links it, in a
    fresh browser. MLflow 3.18 alone opens it in its GenAI view, on trace onboarding, whatever the
    experiment's ``mlflow.experimentKind`` tag (convlab sets it all the same); convlab's MLflow
    app, which ``python -m pipeline.ui`` runs, makes the training view the browser's default."""
    import mlflow

    installed = ui_command.app_installed()
    require(
        "convlab's MLflow app", None if installed else "no mlflow.app entry point: pip install -e . again"
    )
    tags = mlflow.MlflowClient(served_sweep.uri).get_experiment(served_sweep.experiment_id).tags
    assert tags[contract.EXPERIMENT_KIND] == contract.MODEL_TRAINING_KIND
    strings = page_text(
        f"{served_sweep.url}/#/experiments/{served_sweep.experiment_id}", served_sweep.profile
    )

    assert_training_view(strings)
    assert served_sweep.parent_name in strings


def screenshot(served: ServedSweep, url: str, name: str) -> None:
    """Saves the page as ``name`` in ``$CONVLAB_UI_SCREENSHOTS`` (nothing when unset)."""
    if folder := os.environ.get("CONVLAB_UI_SCREENSHOTS"):
        save_page(served, url, Path(folder) / name)


def save_page(served: ServedSweep, url: str, shot: Path) -> None:
    """Saves the page at ``url`` as the PNG ``shot``, reached by a name MLflow's UI does not take
    for a local server (``UNLOOPED``), where its Assistant panel does not open itself."""
    shot.parent.mkdir(parents=True, exist_ok=True)
    flags = ["--hide-scrollbars", "--window-size=1400,900", f"--host-resolver-rules=MAP {UNLOOPED} 127.0.0.1"]
    chromium(served.profile, *flags, f"--screenshot={shot}", url.replace("127.0.0.1", UNLOOPED, 1))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 30_000


@pytest.mark.browser
@pytest.mark.slow
def test_sweep_view_lists_the_jobs_grouped_by_variant(served_sweep, tmp_path):
    url = ui.sweep_view_url(served_sweep.url, served_sweep.experiment_id, served_sweep.parent_id)
    strings = page_text(url, served_sweep.profile)

    assert_training_view(strings)
    assert f"Group by: {contract.VARIANT}" in strings
    assert [s for s in strings if s.startswith("Group: ")] == [f"Group: {variant}" for variant in SWEEP]
    assert set(served_sweep.child_names) <= set(strings)
    assert served_sweep.parent_name not in strings  # only the sweep's jobs

    save_page(served_sweep, url, Path(os.environ.get("CONVLAB_SCREENSHOT") or tmp_path / "sweep.png"))


def test_experiments_are_created_for_the_training_view_and_old_ones_get_the_tag(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    new = store.get_or_create_experiment(uri, "fresh")
    old = client.create_experiment("from an older convlab")  # no kind: MLflow's UI guesses

    assert store.get_or_create_experiment(uri, "from an older convlab") == old
    for experiment_id in (new, old):
        assert (
            client.get_experiment(experiment_id).tags[contract.EXPERIMENT_KIND]
            == contract.MODEL_TRAINING_KIND
        )


def test_sweep_view_on_a_sqlite_store_says_how_to_open_it(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    uri = "sqlite:///mlflow.db"  # relative, as MLflow's default is
    experiment_id = store.get_or_create_experiment(uri, "sweeps")
    parent = mlflow.MlflowClient(uri).create_run(experiment_id, run_name="sweep x").info.run_id

    assert ui.sweep_view_url(uri, experiment_id, parent) is None
    hint = ui.sweep_view_hint(uri, experiment_id, parent)
    assert f"python -m pipeline.ui --tracking-uri sqlite:///{tmp_path / 'mlflow.db'}" in hint
    assert ui.view_path(experiment_id, ui.view_key(parent)) in hint
    tags = mlflow.MlflowClient(uri).get_experiment(experiment_id).tags
    saved = json.loads(tags[f"{contract.SAVED_VIEW_PREFIX}{ui.view_key(parent)}"])
    assert saved["name"] == "sweep x: runs by variant"
    assert json.loads(saved["state"])["groupBy"]["groupByKeys"] == [
        {"mode": "tag", "groupByData": contract.VARIANT}
    ]


def test_a_sweeps_link_opens_on_its_variant_summary_one_row_however_many_runs(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment_id = store.get_or_create_experiment(uri, "sweeps")
    parent = client.create_run(experiment_id, run_name="sweep x").info.run_id
    means = {"val_accuracy/downsample:stride": 0.91, "val_accuracy/downsample:maxpool": 0.93}
    client.log_batch(parent, metrics=[mlflow.entities.Metric(k, v, 0, 0) for k, v in means.items()])
    for seed in range(3):  # children: the view leaves them out
        client.create_run(experiment_id, tags={contract.PARENT: parent}, run_name=f"seed={seed}")

    hint = ui.sweep_view_hint(uri, experiment_id, parent, list(means))
    assert ui.view_path(experiment_id, ui.view_key(parent, summary=True)) in hint
    tags = client.get_experiment(experiment_id).tags
    saved = json.loads(tags[f"{contract.SAVED_VIEW_PREFIX}{ui.view_key(parent, summary=True)}"])
    state = json.loads(saved["state"])
    assert saved["name"] == "sweep x: variant summary"
    assert state["selectedColumns"] == [f"metrics.`{name}`" for name in means]
    shown = client.search_runs([experiment_id], state["searchFilter"])  # the filter the page sends
    assert [r.info.run_id for r in shown] == [parent]
    assert f"{contract.SAVED_VIEW_PREFIX}{ui.view_key(parent)}" in tags  # the runs by variant: listed too


@pytest.mark.browser
@pytest.mark.slow
def test_the_registered_version_shows_its_verdict_and_alias(registered_sweep, tmp_path):
    """The version a sweep registered (``sweep.register``), as MLflow's UI shows it: alias,
    description with the verdict, the source run. ``CONVLAB_REGISTRY_SCREENSHOT=path.png``
    also saves the page (the README's figure)."""
    require_chromium()
    version = registered_sweep.store.client().get_model_version_by_alias(registered_sweep.name, "champion")
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", registered_sweep.uri]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        server = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, server, log)
        page = f"{url}/#/models/{registered_sweep.name}/versions/{version.version}"
        strings = page_text(page, tmp_path / "chromium")
        text = " ".join(strings)
        assert f"Version {version.version}" in strings and "@\xa0champion" in strings, strings[:60]
        assert "is decided better than the baseline" in text
        shot = Path(os.environ.get("CONVLAB_REGISTRY_SCREENSHOT") or tmp_path / "registered.png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        flags = ["--hide-scrollbars", "--window-size=1400,1000", f"--screenshot={shot}"]
        chromium(tmp_path / "chromium", *flags, page)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        process.stop(server, timeout=20)
