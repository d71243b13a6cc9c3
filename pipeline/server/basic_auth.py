"""MLflow's basic-auth app for the team server: its config file, users kept in the runs' database.

Every request carries a user and password (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``). MLflow checks
a password with scrypt, tens of ms of CPU by design, on every request unless its own credential
cache keeps a successful check (``auth_cache_ttl_seconds``): a run makes hundreds of requests, so
the server turns the cache on (``--auth-cache``, 60 s). A password changed through MLflow's API
takes effect at once on the server worker that handled the change, on the others within that time.

MLflow reads the users' database URI (with its password) from the config file only: the file is
0600, in a 0700 folder of its own that is not under the shared /tmp (``private_folder``), and the
server removes it when it stops. ``add_user`` gives a person a login of their own, so no client
ever needs the admin's password.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import tempfile
from pathlib import Path

from pipeline.server import postgres
from pipeline.server.postgres import ServerError

ADMIN = "admin"
ADMIN_PASSWORD, SECRET_KEY = "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"
AUTH_CACHE_SECONDS = 60  # each server worker trusts a login it checked for this long
# Team members get EDIT on every experiment (the team shares them); admins manage users
# (MLflow's /api/2.0/mlflow/users/create, or mlflow.server.get_app_client("basic-auth", uri)).
AUTH_INI = """[mlflow]
default_permission = EDIT
database_uri = {database_uri}
admin_username = {admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = {cache_seconds}
"""


def config(
    database: postgres.Database,
    admin_password: str | None,
    secret_key: str | None,
    cache_seconds: int = AUTH_CACHE_SECONDS,
    folder: Path | None = None,
) -> Path:
    """MLflow's basic-auth config (0600, in ``folder``, else a new ``private_folder()``): users
    kept in the same database; a successful login is trusted for ``cache_seconds`` by each server
    worker (0: never)."""
    if importlib.util.find_spec("flask_wtf") is None:
        raise ServerError("MLflow's basic-auth app needs Flask-WTF: pip install -e '.[server]'")
    if not admin_password:
        raise ServerError(
            f"no admin password for MLflow's basic-auth: run --setup once, or set {ADMIN_PASSWORD}"
        )
    path = Path(folder or private_folder()) / "basic_auth.ini"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        uri = database.uri.replace("%", "%%")
        handle.write(AUTH_INI.format(database_uri=uri, admin=ADMIN, cache_seconds=max(0, cache_seconds)))
    os.environ.update(MLFLOW_AUTH_CONFIG_PATH=str(path), MLFLOW_AUTH_ADMIN_USERNAME=ADMIN)
    os.environ[ADMIN_PASSWORD] = admin_password
    os.environ[SECRET_KEY] = secret_key or secrets.token_hex(32)
    return path


def private_folder() -> Path:
    """A new 0700 folder for the server's own files, never under the shared /tmp: below
    ``/run/convlab`` as root (a tmpfs on most systems), else ``$XDG_RUNTIME_DIR`` or ``~/.cache``.

    A server that dropped root empties its folder when it stops but cannot remove it from the
    root-owned ``/run/convlab``: the next start removes such empty folders."""
    if os.geteuid() == 0:
        base = Path("/run/convlab")
    elif os.environ.get("XDG_RUNTIME_DIR"):
        base = Path(os.environ["XDG_RUNTIME_DIR"]) / "convlab"
    else:
        base = Path.home() / ".cache" / "convlab"
    base.mkdir(mode=0o755 if os.geteuid() == 0 else 0o700, parents=True, exist_ok=True)
    for old in base.glob("auth-*"):
        with contextlib.suppress(OSError):  # not empty: a running server's
            old.rmdir()
    return Path(tempfile.mkdtemp(prefix="auth-", dir=base))


def add_user(database: postgres.Database, name: str) -> str:
    """Creates MLflow basic-auth user ``name`` in the server's database; returns the password it
    generated (shown once: only its scrypt hash is kept)."""
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    users = SqlAlchemyStore()
    users.init_db(database.uri)
    if users.has_user(name):
        raise ServerError(f"--add-user {name}: that user exists already")
    password = secrets.token_urlsafe(18)
    users.create_user(name, password)
    return password
