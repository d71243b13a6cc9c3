"""One redaction for every value convlab writes: MLflow params, tags, run names, descriptions and
text artifacts, Hydra's ``.hydra/`` records, log lines, Hydra's output folder names.

    from pipeline.tracking import redaction
    redaction.redact("postgresql://runner:s3cret@db/runs")   # 'postgresql://runner:***@db/runs'

Two kinds of secret are replaced by ``***``:

- the password of any URL (``scheme://user:PASSWORD@host``), wherever it stands in a text: a
  ``tracking.uri``, a study's storage, an override line, a YAML file, an error message;
- the values of the environment variables that hold secrets (``SECRET_ENV``: a tracking login,
  the server's database password) and the passwords of the URLs in ``URL_ENV``, wherever they
  appear, raw or percent-encoded.

Secrets reach a job through its environment (inherited from the process that launched it), never
through its overrides: what is in a job's config ends up in ``.hydra/``. Imports nothing heavy.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from pipeline.tracking import contract

MASK = "***"
# scheme://user:PASSWORD@ -- the password runs to the last "@" before the host, as urlsplit reads
# it; Hydra's override grammar escapes the colons (scheme\://user\:PASSWORD@), and JSON escapes
# those backslashes again (scheme\\://...): any number of them counts too
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*\\*://[^\s/?#@:'\"\\]*\\*:)[^\s/?#'\"]+@")
SECRET_ENV = (
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "CONVLAB_DB_PASSWORD",
    "MLFLOW_AUTH_ADMIN_PASSWORD",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
)
URL_ENV = ("MLFLOW_TRACKING_URI", contract.ENV_STUDY_STORAGE, "MLFLOW_BACKEND_STORE_URI")
MIN_SECRET = 8  # a shorter one ("wrong", "test") would mask ordinary words: left to the URL rule
TEXT_SUFFIXES = (".yaml", ".yml", ".txt", ".log", ".json", ".md", ".csv", ".html", ".ini", ".cfg")


def redact(text: str) -> str:
    """``text`` with every URL's password and every known secret replaced by ``***``."""
    text = str(text)
    if "@" in text:
        text = _URL_PASSWORD.sub(lambda found: f"{found['head']}{MASK}@", text)
    for secret in known_secrets():
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_values(values: Mapping[str, object]) -> dict[str, str]:
    """Each value of ``values`` (params, tags) redacted; the keys are names, kept as they are."""
    return {key: redact(str(value)) for key, value in values.items()}


def known_secrets() -> tuple[str, ...]:
    """The secrets this process knows from its environment, raw and percent-encoded, longest first."""
    return _secrets(tuple(os.environ.get(name, "") for name in SECRET_ENV + URL_ENV))


@functools.lru_cache(maxsize=8)
def _secrets(values: tuple[str, ...]) -> tuple[str, ...]:
    found = set(values[: len(SECRET_ENV)]) | {_password(uri) for uri in values[len(SECRET_ENV) :]}
    found |= {quote(secret, safe="") for secret in found} | {unquote(secret) for secret in found}
    return tuple(sorted((s for s in found if len(s) >= MIN_SECRET), key=len, reverse=True))


def _password(uri: str) -> str:
    try:
        return urlsplit(uri).password or ""
    except ValueError:
        return ""


def redact_files(folder: str | Path, suffixes: Iterable[str] = TEXT_SUFFIXES, below: bool = True) -> None:
    """Rewrites the text files in ``folder`` (and ``below`` it) redacted, in place: Hydra's
    ``.hydra/`` records of a job, a report, before they are logged (so that the local copy holds
    no secret either). Links are left alone."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for path in folder.rglob("*") if below else folder.iterdir():
        if path.suffix not in tuple(suffixes) or not path.is_file() or path.is_symlink():
            continue
        text = path.read_text(errors="replace")
        clean = redact(text)
        if clean != text:
            path.write_text(clean)


class _RedactingRecords:
    """A log record factory whose records carry their message already redacted."""

    def __init__(self, factory):
        self.factory = factory

    def __call__(self, *args, **kwargs) -> logging.LogRecord:
        record = self.factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: left for logging to report as it would
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return record


def redact_logs() -> None:
    """Every log line of this process redacted, whoever logs it and whatever handlers Hydra sets
    up later (a record factory, not a handler's filter: Hydra replaces the handlers). Idempotent."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _RedactingRecords):
        logging.setLogRecordFactory(_RedactingRecords(factory))
