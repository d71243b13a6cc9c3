"""A joblib worker that dies (SIGKILL: what the out-of-memory killer sends) loses one job, not the sweep.

joblib's loky executor answers a dead worker by killing the other workers and raising
``TerminatedWorkerError`` from ``Parallel``, which Hydra's joblib launcher passes on: a long
traceback, and every job of the sweep stopped. ``install`` makes the launcher use
``ResilientParallel`` instead: it watches the workers' deaths (a ``pidfd`` per worker, so the
first to die is known exactly, not guessed), hands that worker's pid to ``on_lost`` (the sweep
ends that job's run FAILED, and the runs its death took along KILLED), and launches the jobs
that did not return again: finished ones are skipped, the lost one too (``jobs.skip_reason``),
the others train. The sweep then names the lost job and how to rerun it. Other launchers
(``local_jobs``: submitit's local processes) ``report`` a dead job's process to the same sweep.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import threading
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

OnLost = Callable[..., None]  # (pid of the first worker that died, its signal's name[, its host])


_listeners: list[OnLost] = []  # the sweep of this process, told of a job whose process died


def listen(on_lost: OnLost) -> None:
    """Makes ``report`` (any launcher's lost job) reach the sweep of this process."""
    _listeners[:] = [on_lost]


def report(pid: int | None, signal_name: str, host: str | None = None) -> None:
    """A launcher found a job's process dead (``pid`` on ``host``, this one by default, killed by
    ``signal_name``): its sweep ends its run."""
    for on_lost in _listeners:
        on_lost(pid, signal_name, host)


def install(on_lost: OnLost) -> None:
    """Makes Hydra's joblib launcher survive a dead worker (for this process's sweeps)."""
    from hydra_plugins.hydra_joblib_launcher import _core

    # private: the plugin's launch calls its module's Parallel and offers no hook around it;
    # checked on hydra-joblib-launcher 1.2.0 (tests/test_private_apis.py)
    _core.Parallel = lambda **kwargs: ResilientParallel(on_lost, **kwargs)


class ResilientParallel:
    """``joblib.Parallel`` that relaunches what a dead worker's executor left undone."""

    def __init__(self, on_lost: OnLost, **kwargs):
        self.on_lost, self.kwargs = on_lost, kwargs

    def __call__(self, tasks: Iterable) -> list:
        from joblib import Parallel
        from joblib.externals.loky.process_executor import TerminatedWorkerError

        tasks = list(tasks)
        results: list = [None] * len(tasks)
        todo = list(range(len(tasks)))
        for _ in range(len(tasks) + 1):  # each pass loses at least one job, or ends
            watch = DeathWatch()
            try:
                batch = Parallel(return_as="generator", **self.kwargs)(tasks[i] for i in todo)
                # strict: the generator is run to its end, not dropped; a dropped one aborts, and
                # its abort kills loky's shared workers, with any other call's job on them (a
                # study launches each trial in a thread of its own: pipeline.sweep.search.slots)
                for index, result in zip(todo, batch, strict=True):
                    results[index] = result
                return results
            except TerminatedWorkerError as err:
                todo = [i for i in todo if results[i] is None]
                signal_name = (re.findall(r"SIG[A-Z]+", str(err)) or ["a signal"])[0]
                log.error("a sweep worker died (%s); relaunching %d job(s)", signal_name, len(todo))
                self.on_lost(watch.first_dead(), signal_name)
            finally:
                watch.stop()
        return results


class DeathWatch(threading.Thread):
    """Notes which of this process's child processes dies first (``os.pidfd_open``: Linux)."""

    POLL_SECONDS = 0.2  # how often new workers are looked for

    def __init__(self):
        super().__init__(name="convlab-death-watch", daemon=True)
        self._stop_event = threading.Event()
        self._dead: list[int] = []
        if hasattr(os, "pidfd_open"):
            self.start()

    def first_dead(self) -> int | None:
        return self._dead[0] if self._dead else None

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        import psutil

        fds: dict[int, int] = {}  # pidfd -> pid
        try:
            while not self._stop_event.is_set():
                for child in psutil.Process().children():
                    if child.pid not in fds.values():
                        with contextlib.suppress(OSError):
                            fds[os.pidfd_open(child.pid)] = child.pid
                ready, _, _ = select.select(list(fds), [], [], self.POLL_SECONDS)
                for fd in ready:  # the kernel's answer at the moment it returned: first deaths only
                    self._dead.append(fds.pop(fd))
                    os.close(fd)
        finally:
            for fd in fds:
                os.close(fd)
