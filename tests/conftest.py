"""Shared fixtures: a temporary MLflow store, tiny data written by the tests, a shrunk config."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import teamserver
from teamserver import free_port  # noqa: F401 (the tests' one free port: from conftest import free_port)

from pipeline.config import composition
from pipeline.server import postgres
from pipeline.tracking import contract

ROOT = Path(__file__).resolve().parents[1]
MLFLOW_DEFAULTS = ("mlruns", "mlflow.db")  # where MLflow writes, relative to the cwd, by default
CHECKOUT_BEFORE = pytest.StashKey[set]()
# Small and fast, yet the real pipeline: 300 digits, 2 epochs, no model logging unless asked.
TINY = ["dataset.max_samples=300", "trainer.epochs=2", "trainer.batch_size=64"]


def _checkout_mlflow_files() -> set[str]:
    """The checkout's own ``mlflow.db`` and ``mlruns/<experiment>/<run>``, to spot a test writing there."""
    found = {name for name in MLFLOW_DEFAULTS if (ROOT / name).exists()}
    return found | {str(p.relative_to(ROOT)) for p in ROOT.glob("mlruns/*/*")}


def pytest_sessionstart(session):
    session.config.stash[CHECKOUT_BEFORE] = _checkout_mlflow_files()


def pytest_sessionfinish(session, exitstatus):
    """Fails the session if a test left MLflow files in the checkout: tests write in tmp folders."""
    left = sorted(_checkout_mlflow_files() - session.config.stash.get(CHECKOUT_BEFORE, set()))
    if left:
        print(f"\ntests left MLflow files in the checkout {ROOT}: {', '.join(left[:5])}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _mlflow_uris_kept():
    """Each test leaves MLflow's process-wide tracking and registry URIs, and the variables
    ``mlflow.set_*_uri`` write, as it found them: an in-process run or model load of one test's
    store must not send a later test's ``mlflow.MlflowClient(uri)`` (whose registry is the set one)
    or ``mlflow.pyfunc.load_model`` there, nor its subprocesses (which inherit the variables)."""
    from pipeline.tracking import registry

    with registry.kept_uris():
        yield


def compose(overrides=()):
    """The composed config for ``overrides``, as ``python -m pipeline`` composes it (no Hydra keys)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    composition.register_experiments()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(composition.CONF_DIR)):
        return hydra_compose("config", overrides=list(overrides))


@pytest.fixture(scope="session")
def run_config():
    """``run_config("head=softmax", ...)``: the validated ``RunConfig``, composed once per overrides."""

    cache = {}

    def validated(*overrides: str):
        if overrides not in cache:
            cache[overrides] = composition.validate(compose(overrides))
        return cache[overrides]

    return validated


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory) -> str:
    """One SQLite store per test session (creating the schema costs a second or two), created
    up front so that tests polling it never race a subprocess that is creating it.

    Created from inside its folder: MLflow caches a store per URI with its artifact root
    (``./mlruns``) resolved against the cwd of that moment, so every run logged in this process
    keeps its artifacts there, not in the checkout."""
    import mlflow

    folder = tmp_path_factory.mktemp("mlruns")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        mlflow.MlflowClient(uri).search_experiments(max_results=1)
    return uri


@pytest.fixture
def store(tracking_uri, monkeypatch, tmp_path, request):
    """The session store, a fresh experiment name per test, and cwd in tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    experiment = request.node.name.replace("[", "-").replace("]", "")[:200]
    return Store(tracking_uri, experiment)


class Store:
    def __init__(self, uri: str, experiment: str):
        self.uri, self.experiment = uri, experiment

    @property
    def overrides(self) -> list[str]:
        return [f"tracking.uri={self.uri}", f"tracking.experiment_name={self.experiment}"]

    def runs(self):
        import mlflow

        client = mlflow.MlflowClient(self.uri)
        found = client.get_experiment_by_name(self.experiment)
        return [] if found is None else client.search_runs([found.experiment_id], max_results=1000)

    def client(self):
        import mlflow

        return mlflow.MlflowClient(self.uri)


@pytest.fixture(scope="session")
def adam_sgd_sweep(tracking_uri, tmp_path_factory):
    """The ``optimizer=adam,sgd`` x ``seed=0,1`` grid, run once for the tests that need it: in
    parallel (joblib, 2 workers) and with adaptive seeding up to 3 seeds, whose first round is that
    grid. Returns ``(CompletedProcess, Store)``; its experiment is this sweep's alone."""
    folder = tmp_path_factory.mktemp("adam_sgd")
    sweep_store = Store(tracking_uri, "adam_sgd_sweep")
    shrunk = ["trainer.epochs=1", "dataset.max_samples=150", "tracking.log_model=false"]
    args = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "optimizer=adam,sgd", "seed=0,1"]
    args += ["sweep.max_seeds=3", *shrunk, *sweep_store.overrides]
    return cli(*args, cwd=folder, timeout=900), sweep_store


