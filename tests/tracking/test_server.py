"""The team server: PostgreSQL + ``python -m pipeline.server``, used by a parallel sweep, and
one that lets in only the team (MLflow's basic-auth).

Needs PostgreSQL (the Debian package, any major version) and root; elsewhere these tests skip,
unless ``CONVLAB_REQUIRE_SERVER=1`` (as ``.ci/run`` sets), where a missing server fails them.
The servers are session fixtures in ``conftest.py`` (``server_uri``, ``auth_server``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import POSTGRESQL, ROOT, TINY, cli, free_port, require, require_root

from pipeline.server import basic_auth, postgres, privileges, serve
from pipeline.tracking import contract

SHRUNK = ["seed=0", "trainer.epochs=1", "dataset.max_samples=200"]


def _sweep_runs(client, experiment: str):
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], max_results=100)
    (parent,) = [r for r in runs if r.data.tags.get(contract.ROLE) == contract.ROLE_SWEEP]
    children = [r for r in runs if r.data.tags.get(contract.PARENT) == parent.info.run_id]
    return parent, children


EXPERIMENT, MODEL = "server_sweep", "server-digits"
WINNER = "optimizer.learning_rate=0.003"


@pytest.fixture(scope="module")
def server_sweep(server_uri, tmp_path_factory):
    """One parallel sweep through the team server, read back by the tests below: a learning rate
    that learns nothing (1e-6, the baseline) against one that learns (0.003), 3 seeds, joblib's 2
    workers, ``sweep.register``. Returns ``(folder it ran in, its command line)``."""
    folder = tmp_path_factory.mktemp("server_sweep")
    sweep = ["-m", "optimizer.learning_rate=0.000001,0.003", "seed=0,1,2", *TINY, f"sweep.register={MODEL}"]
    sweep += [f"tracking.experiment_name={EXPERIMENT}"]
    parallel = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    result = cli(*sweep, *parallel, cwd=folder, env={"MLFLOW_TRACKING_URI": server_uri}, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, sweep


@pytest.mark.server
@pytest.mark.slow
def test_parallel_sweep_tracks_to_the_server_and_reads_back(server_uri, server_sweep, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server_uri)
    # in-process runs of other tests set MLflow's process-wide URI, which beats the variable
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(server_uri)
    try:
        _read_back_resume_and_compare(server_uri, *server_sweep, tmp_path)
    finally:
        mlflow.set_tracking_uri(previous)


def _read_back_resume_and_compare(server_uri, folder, sweep, tmp_path):
    import mlflow

    client = mlflow.MlflowClient(server_uri)
    parent, children = _sweep_runs(client, EXPERIMENT)
    assert parent.info.status == contract.FINISHED
    jobs = sorted((c.data.tags[contract.VARIANT], c.data.tags[contract.SEED]) for c in children)
    assert jobs == sorted((f"optimizer.learning_rate={r}", s) for r in ("1e-06", "0.003") for s in "012")
    assert {c.info.status for c in children} == {contract.FINISHED}

    # a resume through the server: everything finished, so nothing trains and nothing is added
    resumed = cli(*sweep, "sweep.resume=last", cwd=folder, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again, children_again = _sweep_runs(client, EXPERIMENT)
    assert again.info.run_id == parent.info.run_id and len(children_again) == len(children)
    assert again.info.status == contract.FINISHED

    # the comparison, read back from the server
    out = ["--out", str(tmp_path / "report")]
    compared = subprocess.run(
        [sys.executable, "-m", "pipeline.compare", "--experiment", EXPERIMENT, *out],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert compared.returncode == 0, compared.stderr[-3000:]
    assert (tmp_path / "report" / "summary.csv").read_text().count("optimizer.learning_rate=") == 2

    # artifacts went through the server (proxied), not to a local folder
    child = children[0].info.run_id
    figure = mlflow.artifacts.download_artifacts(
        run_id=child, artifact_path="figures/learning_curves.png", dst_path=str(tmp_path / "download")
    )
    assert Path(figure).read_bytes().startswith(b"\x89PNG")
    assert not (folder / "mlruns").exists() and not (folder / "mlartifacts").exists()

    # the logged model loads back through the server and predicts raw pixels
    (model_info,) = mlflow.search_logged_models(
        experiment_ids=[parent.info.experiment_id],
        filter_string=f"source_run_id = '{child}'",
        output_format="list",
    )
    model = mlflow.pyfunc.load_model(model_info.model_uri)
    probabilities = np.asarray(model.predict(np.random.rand(3, 28, 28, 1).astype("float32") * 255))
    assert probabilities.shape == (3, 10)


def test_server_without_its_database_says_so_in_one_line(tmp_path):
    port = str(free_port())
    command = [sys.executable, "-m", "pipeline.server", "--db-port", port]
    env = {**os.environ, serve.DB_PASSWORD: "secret"}  # from the environment: --password is gone
    # as root, the server would first check that its user can run this Python (not so for a Python
    # under /root): its own test is below; this one is about the database
    command += ["--run-as", "root"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "nothing answers" in done.stderr
    assert "secret" not in done.stderr


@pytest.mark.server
@pytest.mark.slow
def test_a_sweep_registers_its_decided_winner_on_the_server(server_uri, server_sweep):
    """``sweep.register`` through the team server: the registry lives in PostgreSQL too."""
    import mlflow

    client = mlflow.MlflowClient(server_uri, registry_uri=server_uri)
    parent, children = _sweep_runs(client, EXPERIMENT)
    version = client.get_model_version_by_alias(MODEL, contract.CHAMPION)
    winners = [c for c in children if c.data.tags[contract.VARIANT] == WINNER]
    # ordered as the median is taken (README): by val_accuracy, runs tied on it by seed
    ranked = sorted(
        winners, key=lambda run: (run.data.metrics[contract.VAL_ACCURACY], int(run.data.tags[contract.SEED]))
    )
    assert version.run_id == ranked[1].info.run_id  # the median of the winner's 3 seeds
    assert version.tags[contract.SWEEP_ID] == parent.data.tags[contract.SWEEP_ID]
    assert version.tags[contract.SEEDS] == "0,1,2"
    assert "decided better than the baseline" in version.description


def _login_env(url: str, user: str, password: str) -> dict:
    return {
        "MLFLOW_TRACKING_URI": url,
        "MLFLOW_TRACKING_USERNAME": user,
        "MLFLOW_TRACKING_PASSWORD": password,
    }


@pytest.mark.server
def test_a_request_without_a_login_gets_401(auth_server):
    import urllib.error
    import urllib.request

    url, _ = auth_server
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10)
    assert refused.value.code == 401


@pytest.mark.server
@pytest.mark.slow
def test_a_persons_own_login_runs_a_sweep_without_the_admins_password(auth_team, tmp_path, monkeypatch):
    """``--add-user alice`` on the server's host prints alice's password once; with it, and no
    admin credential anywhere on the client, alice's sweep tracks to the server."""
    import mlflow

    url, admin_password, database = auth_team
    added = subprocess.run(
        [sys.executable, "-m", "pipeline.server", "--add-user", "alice", "--database", database.name,
         "--user", database.user, "--db-host", database.host, "--db-port", str(database.port)],
        env={**os.environ, serve.DB_PASSWORD: database.password}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr[-2000:]
    (line,) = [line for line in added.stdout.splitlines() if "shown only now: " in line]
    password = line.split("shown only now: ", 1)[1].strip()
    assert len(password) >= 20 and password != admin_password
    env = _login_env(url, "alice", password)
    assert not any(admin_password in value for value in {**os.environ, **env}.values())
    experiment = "auth_sweep"
    lines = [
        "-m",
        "seed=0,1",
        *SHRUNK[1:],
        "tracking.log_model=false",
        f"tracking.experiment_name={experiment}",
    ]
    result = cli(*lines, cwd=tmp_path, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    parent, children = _sweep_runs(mlflow.MlflowClient(url), experiment)
    assert parent.info.status == contract.FINISHED
    assert sorted(c.data.tags[contract.SEED] for c in children) == ["0", "1"]


@pytest.mark.server
@pytest.mark.parametrize(
    ("user", "password", "message"),
    [
        ("admin", "wrong", "refused the login of MLFLOW_TRACKING_USERNAME=admin: wrong user or"),
        ("", "", "asks for a login: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"),
    ],
)
def test_a_wrong_or_missing_login_is_one_line_before_training(auth_server, tmp_path, user, password, message):
    url, _ = auth_server
    env = _login_env(url, user, password)
    result = cli("trainer.epochs=1", cwd=tmp_path, env=env, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr and "wrong" not in result.stderr.replace("wrong user", "")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--host", "0.0.0.0", "--no-auth"], "--no-auth would let anyone on the network read and delete"),
        (["--no-auth", "--", "--host", "0.0.0.0"], "--host after --: give --host, --port, --tls-cert to"),
        (["--no-auth", "--", "--host=0.0.0.0"], "--host=0.0.0.0 after --: give --host"),
        (["--host", "0.0.0.0"], "over plain HTTP would send every password in clear: pass --tls-cert FILE"),
        (["--host", "0.0.0.0", "--tls-cert", "cert.pem"], "--tls-cert and --tls-key go together"),
    ],
)  # fmt: skip
def test_no_login_or_plain_http_on_the_network_is_refused_in_one_line(tmp_path, arguments, message):
    command = [sys.executable, "-m", "pipeline.server", *arguments]
    env = {**os.environ, serve.DB_PASSWORD: "x"}
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert message in line, line


def test_behind_a_tls_proxy_a_login_off_loopback_is_let_through(tmp_path):
    """``--behind-tls-proxy`` (or a certificate) is what lets basic auth off loopback: past that
    check, this server stops at the next one (no PostgreSQL on that port)."""
    command = [sys.executable, "-m", "pipeline.server", "--host", "0.0.0.0", "--behind-tls-proxy"]
    command += ["--db-port", str(free_port())]
    env = {**os.environ, serve.DB_PASSWORD: "x"}
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env)
    (line,) = done.stderr.strip().splitlines()
    assert done.returncode != 0 and "nothing answers" in line, line


