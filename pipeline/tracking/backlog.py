"""A run's logging while its tracking server does not answer: training goes on, nothing is lost.

A logging call whose answer nobody needs (an epoch's metrics, tags, params) that finds the server
gone is not retried where it was made: it becomes a ``Batch`` (its metrics keep their step and
the time they were logged) in a queue, and one thread sends the queue, in order, with backoff
(1, 2, 4 ... 30 s), while the main thread trains on and queues behind it. Calls that need the
server (artifacts, the model, the run's end) wait first for the queue to be sent, then are
retried in place. Either way the outage is given ``outage_seconds`` from its start; past that,
``OutageError``, and the run's record stays RUNNING (a resume reruns it).

MLflow's active run belongs to the thread that started it, so the sending thread names the run:
``MlflowClient(uri).log_batch(run_id, ...)``.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pipeline.tracking import faults, store

log = logging.getLogger(__name__)

BACKOFF_MAX_SECONDS = 30  # retries during a server outage: 1, 2, 4, ... then every 30 s


@dataclass(frozen=True)
class Batch:
    """What one logging call would have written, as ``log_batch`` takes it; made when called."""

    metrics: Mapping[str, float] = field(default_factory=dict)
    step: int | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    timestamp_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def send(self, uri: str, run_id: str) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Metric, Param, RunTag

        metrics = [Metric(k, float(v), self.timestamp_ms, self.step or 0) for k, v in self.metrics.items()]
        params = [Param(k, str(v)) for k, v in self.params.items()]
        tags = [RunTag(k, str(v)) for k, v in self.tags.items()]
        MlflowClient(uri).log_batch(run_id, metrics=metrics, params=params, tags=tags, synchronous=True)


class Backlog:
    """One run's outage: when it began, and the batches waiting for the server, in order."""

    def __init__(self, uri: str, run_id: str, outage_seconds: float):
        self.uri, self.run_id, self.outage_seconds = uri, run_id, outage_seconds
        self._queue: collections.deque[Batch] = collections.deque()
        self._changed = threading.Condition()
        self._sending = False  # a thread is sending the queue
        self._started: float | None = None  # when the server stopped answering (monotonic)
        self._error: BaseException | None = None  # why the sending thread gave up

    def submit(self, batch: Batch, function: Callable, args: tuple, kwargs: dict) -> None:
        """Makes a call whose answer is not needed; if the server does not answer, ``batch`` is
        queued (as is every such call until the queue is sent) and training goes on."""
        with self._changed:
            self._raise_if_failed()
            if self._sending:
                self._queue.append(batch)
                return
        try:
            function(*args, **kwargs)
            return
        except Exception as err:
            if not faults.unreachable(err):
                raise
        with self._changed:
            self._begin()
            self._queue.append(batch)
            self._sending = True
        threading.Thread(target=self._send_queue, name="convlab-backlog", daemon=True).start()

    def call(self, function: Callable, args: tuple, kwargs: dict):
        """Makes a call that needs the server, once the queue is sent; a server that does not
        answer is retried with backoff until ``outage_seconds`` after the outage began."""
        self.settle()
        delay = 1.0
        while True:
            try:
                result = function(*args, **kwargs)
            except Exception as err:
                if not faults.unreachable(err):
                    raise
                with self._changed:
                    self._begin()
                    left = self._left()
                if left <= 0:
                    raise self._outage_error() from None
                time.sleep(min(delay, left))
                delay = min(delay * 2, BACKOFF_MAX_SECONDS)
                continue
            with self._changed:
                self._end()
            return result

    def settle(self) -> None:
        """Waits until the queue is sent (or the outage outlasted ``outage_seconds``)."""
        with self._changed:
            while self._sending:
                left = self._left()
                if left <= 0:
                    self._error = self._error or self._outage_error()
                    self._sending = False  # the thread, if it ever returns, sends no more
                    break
                self._changed.wait(timeout=min(left, 1.0))
            self._raise_if_failed()

    def _send_queue(self) -> None:
        delay = 1.0
        while True:
            with self._changed:
                if not self._sending:  # given up on by ``settle``
                    return
                if not self._queue:
                    self._sending = False
                    self._end()
                    self._changed.notify_all()
                    return
                batch = self._queue[0]
            try:
                batch.send(self.uri, self.run_id)
            except Exception as err:
                with self._changed:
                    left = self._left()
                    if not faults.unreachable(err) or left <= 0:
                        self._error = err if not faults.unreachable(err) else self._outage_error()
                        self._sending = False
                        self._changed.notify_all()
                        return
                time.sleep(min(delay, left))
                delay = min(delay * 2, BACKOFF_MAX_SECONDS)
                continue
            with self._changed:
                if self._queue and self._queue[0] is batch:
                    self._queue.popleft()

    def _begin(self) -> None:
        if self._started is None:
            self._started = time.monotonic()
            log.warning(
                "the tracking server at %s does not answer: retrying for up to %g s (training goes on)",
                store.redact(self.uri), self.outage_seconds,
            )  # fmt: skip

    def _end(self) -> None:
        if self._started is not None:
            log.warning(
                "the tracking server is back after %.0f s: nothing lost", time.monotonic() - self._started
            )
            self._started = None

    def _left(self) -> float:
        started = self._started if self._started is not None else time.monotonic()
        return self.outage_seconds - (time.monotonic() - started)

    def _raise_if_failed(self) -> None:
        """Raises why the queue could not be sent: an outage stays (nothing more can be written),
        another error is raised once (it fails the run, which must still be ended)."""
        error = self._error
        if error is not None:
            if not isinstance(error, faults.OutageError):
                self._error = None
            raise error

    def _outage_error(self) -> faults.OutageError:
        return faults.OutageError(
            f"the tracking server at {store.redact(self.uri)} did not answer for "
            f"{self.outage_seconds:g} s (tracking.outage_seconds); run {self.run_id} stays "
            "RUNNING in the store, and sweep.resume reruns it"
        )
