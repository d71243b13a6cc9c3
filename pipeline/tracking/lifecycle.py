"""A run's life in MLflow: opened off the critical path, always ended in a terminal state.

Importing MLflow and opening its store costs seconds on a laptop CPU (2 to 4 s), which a bare
Keras run does not pay. So ``run_context`` returns at once with a ``Run`` (``opening``), and
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
from collections.abc import Callable, Iterator, Mapping

from pipeline.tracking import backlog, contract, faults, heartbeat, opening, redaction, scheduler, signals

log = logging.getLogger(__name__)

_opening: list[opening.Run] = []  # the run being opened in this process, if any (one at a time)


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


def run_id() -> str | None:
    """The id of this ``run_context``'s run once it has been created, else None (no wait: the
    store may still be loading in its thread)."""
    run = _opening[-1] if _opening else None
    return run.run_id if run is not None and run.ready else None


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
    heartbeat_seconds: float = heartbeat.MAX_SECONDS,
) -> Iterator[opening.Run]:
    """A run that ends FINISHED, FAILED or KILLED; ``tags`` may nest it under a sweep's parent;
    ``system_metrics``: MLflow samples the machine's use while the run is open; a heartbeat
    (``heartbeat``) is logged every ``heartbeat_seconds`` from the run's creation to its end.

    ``claimed``: the id of a run already created (RUNNING) for this job, to open instead of a new one.

    SIGTERM (a scheduler cancelling the job) is treated like Ctrl-C: the run ends KILLED.
    """
    run = opening.Run(
        uri, experiment_name, run_name, tags, claimed, outage_seconds, system_metrics, heartbeat_seconds
    )
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
        run.stop_heartbeat()  # also for a run left RUNNING: it must look as dead as it is
        _opening.remove(run)
        signals.restore(previous)


def _end(run: opening.Run, status: str, error: str | None = None) -> None:
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


def _end_now(run: opening.Run, status: str, error: str | None) -> None:
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
    error = redaction.redact((error.splitlines() or [""])[0])[: contract.MAX_VALUE] if error else None
    if error:
        with contextlib.suppress(Exception):
            mlflow.set_tag(contract.ERROR, error)
    run.stop_heartbeat()
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

    # private: MLflow's only public way out of an active run, end_run, writes to the unreachable
    # store; checked on MLflow 3.0-3.18 (tests/test_private_apis.py)
    stack = fluent._active_run_stack.get()
    if stack:
        stack.pop()
