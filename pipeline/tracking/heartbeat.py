"""A run's heartbeat: the wall-clock time, logged from a background thread while the run is open.

A sweep tells a live run on another host from a dead one by its last heartbeat
(``sweep.stale_after``); so does the SLURM launcher, which cancels a job that went silent. Beaten
at an epoch's end, a healthy run whose epoch (or feature extraction) outlasts ``stale_after``
looked dead. Beaten from a thread, it looks alive as long as its process lives: a process that
is killed, frozen or cut off from the store stops beating.

The thread is its own, not MLflow's system-metrics monitor: that one is off with
``tracking.system_metrics=false`` and batches its writes.
"""

from __future__ import annotations

import contextlib
import threading
import time

from pipeline.tracking import contract, system_metrics

MAX_SECONDS = 30.0  # at most this long between beats
STOP_WAIT_SECONDS = 5.0  # a beat stuck on a server that is down is left behind (a daemon)


def every(stale_after: float) -> float:
    """Seconds between beats for a run that is dead after ``stale_after`` seconds of silence."""
    return min(MAX_SECONDS, stale_after / 3)


class Heartbeat:
    """Logs ``contract.HEARTBEAT`` (step = the beat's number) now and every ``seconds`` after."""

    def __init__(self, uri: str, run_id: str, seconds: float):
        self.uri, self.run_id, self.seconds = uri, run_id, seconds
        self._stop = threading.Event()
        system_metrics.quiet()  # a failed beat says nothing: the run's own line says what failed
        # named as MLflow's monitor: its store's complaints are dropped the same way
        self._thread = threading.Thread(target=self._beat, name=system_metrics.THREAD, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(STOP_WAIT_SECONDS)

    def _beat(self) -> None:
        from mlflow import MlflowClient

        client, step = MlflowClient(self.uri), 0
        while True:  # a first beat at once: a run that ends within ``seconds`` has beaten too
            with contextlib.suppress(Exception):  # an outage: no beat until the store answers
                client.log_metric(self.run_id, contract.HEARTBEAT, time.time(), step=step)
                step += 1
            if self._stop.wait(self.seconds):
                return
