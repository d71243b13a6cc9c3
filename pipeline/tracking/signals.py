"""A run's signals: a scheduler's SIGTERM is a Ctrl-C, and neither may cut a run's ending short.

Signal handlers belong to the main thread: elsewhere (a run inside an embedding application's
worker thread) these leave signals alone.
"""

from __future__ import annotations

import contextlib
import functools
import signal
from collections.abc import Iterator

INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


def as_interrupt(signum, frame) -> None:
    """A signal handler: SIGTERM (a scheduler cancelling) behaves like Ctrl-C."""
    raise KeyboardInterrupt


def handle(handler, signums=INTERRUPTS) -> dict:
    """``handler`` for ``signums`` from now on; returns the handlers replaced, for ``restore``
    (nothing outside the main thread, where nothing was replaced)."""
    previous = {}
    for signum in signums:
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            previous[signum] = signal.signal(signum, handler)
    return previous


def sigterm_as_interrupt() -> dict:
    """SIGTERM raises ``KeyboardInterrupt`` from now on; returns the handler replaced.

    A handler set from Python before (a sweep's guard, whose jobs run in this process under the
    basic launcher) is called first: it must learn of the signal, or the sweep it guards ends
    FAILED instead of KILLED.
    """
    current = signal.getsignal(signal.SIGTERM)
    if callable(current) and current is not as_interrupt:
        return handle(functools.partial(_then_interrupt, current), (signal.SIGTERM,))
    return handle(as_interrupt, (signal.SIGTERM,))


def _then_interrupt(first, signum, frame) -> None:
    """``first``'s handling, then ``KeyboardInterrupt`` (if ``first`` did not raise one)."""
    first(signum, frame)
    raise KeyboardInterrupt


def ignore() -> dict:
    """SIGINT and SIGTERM ignored from now on; returns the handlers replaced."""
    return handle(signal.SIG_IGN)


def restore(previous: dict) -> None:
    """The handlers that ``handle`` (``ignore``, ``sigterm_as_interrupt``) replaced, back."""
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
