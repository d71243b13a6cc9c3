"""A run being opened in MLflow off the critical path, its logging calls queued until it is.

    run = opening.Run(uri, experiment_name, run_name, tags)  # returns at once
    run.open_in_background()                                 # MLflow loads in a thread
    run.wait()                                               # open here; what waited is logged

Importing MLflow, opening its store and creating the run take seconds (2 to 4 s on a laptop CPU):
``Run`` does it in a thread while the data loads and the model trains, then imports what logging
needs at the end of a run (``LATER_IMPORTS``, matplotlib). Calls made before the run is open
wait in its queue (``Run.defer``) and are made, in order, by ``Run.wait``; once it is open, a
tracking server that stops answering is ridden out by ``backlog`` (``Run.call``).
``lifecycle.run_context`` makes the ``Run`` of a job and ends it in a terminal state.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping

from pipeline.tracking import backlog, heartbeat, plots, redaction, store, system_metrics


class Run:
    """An MLflow run being opened: ``run_id``/``experiment_id`` once ``wait()`` returned."""

    def __init__(
        self,
        uri: str,
        experiment_name: str,
        run_name: str,
        tags: Mapping[str, str],
        claimed: str | None = None,
        outage_seconds: float = 300,
        system_metrics: bool = True,
        heartbeat_seconds: float = heartbeat.MAX_SECONDS,
    ):
        self.outage_seconds = outage_seconds
        self.uri, self.experiment_name, self.run_name, self.tags = uri, experiment_name, run_name, dict(tags)
        self.system_metrics = system_metrics
        self.heartbeat_seconds = heartbeat_seconds
        self._heartbeat: heartbeat.Heartbeat | None = None  # beating since the run was created
        self.run_id: str | None = None
        self._claimed = claimed  # a run created earlier to claim a sweep's job: opened, not created
        self.experiment_id: str | None = None
        self._queue: list[tuple[Callable, tuple, dict, backlog.Batch | None]] = []
        self._backlog: backlog.Backlog | None = None  # made on the first call once the run is open
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._open = False
        self._monitor = None  # MLflow's SystemMetricsMonitor, sampling since the run was created

    def open_in_background(self) -> None:
        """Starts importing MLflow, opening the store and creating the run, in a thread."""
        if self._thread is None and not self._open:
            self._thread = threading.Thread(
                target=self._create_in_background, name="convlab-open-run", daemon=True
            )
            self._thread.start()

    @property
    def is_open(self) -> bool:
        """Whether the run is MLflow's active run in this thread."""
        return self._open

    @property
    def ready(self) -> bool:
        """Whether ``wait()`` would return without waiting."""
        return self._open or (self._thread is not None and not self._thread.is_alive())

    def wait(self) -> None:
        """Blocks until the run exists, makes it MLflow's active run here, then logs what waited."""
        if self._open:
            return
        if self._thread is not None:
            self._thread.join()
        elif self.run_id is None and self._error is None:
            self._create()  # never sent to the background: open it here
        if self._error is not None:
            raise self._error
        import mlflow

        mlflow.set_tracking_uri(self.uri)
        mlflow.start_run(run_id=self.run_id, log_system_metrics=False)  # sampled since creation
        self._open = True
        queued, self._queue = self._queue, []
        for function, args, kwargs, batch in queued:
            self.call(function, args, kwargs, batch)

    def call(self, function: Callable, args: tuple, kwargs: dict, batch: backlog.Batch | None = None):
        """Makes a logging call, riding out a server that stops answering (``backlog``): a call
        with a ``batch`` (nothing to answer) is queued and training goes on; any other waits for
        what was queued, then is retried; for up to ``outage_seconds``, then ``OutageError``."""
        if not self.uri.startswith(("http:", "https:")):
            return function(*args, **kwargs)
        if self._backlog is None:
            self._backlog = backlog.Backlog(self.uri, self.run_id, self.outage_seconds)
        if batch is not None:
            return self._backlog.submit(batch, function, args, kwargs)
        return self._backlog.call(function, args, kwargs)

    def settle(self) -> None:
        """Waits until what was queued during an outage is written (``backlog.Backlog.settle``)."""
        if self._backlog is not None:
            self._backlog.settle()

    def defer(
        self, function: Callable, args: tuple, kwargs: dict, batch: backlog.Batch | None = None
    ) -> bool:
        """Queues a logging call while the run is still opening; False: make the call now."""
        if self._open:
            return False
        if self.ready:
            self.wait()
            return False
        self._queue.append((function, args, kwargs, batch))
        return True

    def _create(self) -> None:
        try:
            from mlflow import MlflowClient
            from mlflow.tracking.context import registry
            from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

            self.experiment_id = store.get_or_create_experiment(self.uri, self.experiment_name)
            # the tags mlflow.start_run would add: source, user, git commit
            tags = registry.resolve_tags(self.tags | {MLFLOW_RUN_NAME: self.run_name})
            tags = redaction.redact_values(tags)  # run name and tags: no secret in the store
            if self._claimed:  # the sweep's claim on this job (``pipeline.sweep.jobs.claim``)
                from mlflow.entities import RunTag

                tags = [RunTag(k, str(v)) for k, v in tags.items()]
                MlflowClient(self.uri).log_batch(self._claimed, tags=tags, synchronous=True)
                self.run_id = self._claimed
            else:
                client = MlflowClient(self.uri)
                self.run_id = client.create_run(
                    self.experiment_id, tags=tags, run_name=tags[MLFLOW_RUN_NAME]
                ).info.run_id
            self._heartbeat = heartbeat.Heartbeat(self.uri, self.run_id, self.heartbeat_seconds)
            if self.system_metrics:
                self._monitor = system_metrics.start(self.uri, self.run_id)
        except BaseException as err:  # raised again in the main thread, by wait()
            self._error = err

    def stop_heartbeat(self) -> None:
        """No more beats: the run ends, or is left RUNNING to look as dead as it is."""
        beat, self._heartbeat = self._heartbeat, None
        if beat is not None:
            beat.stop()

    def stop_system_metrics(self) -> None:
        """Stops sampling, with a last point at the run's end (``system_metrics.stop``)."""
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            system_metrics.stop(monitor)

    def _create_in_background(self) -> None:
        self._create()
        if self._error is None:
            _import_for_later()


LATER_IMPORTS = ("mlflow.data", "mlflow.models", "mlflow.tensorflow")  # data sets, signatures, the model


def _import_for_later() -> None:
    """What logging needs once training ends (MLflow's data sets, signature and Keras flavor,
    matplotlib), imported while it trains: about a second off the end of a run."""
    import importlib

    for name in LATER_IMPORTS:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    plots.pyplot()
