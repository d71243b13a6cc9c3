"""A run's signals: a scheduler's SIGTERM is a Ctrl-C, and neither may cut a run's ending short.

Signal handlers belong to the main thread: elsewhere (a run inside an embedding application's
worker thread) these leave signals alone.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


def sigterm_as_interrupt() -> dict:
    """SIGTERM raises ``KeyboardInterrupt`` from now on; returns the handler replaced, for
    ``restore`` (nothing outside the main thread, where nothing was replaced)."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        return {signal.SIGTERM: signal.signal(signal.SIGTERM, interrupt)}
    except ValueError:  # not the main thread: leave signals alone
        return {}


def ignore() -> dict:
    """SIGINT and SIGTERM ignored from now on (in the main thread); returns the handlers replaced."""
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            previous[sig] = signal.signal(sig, signal.SIG_IGN)
    return previous


def restore(previous: dict) -> None:
    """The handlers that ``ignore`` or ``sigterm_as_interrupt`` replaced, back."""
    for sig, handler in previous.items():
        if handler is not None:  # None: a handler not set from Python, which cannot be put back
            with contextlib.suppress(ValueError):
                signal.signal(sig, handler)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """SIGINT and SIGTERM ignored meanwhile: a second one (srun forwards SLURM's own SIGTERM at a
    time limit; a user presses Ctrl-C again) must not cut short what the first one started."""
    previous = ignore()
    try:
        yield
    finally:
        restore(previous)