def test_mlflows_command_line_holds_no_secret():
    """The database's URI goes to ``mlflow server`` in its environment, which MLflow reads (its
    ``--backend-store-uri``'s envvar); a certificate goes to uvicorn."""
    from mlflow.cli import server

    (option,) = [p for p in server.params if p.name == "backend_store_uri"]
    assert option.envvar == serve.BACKEND_URI
    command = serve.server_command(Path("art"), "0.0.0.0", 5000, ["--workers", "2"], True, ("c.pem", "k.pem"))
    assert not any("postgresql" in arg or "--backend-store-uri" in arg for arg in command)
    assert command[command.index("--uvicorn-opts") + 1] == "--ssl-certfile c.pem --ssl-keyfile k.pem"


def test_the_artifacts_are_handed_over_without_following_a_link(tmp_path):
    """The serving user may plant ``x -> /etc/shadow`` in its artifacts folder: the next start as
    root hands over the link, never its target. Runs anywhere: as root it hands the folder to
    nobody; as another user to that user, where following the link to a root file would fail."""
    import pwd

    artifacts = tmp_path / "artifacts"
    (artifacts / "run").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "kept").write_text("not theirs")
    if os.geteuid() == 0:
        target = tmp_path / "shadow"
        target.write_text("root's")
        user = pwd.getpwnam("nobody")
        uid, gid = user.pw_uid, user.pw_gid
    else:
        target, uid, gid = Path("/etc/passwd"), os.getuid(), os.getgid()
    (artifacts / "run" / "x").symlink_to(target)
    (artifacts / "folder_link").symlink_to(elsewhere)
    before = {
        path: (path.stat().st_uid, path.stat().st_gid) for path in (target, elsewhere, elsewhere / "kept")
    }
    privileges.hand_over(uid, gid, artifacts)
    after = {path: (path.stat().st_uid, path.stat().st_gid) for path in before}
    assert after == before
    assert (artifacts / "run" / "x").lstat().st_uid == uid and (artifacts / "run").stat().st_uid == uid
    assert (artifacts / "folder_link").lstat().st_uid == uid and artifacts.stat().st_uid == uid


