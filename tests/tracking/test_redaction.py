"""No secret in what convlab writes: a run and a 2-trial search, then the whole store (its
database's rows and the artifact tree) and the folders Hydra wrote, grepped for the password.

The SQLite variant runs anywhere: the password stands in a URL given as a free-text value
(``tracking.run_name``), which convlab writes as a param, a tag, a run name, ``.hydra/`` and log
lines. The PostgreSQL variant (root and PostgreSQL: the team server's database) tracks straight to
a database whose role has a password, so the store's own URL, and the study's storage, hold it.
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
from pathlib import Path

import pytest
from conftest import cli

from pipeline.sweep.search import study
from pipeline.tracking import contract, redaction

SHRUNK = ["trainer.epochs=1", "dataset.max_samples=120", "tracking.log_model=false"]
SEARCH = ["hydra/sweeper=optuna", "hydra.sweeper.sampler.seed=0", "hydra.sweeper.n_trials=2"]
SEARCH += ["hydra.sweeper.confirm.top_k=0", "optimizer.learning_rate=tag(log, interval(1e-4, 1e-1))"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql+psycopg2://runner:s3cret@127.0.0.1:5432/runs", "postgresql+psycopg2://runner:***@127.0.0.1:5432/runs"),
        ("tracking.uri=postgresql://u:p%40ss@h/db,seed=0", "tracking.uri=postgresql://u:***@h/db,seed=0"),
        ("uri: 'postgresql://u:a@b@h:1/d'", "uri: 'postgresql://u:***@h:1/d'"),
        ("postgresql+psycopg2\\://u\\:pw@h\\:5432/db", "postgresql+psycopg2\\://u\\:***@h\\:5432/db"),
        ('{"uri": "postgresql\\\\://u\\\\:pw@h/db"}', '{"uri": "postgresql\\\\://u\\\\:***@h/db"}'),
        ("http://user@host:5000 and sqlite:///mlflow.db", "http://user@host:5000 and sqlite:///mlflow.db"),
    ],
)  # fmt: skip
def test_a_urls_password_is_masked_wherever_it_stands(text, expected):
    assert redaction.redact(text) == expected


def test_a_secret_from_the_environment_is_masked_raw_and_encoded(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "hunter2/x")
    monkeypatch.setenv(contract.ENV_STUDY_STORAGE, "postgresql://u:pass%2Fword@h/db")
    text = "login hunter2/x, hunter2%2Fx; storage pass/word; a wrong user"
    assert redaction.redact(text) == "login ***, ***; storage ***; a wrong user"
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")  # short: it would mask ordinary words
    assert redaction.redact("a wrong user") == "a wrong user"


def test_log_lines_are_redacted_whatever_the_handler(caplog):
    redaction.redact_logs()
    with caplog.at_level(logging.INFO):
        logging.getLogger("hydra.launcher").info("#0 : tracking.uri=%s", "postgresql://u:s3cret@h/db")
    assert "s3cret" not in caplog.text and "postgresql://u:***@h/db" in caplog.text


def test_a_trials_overrides_carry_no_storage():
    """The storage (a URL with the database's password) reaches a trial through its environment."""
    context = study.Context("sqlite:///x.db", "e", "parent", "sweep", "postgresql://u:s3cret@h/db", 1)
    lines = study.trial_env("study", context, 3)
    assert not any("s3cret" in line or contract.ENV_STUDY_STORAGE in line for line in lines)
    assert f"++hydra.job.env_set.{contract.ENV_TRIAL}='3'" in lines


def _grep_tree(folder: Path, secret: str) -> list[str]:
    """The files under ``folder`` whose bytes (or names) hold ``secret``."""
    found = []
    for path in folder.rglob("*"):
        named = secret in str(path.relative_to(folder))
        if named or (path.is_file() and not path.is_symlink() and secret.encode() in path.read_bytes()):
            found.append(str(path))
    return found


def _run_and_search(folder: Path, uri: str, extra: list[str], env: dict | None = None) -> str:
    store = [f"tracking.uri={uri}", "tracking.experiment_name=secrets"]
    single = cli(*SHRUNK, *store, *extra, cwd=folder, env=env, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    search = cli("-m", *SEARCH, *SHRUNK, *store, *extra, cwd=folder, env=env, timeout=900)
    assert search.returncode == 0, search.stderr[-3000:]
    return single.stdout + single.stderr + search.stdout + search.stderr


@pytest.mark.slow
def test_a_run_and_a_search_write_no_password_to_a_sqlite_store(tmp_path):
    secret = "Zq-sqlite-s3cret"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    named = f"tracking.run_name='copied from postgresql://runner:{secret}@db.example:5432/runs'"
    output = _run_and_search(tmp_path, uri, [named])
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        dump = "\n".join(db.iterdump())
        runs = db.execute("SELECT count(*) FROM runs").fetchone()[0]
    assert runs == 4 and "params" in tables  # the run, the sweep's parent and its two trials
    assert "postgresql://runner:***@db.example" in dump  # written, masked
    assert secret not in dump
    assert _grep_tree(tmp_path, secret) == []  # artifacts, .hydra/, multirun/, outputs/, journal
    assert secret not in output  # the log lines


@pytest.mark.server
@pytest.mark.slow
def test_a_run_and_a_search_write_no_password_to_a_postgresql_store(team_server, tmp_path):
    """Tracked straight to PostgreSQL with the role's password in ``tracking.uri``: the study's
    storage is that URL too. Then pg_dump of the database, and the artifact tree, hold no password."""
    _, database = team_server
    output = _run_and_search(tmp_path, database.uri, [])
    dump = subprocess.run(
        ["runuser", "-u", "postgres", "--", "pg_dump", "--data-only", database.name],
        capture_output=True, text=True, cwd="/", check=True,
    ).stdout  # fmt: skip
    assert "convlab_optuna" in dump and "trial_values" in dump  # the study lives in the same database
    assert database.password not in dump
    assert _grep_tree(tmp_path, database.password) == []
    assert database.password not in output
