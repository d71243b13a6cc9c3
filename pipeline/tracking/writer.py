"""A run's artifacts written in a thread of their own while the run goes on.

    writer = Writer()
    writer.submit(function, args)  # returns at once; calls run in order, in the writer's thread
    writer.finish()                # waits for them; raises the first one's error

Drawing a figure into a PNG is most of what logging it costs (a tenth to a few tenths of a second
each on a laptop CPU, five figures a run): ``record.log_figure`` hands it to the run's writer, so
the figures are drawn while the run evaluates and logs its model. ``lifecycle.run_context``
finishes the writer before the run ends: every artifact is in the store before the run is
FINISHED, and one that failed fails the run.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

THREAD = "convlab-writer"


class Writer:
    def __init__(self):
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._drop = False

    def submit(self, function: Callable, args: tuple) -> None:
        """Queues ``function(*args)``; a thread starts with the first call (its own queue)."""
        if self._thread is None:
            self._queue = queue.Queue()
            self._thread = threading.Thread(target=self._work, args=(self._queue,), name=THREAD, daemon=True)
            self._thread.start()
        self._queue.put((function, args))

    def finish(self, drop: bool = False) -> None:
        """Waits until every queued call is made (``drop``: only the one being made, the others
        are dropped: the run is cut short), then raises the first call's error, once. Called
        again after a Ctrl-C cut it short, it waits again."""
        thread = self._thread
        if thread is not None:
            self._drop = self._drop or drop
            self._queue.put(None)  # the end of the queue
            thread.join()
            self._thread, self._drop = None, False
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _work(self, calls: queue.Queue) -> None:
        while (item := calls.get()) is not None:
            function, args = item
            if self._error is not None or self._drop:
                continue  # after a failure, or cut short: nothing more is written
            try:
                function(*args)
            except BaseException as err:  # raised again in the run's thread, by finish()
                self._error = err
