"""MLflow's basic-auth app for the team server: its config file, users kept in the runs' database.

Every request carries a user and password (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``). MLflow checks
a password with scrypt, tens of ms of CPU by design, on every request unless its own credential
cache keeps a successful check (``auth_cache_ttl_seconds``): a run makes hundreds of requests, so
the server turns the cache on (``--auth-cache``, 60 s). A password changed through MLflow's API
takes effect at once on the server worker that handled the change, on the others within that time.
"""

from __future__ import annotations

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
) -> Path:
    """MLflow's basic-auth config (0600, in a private folder): users kept in the same database;
    a successful login is trusted for ``cache_seconds`` by each server worker (0: never)."""
    if importlib.util.find_spec("flask_wtf") is None:
        raise ServerError("MLflow's basic-auth app needs Flask-WTF: pip install -e '.[server]'")
    if not admin_password:
        raise ServerError(
            f"no admin password for MLflow's basic-auth: run --setup once, or set {ADMIN_PASSWORD}"
        )
    folder = Path(tempfile.mkdtemp(prefix="convlab-auth-"))
    path = folder / "basic_auth.ini"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        uri = database.uri.replace("%", "%%")
        handle.write(AUTH_INI.format(database_uri=uri, admin=ADMIN, cache_seconds=max(0, cache_seconds)))
    os.environ.update(MLFLOW_AUTH_CONFIG_PATH=str(path), MLFLOW_AUTH_ADMIN_USERNAME=ADMIN)
    os.environ[ADMIN_PASSWORD] = admin_password
    os.environ[SECRET_KEY] = secret_key or secrets.token_hex(32)
    return path
