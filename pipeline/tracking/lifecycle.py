"""A run's life in MLflow: opened off the critical path, always ended in a terminal state.

Importing MLflow and opening its store costs seconds on a laptop CPU (2 to 4 s), which a bare
Keras run does not pay. So ``run_context`` returns at once with a ``Run``, and
``Run.open_in_background()`` (called once TensorFlow is loaded: two big imports at once only
slow each other down) does that work in a thread while the data loads and the model trains,
when the main thread mostly waits on TensorFlow's kernels. ``tracking``'s logging calls made
before the run is open wait in a queue, in order, and are made in the main thread as soon as the
run is open (``Run.wait``); nothing is dropped. Once it is open, a tracking server that stops
answering is ridden out by ``backlog`` (metrics queue up, training goes on).

Whatever happens inside ``run_context``, the run ends FINISHED, FAILED (with the error as the
``convlab.error`` tag) or KILLED on Ctrl-C or SIGTERM, never left RUNNING. A run that fails
before it was opened is opened then, so the failure is recorded.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping

from pipeline.tracking import backlog, contract, faults, plots, scheduler, signals, store, system_metrics

log = logging.getLogger(__name__)

_opening: list[Run] = []  # the run being opened in this process, if any (one at a time)


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
    ):
        self.outage_seconds = outage_seconds
        self.uri, self.experiment_name, self.run_name, self.tags = uri, experiment_name, run_name, dict(tags)
        self.system_metrics = system_metrics
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
            if self._claimed:  # the sweep's claim on this job (``pipeline.sweep.jobs.claim``)
                from mlflow.entities import RunTag

                tags = [RunTag(k, str(v)) for k, v in tags.items()]
                MlflowClient(self.uri).log_batch(self._claimed, tags=tags, synchronous=True)
                self.run_id = self._claimed
            else:
                client = MlflowClient(self.uri)
                self.run_id = client.create_run(
                    self.experiment_id, tags=tags, run_name=self.run_name
                ).info.run_id
            if self.system_metrics:
                self._monitor = system_metrics.start(self.uri, self.run_id)
        except BaseException as err:  # raised again in the main thread, by wait()
            self._error = err

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


def defer(function: Callable, args: tuple, kwargs: dict) -> bool:
    """``tracking``'s hook: True when the call was queued for the run being opened."""
    return bool(_opening) and _opening[-1].defer(function, args, kwargs)


def call(function: Callable, args: tuple, kwargs: dict, batch: backlog.Batch | None = None):
    """``record``'s hook: the call queued while the run opens, else made, riding out an outage
    (``batch``: what the call writes, for a call whose answer nobody needs)."""
    if not _opening:
        return function(*args, **kwargs)
    if _opening[-1].defer(function, args, kwargs, batch):
        return None
    return _opening[-1].call(function, args, kwargs, batch)


def open_in_background() -> None:
    """Starts opening the run of this ``run_context`` in a thread (no-op outside one)."""
    if _opening:
        _opening[-1].open_in_background()


def wait() -> None:
    """Waits until the run of this ``run_context`` is open (no-op outside one)."""
    if _opening:
        _opening[-1].wait()


def settle() -> None:
    """Waits until the run is open and what an outage queued is written (no-op outside a run)."""
    if _opening:
        _opening[-1].wait()
        _opening[-1].settle()


@contextlib.contextmanager
def run_context(
    uri: str,
    experiment_name: str,
    run_name: str,
    tags: Mapping[str, str],
    claimed: str | None = None,
    outage_seconds: float = 300,
    system_metrics: bool = True,
) -> Iterator[Run]:
    """A run that ends FINISHED, FAILED or KILLED; ``tags`` may nest it under a sweep's parent;
    ``system_metrics``: MLflow samples the machine's use while the run is open.

    ``claimed``: the id of a run already created (RUNNING) for this job, to open instead of a new one.

    SIGTERM (a scheduler cancelling the job) is treated like Ctrl-C: the run ends KILLED.
    """
    run = Run(uri, experiment_name, run_name, tags, claimed, outage_seconds, system_metrics)
    _opening.append(run)
    previous = signals.sigterm_as_interrupt()
    try:
        yield run
        run.wait()  # inside the try: a queued call that fails fails the run
    except KeyboardInterrupt:
        with signals.held():  # a second SIGTERM (srun forwards SLURM's own) must not cut this short
            _end(run, "KILLED", "interrupted (Ctrl-C or SIGTERM)")
        raise
    except faults.OutageError:  # nothing can be recorded: the run stays RUNNING, its heartbeat stale
        with contextlib.suppress(Exception):
            _forget_active_run()
        raise
    except BaseException as err:
        full = faults.disk_full_path(err, uri)
        _end(run, "FAILED", f"no space left on device: {full}" if full else f"{type(err).__name__}: {err}")
        if full:  # one line, not SQLAlchemy's traceback
            raise faults.DiskFullError(f"no space left on device: {full} (tracking.uri={uri})") from None
        raise
    else:
        _end(run, "FINISHED")
    finally:
        _opening.remove(run)
        signals.restore(previous)


def _end(run: Run, status: str, error: str | None = None) -> None:
    """Ends the run; a failure's first line goes to the ``convlab.error`` tag, and a cluster
    job's scheduler output (submitit's stdout/stderr files) goes to ``scheduler/``.

    Cut short, the run is no longer MLflow's active run: MLflow's exit handler would otherwise
    end it FINISHED. It stays RUNNING with a stale heartbeat instead, which a sweep ends KILLED.
    """
    try:
        _end_now(run, status, error)
    except BaseException:
        with contextlib.suppress(Exception):
            _forget_active_run()
        raise


def _end_now(run: Run, status: str, error: str | None) -> None:
    import mlflow

    if not run.is_open:  # failed (or was interrupted) before its run was open: open it now
        try:
            run.wait()
        except BaseException:
            if not run.is_open:
                return  # the store itself failed: nothing to record the failure in
    for path in scheduler.job_log_files():
        with contextlib.suppress(Exception):
            mlflow.log_artifact(str(path), "scheduler")
    error = (error.splitlines() or [""])[0][: contract.MAX_VALUE] if error else None
    if error:
        with contextlib.suppress(Exception):
            mlflow.set_tag(contract.ERROR, error)
    with contextlib.suppress(Exception):  # system metrics are a bonus: never fail a run over them
        run.stop_system_metrics()
    try:
        run.call(mlflow.end_run, (status,), {})
    except faults.OutageError:
        _forget_active_run()
        raise
    except Exception as err:  # a full disk: ended with a write that needs no new space
        if not (
            faults.disk_full_path(err, run.uri)
            and faults.end_run_in_place(run.uri, run.run_id, status, error)
        ):
            raise


def _forget_active_run() -> None:
    """Drops MLflow's active run in this thread without writing to the store (it cannot be reached)."""
    from mlflow.tracking import fluent

    stack = fluent._active_run_stack.get()
    if stack:
        stack.pop()
