"""A tracking server that stops answering, in-process on a SQLite store (no server, no root):
``backlog.Backlog`` queues what cannot be sent and sends it in order once the server is back,
gives up past ``outage_seconds`` in one error, and does not retry a client's own mistake; and
``faults.end_run_in_place`` ends a run whose store's disk is full. The end-to-end versions, with a
real server killed and restarted, are ``test_outage.py`` and ``test_database_restart.py``."""

from __future__ import annotations

import dataclasses
import time

import pytest

from pipeline.tracking import backlog, contract, faults


class Outage:
    """The tracking server, down for ``seconds`` from now (None: for good), as MLflow's client sees it."""

    def __init__(self, seconds: float | None):
        self.until = None if seconds is None else time.monotonic() + seconds

    def check(self) -> None:
        if self.until is None or time.monotonic() < self.until:
            raise ConnectionError("Connection refused")  # what requests raises for a server that is gone


@dataclasses.dataclass(frozen=True)
class Sent(backlog.Batch):
    """A batch whose sending goes through ``outage``: it fails while the server is down."""

    outage: Outage | None = None

    def send(self, uri: str, run_id: str) -> None:
        self.outage.check()
        super().send(uri, run_id)


@pytest.fixture
def run(store):
    """``(uri, run_id)``: a RUNNING run in the session's SQLite store."""
    client = store.client()
    experiment_id = client.create_experiment(store.experiment)
    return store.uri, client.create_run(experiment_id).info.run_id


def _submit(queue: backlog.Backlog, batch: Sent, uri: str, run_id: str) -> None:
    def direct():  # the call the run makes first, as MLflow's fluent API would
        batch.outage.check()
        batch.send(uri, run_id)

    queue.submit(batch, direct, (), {})


def test_epochs_logged_during_an_outage_reach_the_store_in_order_once_it_is_back(run, store):
    uri, run_id = run
    queue = backlog.Backlog(uri, run_id, outage_seconds=60)
    outage = Outage(1.5)  # the sending thread fails once (at 0 and 1 s), then sends all at 3 s
    logged = []
    for epoch in range(1, 5):
        batch = Sent(metrics={contract.LOSS: 1.0 / epoch}, step=epoch, outage=outage)
        started = time.monotonic()
        _submit(queue, batch, uri, run_id)
        assert time.monotonic() - started < 0.5  # training goes on: nothing waits for the server
        logged.append(batch.timestamp_ms)
    queue.settle()
    history = store.client().get_metric_history(run_id, contract.LOSS)
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2, 3, 4]
    assert {m.step: m.value for m in history} == {epoch: 1.0 / epoch for epoch in range(1, 5)}
    assert sorted(m.timestamp for m in history) == logged  # when each epoch ended, not when it was sent
    assert store.client().get_run(run_id).info.status == contract.RUNNING


def test_an_outage_longer_than_its_time_is_one_error_and_the_run_stays_running(run, store):
    uri, run_id = run
    queue = backlog.Backlog(uri, run_id, outage_seconds=1)
    outage = Outage(None)
    _submit(queue, Sent(metrics={contract.LOSS: 1.0}, step=1, outage=outage), uri, run_id)
    started = time.monotonic()
    with pytest.raises(faults.OutageError, match="did not answer for 1 s") as raised:
        queue.settle()
    assert time.monotonic() - started < 5
    assert "stays RUNNING" in str(raised.value) and "sweep.resume" in str(raised.value)
    with pytest.raises(faults.OutageError):  # nothing more is written: every later call says so
        _submit(queue, Sent(metrics={contract.LOSS: 0.5}, step=2, outage=outage), uri, run_id)
    assert store.client().get_run(run_id).info.status == contract.RUNNING  # a resume reruns it
    assert store.client().get_metric_history(run_id, contract.LOSS) == []


def test_a_call_that_needs_the_server_waits_for_it_and_a_mistake_is_not_retried(run):
    uri, run_id = run
    queue = backlog.Backlog(uri, run_id, outage_seconds=60)
    outage = Outage(1.0)

    def answer():
        outage.check()
        return "answered"

    assert queue.call(answer, (), {}) == "answered"  # retried after 1 s, the server being back
    calls = []

    def mistake():
        calls.append(1)
        raise ValueError("INVALID_PARAMETER_VALUE: a client's own mistake")

    with pytest.raises(ValueError, match="a client's own mistake"):
        queue.call(mistake, (), {})
    with pytest.raises(ValueError, match="a client's own mistake"):
        queue.submit(backlog.Batch(metrics={contract.LOSS: 1.0}), mistake, (), {})
    assert len(calls) == 2  # each tried once, not retried as an outage


def test_a_run_whose_stores_disk_is_full_is_ended_in_place(run, store):
    uri, run_id = run
    assert faults.end_run_in_place(uri, run_id, contract.FAILED, "disk full: /data/mlflow.db")
    ended = store.client().get_run(run_id)
    assert ended.info.status == contract.FAILED and ended.info.end_time
    assert ended.data.tags[contract.ERROR] == "disk full: /data/mlflow.db"
    # a run already ended keeps its end; a store that is not SQLite is not touched here
    assert faults.end_run_in_place(uri, run_id, contract.KILLED, "later")
    assert store.client().get_run(run_id).info.status == contract.FAILED
    assert not faults.end_run_in_place("http://127.0.0.1:1", run_id, contract.FAILED, "x")
