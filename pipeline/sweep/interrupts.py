"""Ending a sweep cleanly when it is interrupted, whatever launcher runs its jobs.

Ctrl-C reaches the whole process group; a scheduler's SIGTERM reaches only the main process.
Either way the main process forwards SIGTERM to every process it started (joblib/loky workers,
submitit's local jobs), which end their own runs KILLED (``lifecycle.run_context``), waits a
short grace period, kills what is left, and only then closes the books: every child run of the
sweep still RUNNING, and the parent, end KILLED. A process killed with SIGKILL closes nothing:
``sweep.resume`` recognises its stale runs (see ``pipeline.sweep``).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import signal
import time
from collections.abc import Callable

from pipeline.tracking import signals

log = logging.getLogger(__name__)

GRACE_SECONDS = 20  # workers get this long to end their runs before they are killed


class SweepGuard:
    """While a sweep is open in this process: signals end it KILLED, a crash ends it FAILED.

    ``close`` is called with the final status on any way out of the process (``atexit``),
    unless ``release`` was called first because the sweep ended normally.
    """

    def __init__(self, close: Callable[[str], None]):
        self._close = close
        self.interrupted = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> SweepGuard:
        self._previous = signals.handle(self._on_signal)  # outside the main thread: left alone
        atexit.register(self._at_exit)
        return self

    def release(self) -> None:
        """The sweep ended normally: signals back to what they were, nothing to close at exit."""
        atexit.unregister(self._at_exit)
        signals.restore(self._previous)
        self._previous = {}

    def _on_signal(self, signum, frame) -> None:
        if not self.interrupted:
            self.interrupted = True
            stop_descendants(signal.SIGTERM)
        raise KeyboardInterrupt

    def _at_exit(self) -> None:
        signals.ignore()  # for good: a second Ctrl-C must not cut the cleanup short
        reap_descendants()
        try:
            self._close("KILLED" if self.interrupted else "FAILED")
        except Exception as err:  # the store may be gone too: say so, once
            log.error("could not close the sweep's runs: %s", err)


def stop_descendants(sig: int = signal.SIGTERM) -> int:
    """Sends ``sig`` to every process this one started (recursively); returns how many."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.send_signal(sig)
    return len(children)


def reap_descendants(grace: float = GRACE_SECONDS) -> None:
    """Asks every descendant to stop, waits up to ``grace`` seconds, then kills the rest."""
    import psutil

    children = psutil.Process().children(recursive=True)
    if not children:
        return
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    started = time.monotonic()
    _, alive = psutil.wait_procs(children, timeout=grace)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=5)
    log.debug("stopped %d processes in %.1f s", len(children), time.monotonic() - started)


def process_alive(pid: int, started: float | None) -> bool:
    """Whether process ``pid`` on this host is still the one that started at ``started``."""
    import psutil

    try:
        process = psutil.Process(pid)
        return started is None or abs(process.create_time() - started) < 1.0
    except psutil.Error:
        return False


def process_start_time() -> float:
    import psutil

    return psutil.Process().create_time()
