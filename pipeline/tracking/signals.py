"""A run's signals: a scheduler's SIGTERM is a Ctrl-C, and neither may cut a run's ending short.

Signal handlers belong to the main thread: elsewhere (a run inside an embedding application's
worker thread) these leave signals alone.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


def sigterm_as_interrupt():
    """SIGTERM raises ``KeyboardInterrupt`` from now on; returns the handler it replaced (None
    outside the main thread, where nothing was replaced)."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        return None


@contextlib.contextmanager
def held() -> Iterator[None]:
    """SIGINT and SIGTERM ignored meanwhile: a second one (srun forwards SLURM's own SIGTERM at a
    time limit) must not interrupt a run that is ending because of the first."""
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):
            previous[sig] = signal.signal(sig, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
