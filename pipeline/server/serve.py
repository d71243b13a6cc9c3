"""A team's MLflow tracking server on one machine: runs in PostgreSQL, artifacts proxied by it,
and only the team let in.

    pip install -e ".[server]"                    # the PostgreSQL driver and MLflow's basic-auth app
    sudo .venv/bin/python -m pipeline.server --setup --host 0.0.0.0 --artifacts /srv/convlab/artifacts \
        --tls-cert /etc/ssl/convlab.pem --tls-key /etc/ssl/private/convlab.key
    sudo .venv/bin/python -m pipeline.server --add-user alice   # prints alice's password, once
    # on alice's machines:
    export MLFLOW_TRACKING_URI=https://THAT_MACHINE:5000
    export MLFLOW_TRACKING_USERNAME=alice MLFLOW_TRACKING_PASSWORD=...

This is ``mlflow server --artifacts-destination DIR --host H --port P`` with the database's URI
(and its password) in its environment (``MLFLOW_BACKEND_STORE_URI``), never on its command line,
which ``ps`` shows every local user: clients log artifacts and models through the server (no
shared filesystem, no cloud credentials on the workers).

- Bound to anything but loopback, the server runs MLflow's basic-auth app (``--app-name
  basic-auth``; users and permissions in the same database): every request needs a user and
  password, which clients give as ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``.
  ``--no-auth`` there is refused in one line (bind 127.0.0.1 behind a reverse proxy that
  authenticates instead). ``--auth`` turns it on for loopback too. Each person gets a login of
  their own (``--add-user NAME``): the admin's password never leaves this machine.
- Off loopback, passwords must not cross the network in clear: ``--tls-cert FILE --tls-key FILE``
  serve HTTPS (uvicorn's ``--ssl-certfile``/``--ssl-keyfile``), or ``--behind-tls-proxy`` says a
  proxy in front (nginx, caddy) terminates TLS. Neither: refused in one line.
- No fixed passwords: ``--setup`` generates the database role's password, the admin's and the
  session secret, once, into a 0600 file whose path it prints (``--credentials``, default
  ``~/.config/convlab/server.env``), and sets the role's password to it.
- ``--setup`` (as root, on Debian's ``postgresql`` package, whatever its major version) starts
  the local cluster that serves ``--db-port`` and creates the role and the database if missing.
- Started as root, the server itself runs as ``--run-as`` (default ``convlab``, a system user
  that ``--setup`` creates), never as root, unless ``--run-as root`` says so.
- Secrets come from the environment (``CONVLAB_DB_PASSWORD``, ``MLFLOW_AUTH_ADMIN_PASSWORD``) or
  the ``--credentials`` file, never from the command line.

Arguments after ``--`` go to ``mlflow server`` as they are (``-- --workers 8``), except those
this command sets itself (``--host``, ``--port``...: refused there, so ``--no-auth`` stays on
loopback). MLflow's
server-side jobs (GenAI judges: eight more processes) are off unless
``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true``: convlab logs and reads runs, it needs none of them.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.config.errors import ConvlabError
from pipeline.server import basic_auth, postgres, privileges
from pipeline.server.basic_auth import ADMIN, ADMIN_PASSWORD, AUTH_CACHE_SECONDS, SECRET_KEY
from pipeline.server.postgres import ServerError
from pipeline.tracking import contract, store

RUN_AS = "convlab"  # the unprivileged system user a server started as root runs as (--setup creates it)
CREDENTIALS = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "convlab" / "server.env"
DB_PASSWORD = "CONVLAB_DB_PASSWORD"
BACKEND_URI = "MLFLOW_BACKEND_STORE_URI"  # mlflow server's --backend-store-uri, from its environment
# mlflow server's options that this command sets: refused after "--" (-- --host 0.0.0.0 would
# take a --no-auth server off loopback)
OWN_OPTIONS = ("--host", "-h", "--port", "-p", "--backend-store-uri", "--app-name", "--artifacts-destination")


def credentials(path: Path = CREDENTIALS, generate: bool = False) -> dict[str, str]:
    """The server's secrets, ``KEY=VALUE`` lines in a 0600 file; generated once with ``generate``."""
    path = Path(path)
    if path.is_file():
        pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        return {key.strip(): value.strip() for key, value in pairs}
    if not generate:
        return {}
    values = {
        DB_PASSWORD: secrets.token_urlsafe(24),
        "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN,
        ADMIN_PASSWORD: secrets.token_urlsafe(18),
        SECRET_KEY: secrets.token_hex(32),
    }
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write("# convlab's team server (python -m pipeline.server --setup); keep it 0600\n")
        handle.writelines(f"{key}={value}\n" for key, value in values.items())
    return values


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_command(
    artifacts: Path,
    host: str,
    port: int,
    extra: Sequence[str] = (),
    auth: bool = False,
    tls: tuple[str, str] | None = None,
) -> list[str]:
    """The ``mlflow server`` command line, run by this environment's Python: no secret on it (the
    database's URI is in its environment, ``BACKEND_URI``). ``tls``: (certificate, key) files."""
    own = OWN_OPTIONS + (("--uvicorn-opts",) if tls else ())
    refused = [arg for arg in extra if arg.split("=", 1)[0] in own]
    if refused:
        raise ServerError(
            f"{refused[0]} after --: give --host, --port, --tls-cert to python -m pipeline.server itself"
        )
    ssl = (
        ["--uvicorn-opts", f"--ssl-certfile {shlex.quote(tls[0])} --ssl-keyfile {shlex.quote(tls[1])}"]
        if tls
        else []
    )
    return [
        *(sys.executable, "-m", "mlflow", "server"),
        *("--artifacts-destination", str(Path(artifacts).absolute())),
        *("--host", host, "--port", str(port)),
        *(("--app-name", "basic-auth") if auth else ()),
        *ssl,
        *extra,
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline.server", description=__doc__.split("\n")[0])
    parser.add_argument("--setup", action="store_true", help="as root: start PostgreSQL, create role and db")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: every one)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--artifacts", default="mlartifacts", help="folder the server keeps artifacts in")
    parser.add_argument("--database", default="convlab", help="PostgreSQL database (%(default)s)")
    parser.add_argument("--user", default="convlab", help="PostgreSQL role (%(default)s)")
    parser.add_argument("--db-host", default="127.0.0.1", help="PostgreSQL host (%(default)s)")
    parser.add_argument("--db-port", type=int, default=5432)
    parser.add_argument("--credentials", default=str(CREDENTIALS), help="the 0600 file of generated secrets")
    parser.add_argument("--auth", action="store_true", help="MLflow's basic-auth on loopback too")
    parser.add_argument("--no-auth", action="store_true", help="loopback only: no login")
    parser.add_argument(
        "--auth-cache",
        type=int,
        default=AUTH_CACHE_SECONDS,
        metavar="SECONDS",
        help="each worker trusts a login it checked for this long (%(default)s; 0: check every request)",
    )
    parser.add_argument("--run-as", default=RUN_AS, help="started as root, serve as this user (%(default)s)")
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM), with --tls-key")
    parser.add_argument("--tls-key", help="the certificate's private key (PEM)")
    parser.add_argument(
        "--behind-tls-proxy", action="store_true", help="off loopback: a TLS proxy is in front"
    )
    parser.add_argument(
        "--add-user", metavar="NAME", help="create a login for NAME, print its password, exit"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Sets up PostgreSQL if asked, then becomes the MLflow server (Ctrl-C stops it)."""
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = _parser().parse_args(argv[: len(argv) - len(extra) - (1 if "--" in argv else 0)])
    try:
        _serve(args, extra)
    except ConvlabError as err:
        sys.exit(f"convlab: {err}")


def _serve(args: argparse.Namespace, extra: list[str]) -> None:
    auth = args.auth or not is_loopback(args.host)
    tls = _tls(args, auth)
    server_command(Path(args.artifacts), args.host, args.port, extra, auth, tls)  # refused: one line, now
    drop = os.geteuid() == 0 and args.run_as != "root" and not args.add_user
    if drop and args.setup:  # before anything is set up: that user must be able to run this Python
        if args.run_as == RUN_AS:  # its own user; one named with --run-as must exist
            privileges.ensure_user(args.run_as)
        privileges.check(args.run_as)
    secret = credentials(Path(args.credentials), generate=args.setup)
    password = os.environ.get(DB_PASSWORD) or secret.get(DB_PASSWORD, "")
    database = postgres.Database(args.database, args.user, password, args.db_host, args.db_port)
    if args.setup:
        postgres.setup_postgres(database)
        if Path(args.credentials).is_file():
            print(f"convlab: the server's passwords are in {Path(args.credentials).absolute()} (0600)")
    if not database.password:
        raise ServerError(
            f"no database password: run --setup once (it writes {args.credentials}), or set {DB_PASSWORD}"
        )
    store.check(database.uri)  # PostgreSQL is listening and lets the role in
    if drop and not args.setup:  # before anything is made
        privileges.check(args.run_as)
    if args.add_user:
        _add_user(database, args.add_user)
        return
    artifacts = Path(args.artifacts).absolute()
    artifacts.mkdir(parents=True, exist_ok=True)
    private = basic_auth.private_folder() if auth or tls else None  # deleted when the server stops
    owned: list[Path] = [private] if private else []
    if auth:
        admin_password = os.environ.get(ADMIN_PASSWORD) or secret.get(ADMIN_PASSWORD)
        key = os.environ.get(SECRET_KEY) or secret.get(SECRET_KEY)
        owned.append(basic_auth.config(database, admin_password, key, args.auth_cache, private))
    if tls and private:  # copies the serving user can read (a key is often root's alone), 0600
        tls = (_private_copy(tls[0], private / "tls.crt"), _private_copy(tls[1], private / "tls.key"))
        owned += [Path(path) for path in tls]
    if drop:
        privileges.drop(args.run_as, artifacts, owned)
    who = "basic-auth: MLFLOW_TRACKING_USERNAME/PASSWORD" if auth else "no login (loopback)"
    runs = store.redact(database.uri)
    scheme = "https" if tls else "http"
    print(f"convlab: MLflow server for {scheme}://{args.host}:{args.port} ({who}; runs in {runs})")
    # studies (hydra/sweeper=optuna) go to the same PostgreSQL: every machine that runs them exports this
    print(f"convlab: studies: export {contract.ENV_STUDY_STORAGE}={runs} (with the password)")
    sys.stdout.flush()
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    os.environ[BACKEND_URI] = database.uri  # mlflow server reads it (its --backend-store-uri's envvar)
    command = server_command(artifacts, args.host, args.port, extra, auth, tls)
    _run_until_stopped(command, private)


def _private_copy(path: str, copy: Path) -> str:
    descriptor = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(Path(path).read_bytes())
    return str(copy)


def _tls(args: argparse.Namespace, auth: bool) -> tuple[str, str] | None:
    """The (certificate, key) to serve HTTPS with; refuses a login over plain HTTP off loopback."""
    if args.no_auth and not is_loopback(args.host):
        raise ServerError(
            f"--host {args.host} --no-auth would let anyone on the network read and delete every run; "
            "drop --no-auth (MLflow's basic-auth), or bind 127.0.0.1 behind a reverse proxy that "
            "authenticates"
        )
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ServerError("--tls-cert and --tls-key go together: the certificate and its private key")
    for path in (args.tls_cert, args.tls_key):
        if path and not Path(path).is_file():
            raise ServerError(f"--tls-cert/--tls-key {path}: no such file")
    if auth and not is_loopback(args.host) and not (args.tls_cert or args.behind_tls_proxy):
        raise ServerError(
            f"--host {args.host} over plain HTTP would send every password in clear: pass "
            "--tls-cert FILE --tls-key FILE, or --behind-tls-proxy where a TLS proxy is in front"
        )
    return (
        (str(Path(args.tls_cert).absolute()), str(Path(args.tls_key).absolute())) if args.tls_cert else None
    )


def _add_user(database: postgres.Database, name: str) -> None:
    password = basic_auth.add_user(database, name)
    print(f"convlab: user {name} added; their password, shown only now: {password}")
    print(
        f"convlab: on {name}'s machines: export MLFLOW_TRACKING_USERNAME={name} MLFLOW_TRACKING_PASSWORD=..."
    )


def _run_until_stopped(command: list[str], private: Path | None) -> None:
    """Runs ``mlflow server`` until it stops (SIGTERM, Ctrl-C: passed on), then removes ``private``
    (the basic-auth config's folder); exits with the server's code."""
    server = subprocess.Popen(command)

    def pass_on(signum, frame):
        if server.poll() is None:
            server.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, pass_on)
    try:
        code = server.wait()
    finally:
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