@pytest.mark.server
def test_while_the_servers_run_no_command_line_and_no_file_in_tmp_holds_a_password(team_server, auth_team):
    """Every process's ``ps -eo args`` and every file under /tmp, read while the session's two
    servers (one with logins) run: neither database password nor the admin's is there."""
    url, admin_password, database = auth_team
    secrets = {database.password, team_server[1].password, admin_password}
    listed = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert "mlflow server" in listed.replace("mlflow.server", "mlflow server")
    assert not [line for line in listed.splitlines() if any(secret in line for secret in secrets)]
    found = []
    for folder, _, files in os.walk("/tmp"):
        for name in files:
            path = os.path.join(folder, name)
            try:
                if os.path.islink(path) or os.path.getsize(path) > 4_000_000:
                    continue
                with open(path, "rb") as handle:
                    data = handle.read()
            except OSError:
                continue
            found += [path for secret in secrets if secret.encode() in data]
    assert found == []


def test_setup_generates_its_passwords_once_into_a_private_file(tmp_path):
    path = tmp_path / "convlab" / "server.env"
    first = serve.credentials(path, generate=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len({first[serve.DB_PASSWORD], first[serve.ADMIN_PASSWORD], first[serve.SECRET_KEY]}) == 3
    assert all(len(first[key]) >= 20 for key in (serve.DB_PASSWORD, serve.ADMIN_PASSWORD))
    assert serve.credentials(path, generate=True) == first  # kept: the role already has that password
    assert serve.credentials(tmp_path / "other.env", generate=True) != first  # no fixed password
    assert serve.credentials(tmp_path / "none.env") == {}


def test_postgresql_is_found_whatever_its_major_version():
    versions = postgres.postgres_versions()
    require(POSTGRESQL, None if versions else "PostgreSQL is not installed")
    assert all(Path(f"/usr/lib/postgresql/{v}/bin/postgres").exists() for v in versions)
    assert postgres.unavailable("99") == "PostgreSQL 99 is not installed (apt-get install postgresql)"


def test_the_cluster_serving_a_port_is_the_one_pg_lsclusters_names(tmp_path, monkeypatch):
    """Two clusters of different versions: each port finds its own (not the newest, not ``main``);
    a port none serves falls back to the newest installed version's ``main``. Debian's
    ``pg_lsclusters`` is stood in for by a script printing two clusters, so this runs anywhere."""
    listing = "13 other 5499 online postgres /x/13/other log\n15 main 5432 online postgres /x/15/main log\n"
    script = tmp_path / "pg_lsclusters"
    script.write_text(f"#!/bin/sh\nprintf '{listing}'\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert postgres.cluster_for(5499) == ("13", "other")
    assert postgres.cluster_for(5432) == ("15", "main")
    newest = (postgres.postgres_versions() or [""])[0]
    assert postgres.cluster_for(6543) == (newest, "main")


@pytest.mark.server
def test_started_as_root_the_server_serves_as_its_own_user(team_server):
    """The session's server, started as root with the default ``--run-as``: the processes that
    listen on its port and answer requests belong to convlab (an unprivileged user ``--setup``
    creates, not postgres, who owns every database), none to root. Where convlab cannot
    run this Python (a pyenv under /root: ``.ci/unprivileged-python`` opens it), this fails in CI
    and skips elsewhere: the fixture's server then had to run as root."""
    import psutil

    require_root()
    reason = privileges.cannot_run(serve.RUN_AS)
    require(f"a Python that {serve.RUN_AS} can run (.ci/unprivileged-python)", reason)
    port = int(team_server[0].rsplit(":", 1)[1])
    listening = [c.pid for c in psutil.net_connections("tcp") if c.laddr.port == port and c.pid]
    assert listening, f"nothing listens on port {port}"
    serving = {psutil.Process(pid) for pid in listening}
    serving |= {child for process in serving for child in process.children(recursive=True)}
    assert {process.username() for process in serving} == {serve.RUN_AS}
    assert all(process.uids().real != 0 and process.uids().effective != 0 for process in serving)


def test_a_user_who_cannot_run_the_python_is_one_line_before_anything_starts(tmp_path):
    """As root, with a Python that the serving user cannot reach (a venv in pytest's 0700
    temporary folder): one line naming the closed folder and the way out, before any setup."""
    require_root()
    require("runuser (util-linux)", None if shutil.which("runuser") else "runuser not found")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    python = tmp_path / "venv" / "bin" / "python"
    paths = os.pathsep.join([str(ROOT), sysconfig.get_path("purelib")])  # convlab, from that venv
    artifacts = tmp_path / "artifacts"
    command = [str(python), "-m", "pipeline.server", "--setup", "--artifacts", str(artifacts)]
    command += ["--credentials", str(tmp_path / "server.env"), "--port", str(free_port())]
    for run_as, expected in [
        (None, f"the user {serve.RUN_AS} cannot run {python} ("),
        ("nosuchuser", "--run-as nosuchuser: no such user"),
    ]:
        chosen = ["--run-as", run_as] if run_as else []
        done = subprocess.run([*command, *chosen], env={**os.environ, "PYTHONPATH": paths},
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 1
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("convlab: ") and expected in line, line
        assert (
            run_as or f"is closed to it): make it readable to {serve.RUN_AS}, or pass --run-as USER" in line
        )
    # refused before anything was set up: no secrets generated, no artifacts folder made
    assert not artifacts.exists() and not (tmp_path / "server.env").exists()


@pytest.mark.parametrize("seconds", [basic_auth.AUTH_CACHE_SECONDS, 0])
def test_the_basic_auth_config_sets_mlflows_credential_cache(seconds, monkeypatch):
    """A password checked once a minute per worker, not on every request (scrypt: tens of ms of CPU
    each); ``--auth-cache 0`` checks every request. Read back by MLflow's own parser."""
    found = importlib.util.find_spec("flask_wtf")
    require("Flask-WTF (pip install -e '.[server]')", None if found else "flask_wtf is not installed")
    from mlflow.server.auth.config import read_auth_config

    keys = ("MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_AUTH_ADMIN_USERNAME", basic_auth.ADMIN_PASSWORD)
    keys += (basic_auth.SECRET_KEY,)
    for key in keys:  # config() sets them, for the server's own process: put back after the test
        monkeypatch.setenv(key, "")
    database = postgres.Database("convlab_x", "convlab_x", "pw")
    path = basic_auth.config(database, "admin-password", "secret", cache_seconds=seconds)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    # it holds the database's password: not in a shared folder (unless the home folder is one)
    assert not path.is_relative_to("/tmp") or Path.home().is_relative_to("/tmp")
    parsed = read_auth_config()
    assert parsed.auth_cache_ttl_seconds == seconds and parsed.database_uri == database.uri
    shutil.rmtree(path.parent)


LOOPBACK = "127.0.0.1"


def _self_signed(folder: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key (PEM files in ``folder``)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert, private = folder / "cert.pem", folder / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))  # fmt: skip
    return str(cert), str(private)


@pytest.mark.slow
def test_with_a_certificate_mlflow_serves_https(tmp_path):
    """``server_command``'s TLS options, as the installed MLflow and uvicorn take them: the
    server answers HTTPS with that certificate (on a SQLite store here: no PostgreSQL needed)."""
    import http.client
    import ssl
    import urllib.request

    from teamserver import stop

    cert, key = _self_signed(tmp_path)
    port = free_port()
    command = serve.server_command(
        tmp_path / "artifacts", "127.0.0.1", port, ["--workers", "1"], False, (cert, key)
    )
    env = {**os.environ, serve.BACKEND_URI: f"sqlite:///{tmp_path / 'mlflow.db'}"}
    with open(tmp_path / "server.log", "w") as log:
        server = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    context = ssl.create_default_context(cafile=cert)
    try:
        for _ in range(240):
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(
                    f"https://127.0.0.1:{port}/health", timeout=10, context=context
                ) as answer:
                    assert answer.status == 200
                    break
            except OSError:  # not listening yet, or still starting its workers
                time.sleep(0.5)
        else:
            pytest.fail(f"no HTTPS answer: {(tmp_path / 'server.log').read_text()[-2000:]}")
        with pytest.raises((OSError, http.client.HTTPException)):  # plain HTTP: no answer
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
    finally:
        stop(server)