# What a machine may lack, and the variable that makes .ci/run require it (CI=true requires them all)
POSTGRESQL, SLURM, RAY = "PostgreSQL", "SLURM", "Ray"
REQUIRED_BY = {
    POSTGRESQL: "CONVLAB_REQUIRE_SERVER",
    SLURM: "CONVLAB_REQUIRE_CLUSTER",
    RAY: "CONVLAB_REQUIRE_CLUSTER",
}


def require(capability: str, reason: str | None) -> None:
    """Nothing when ``reason`` is None; else ``capability`` is missing here, and the test skips with
    ``reason``, or fails, naming the capability, under ``CI=true`` or its ``REQUIRED_BY`` variable."""
    if reason is None:
        return
    variable = REQUIRED_BY.get(capability)
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true needs {capability} here, but {reason}")
    if variable and os.environ.get(variable) == "1":
        pytest.fail(f"{variable}=1 needs {capability} here, but {reason}")
    pytest.skip(reason)


def require_root() -> None:
    require("root", None if os.geteuid() == 0 else "needs root")


def wait_for(condition, timeout: float = 300, every: float = 0.3, what: str = "the condition"):
    """Polls ``condition()`` until it returns something true, and returns that; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
    return found


def wait_until_serving(url: str, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    """Waits for a server this test started (``mlflow server``, ``mlflow models serve``) to answer
    ``/health``; fails with the tail of its ``log`` if it exits or does not answer in time."""
    try:
        teamserver.wait_until_ready(url, process, timeout)
    except postgres.ServerError as err:
        pytest.fail(f"{err}:\n{log.read_text()[-2000:]}")


def _start_server(tmp_path_factory, auth: bool = False, admin_password: str | None = None):
    """``python -m pipeline.server --setup`` on 127.0.0.1 as a team would: a fresh database,
    dropped afterwards. Skips where PostgreSQL or root is missing (fails in CI, ``require``)."""
    require(POSTGRESQL, postgres.unavailable())
    folder = tmp_path_factory.mktemp("server")
    # a role of its own per session (two sessions at once must not reset each other's password),
    # its password one no other value contains: the tests grep the store for it
    name = f"convlab_test_{secrets.token_hex(4)}"
    database = postgres.Database(name, name, f"pw-{secrets.token_urlsafe(12)}")
    port = free_port()
    log = folder / "server.log"
    # started as root, the server serves as its own user (where that user can run this Python, as
    # .ci/unprivileged-python arranges; else as root, and test_server's not-root test says why),
    # so its artifacts live outside pytest's 0700 temporary folder
    artifacts = Path(tempfile.mkdtemp(prefix="convlab-test-artifacts-"))
    run_as = teamserver.serving_user()
    process = teamserver.launch(
        database, artifacts, port, log, auth=auth, admin_password=admin_password, run_as=run_as
    )
    url = f"http://127.0.0.1:{port}"
    try:
        teamserver.wait_until_ready(url, process, timeout=240)
        yield url, database
    except postgres.ServerError as err:
        pytest.fail(f"{err}; its log: {log.read_text()[-2000:]}")
    finally:
        teamserver.stop(process)
        postgres.drop_database(database, with_role=True)
        shutil.rmtree(artifacts, ignore_errors=True)


@pytest.fixture(scope="session")
def team_server(tmp_path_factory):
    """``(url, database)``: a PostgreSQL-backed MLflow server on 127.0.0.1 (no login: loopback) for
    this test session, and the database it keeps runs in (a study goes there too)."""
    yield from _start_server(tmp_path_factory)


@pytest.fixture(scope="session")
def server_uri(team_server):
    """The team server's URL (``team_server``)."""
    return team_server[0]


@pytest.fixture(scope="session")
def auth_team(tmp_path_factory):
    """``(url, admin password, database)``: a server with MLflow's basic-auth (``--auth``), for
    this session, and the database its users are kept in (``--add-user``)."""
    password = secrets.token_urlsafe(16)
    for url, database in _start_server(tmp_path_factory, auth=True, admin_password=password):
        yield url, password, database


@pytest.fixture(scope="session")
def auth_server(auth_team):
    """``(url, admin password)`` of ``auth_team``."""
    return auth_team[:2]


def cli(*args: str, cwd: Path, env: dict | None = None, timeout: int = 300, **kwargs):
    """Runs ``python -m pipeline ARGS`` as a user would; returns the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def write_digit_csv(path: Path, rows: int = 60, labelled: bool = True, seed: int = 0) -> Path:
    """A Kaggle digit-recognizer style CSV with random 28x28 images (values 0-255)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(rows, 784))
    frame = pd.DataFrame(pixels, columns=[f"pixel{i}" for i in range(784)])
    if labelled:
        frame.insert(0, "label", np.arange(rows) % 10)
    frame.to_csv(path, index=False)
    return path


def write_image_folder(
    root: Path, classes=("cat", "dog"), per_class: int = 6, with_val: bool = True, size=16
):
    """``root/train/<class>/*.png`` (and ``val/``), each class a different brightness."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", max(per_class // 2, 1))):
        if split == "val" and not with_val:
            continue
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 60, size=(size, size, 3)) + 150 * index
                Image.fromarray(pixels.clip(0, 255).astype("uint8")).save(folder / f"{i}.png")
    return root


def write_child_run(
    client,
    experiment_id,
    parent_id,
    factors: dict,
    seed: int,
    final: float | None,
    error: str = "",
    start_time: int | None = None,
    status: str = contract.FAILED,
):
    """A child run as ``pipeline.tracking`` writes it; epoch 2 is the best epoch (final + 0.01).

    With ``error`` it ends ``status`` (FAILED, or KILLED) instead, with no metrics."""
    from mlflow.entities import Metric

    variant = ",".join(f"{key}={value}" for key, value in factors.items()) or "default"
    tags = {contract.PARENT: parent_id, contract.ROLE: contract.ROLE_JOB, contract.SWEEP_ID: "abc123"}
    tags |= {contract.VARIANT: variant, contract.SEED: str(seed)}
    tags |= {contract.factor_tag(key): value for key, value in factors.items()}
    run_id = client.create_run(experiment_id, start_time=start_time, tags=tags).info.run_id
    if error:
        client.set_tag(run_id, contract.ERROR, error)
        client.set_terminated(run_id, status)
        return
    now, metrics = int(time.time() * 1000), []
    for epoch, val_accuracy in enumerate([final - 0.2, final + 0.01, final], start=1):
        values = {
            contract.VAL_ACCURACY: val_accuracy,
            contract.VAL_LOSS: 1 - val_accuracy,
            contract.LOSS: 1.2 - val_accuracy,
        }
        values |= {
            contract.ACCURACY: val_accuracy + 0.02,
            contract.EPOCH_SECONDS: 2.0 * epoch,
            contract.IMAGES_PER_SECOND: 500.0,
        }
        metrics += [Metric(key, value, now, epoch) for key, value in values.items()]
    once = {
        contract.PARAMETER_COUNT: 1000.0,
        contract.BEST_VAL_ACCURACY: final + 0.01,
        contract.BEST_EPOCH: 2.0,
    }
    once[contract.RUN_SECONDS] = 12.0
    metrics += [Metric(key, value, now, 0) for key, value in once.items()]
    client.log_batch(run_id, metrics=metrics, synchronous=True)
    client.set_terminated(run_id, contract.FINISHED)


def write_sweep_run(client, experiment_id, factors: list, params: dict, start_time: int) -> str:
    """A sweep's parent run as ``pipeline.sweep`` writes it."""
    tags = {contract.ROLE: contract.ROLE_SWEEP, contract.SWEEP_ID: "abc123"}
    tags |= {contract.FACTORS: json.dumps(factors), contract.SWEEP_PARAMS: json.dumps(params)}
    return client.create_run(experiment_id, start_time=start_time, tags=tags).info.run_id


REGISTERED = "handoff-digits"  # the registered model of the ``registered_sweep`` fixture


@pytest.fixture(scope="session")
def registered_sweep(tracking_uri, tmp_path_factory):
    """One real sweep shared by the hand-on tests: a learning rate that learns nothing (1e-6, the
    baseline) against one that learns (0.003), 3 seeds, ``sweep.register=REGISTERED``; 0.003 is
    decided better, so its median seed's model is registered as ``models:/REGISTERED@champion``."""
    folder = tmp_path_factory.mktemp("registered_sweep")
    experiment = "handoff"
    store = Store(tracking_uri, experiment)
    sweep = ["-m", "optimizer.learning_rate=0.000001,0.003", "seed=0,1,2", *TINY, *store.overrides]
    result = cli(
        *sweep, f"sweep.register={REGISTERED}", cwd=folder, env={"MLFLOW_TRACKING_URI": tracking_uri}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return RegisteredSweep(store, folder, result.stdout, result.stderr)


class RegisteredSweep:
    def __init__(self, store: Store, folder: Path, stdout: str, stderr: str):
        self.store, self.folder, self.stdout, self.stderr = store, folder, stdout, stderr
        self.name, self.uri = REGISTERED, store.uri
        self.model_uri = f"models:/{REGISTERED}@champion"
