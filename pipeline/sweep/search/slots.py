"""Trials that never wait: ``n_jobs`` slots, each launching one job at a time, refilled at once.

Hydra's ``Launcher.launch(jobs, initial_job_idx)`` returns when the whole batch has: a trial
launched in a batch of ``n_jobs`` that is pruned (or just short) leaves its worker idle until the
batch's slowest trial ends (hydra#2435, #2461). Here every job is a batch of one, launched from a
thread of its own, and the study asks the next trial the moment any job returns.

Why threads around each launcher's own ``launch``, not each back-end's futures (loky's,
submitit's, Ray's): the launchers keep all they do per job (job numbers and folders, joblib's
relaunch after a dead worker, submitit's and Ray's lost jobs, SLURM's stale ones, Ctrl-C
cancelling a job) and any launcher works, not only the three. What makes the calls safe from
threads:

- job numbers (``initial_job_idx``, hence ``hydra.job.num`` and the job folders) are drawn in the
  main thread, one per call, so they stay distinct;
- joblib: every call's ``Parallel`` gets loky's one reusable executor (same arguments: no resize),
  ``n_jobs`` workers, one task each; submitit (local, SLURM): an executor per call, a folder per
  job id; Ray: ``ray_cluster`` starts Ray once, under a lock, and polls its job;
- the study is asked and told only in the main thread.

The basic launcher runs its job in this very process: one slot, in the main thread, as before.

Interrupts: Ctrl-C and SIGTERM reach the main thread (the sweep guard has already sent SIGTERM to
the jobs' processes); ``interrupt`` raises ``KeyboardInterrupt`` in every slot's thread too, so
each launcher's own way out runs (Ray cancels its job, joblib stops without relaunching), and
waits a while for them. The threads are daemons: nothing waits for a job on the way out.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
from collections.abc import Callable, Hashable
from typing import Any

log = logging.getLogger(__name__)

Launch = Callable[[list[list[str]], int], list]  # (jobs, initial_job_idx) -> JobReturns
POLL_SECONDS = 0.5
INTERRUPT_WAIT_SECONDS = 70.0  # Ray's cancel waits up to 60 s for a job to end its run KILLED


class Slots:
    """``size`` jobs in flight at most, each launched alone; ``wait`` returns those that ended."""

    def __init__(self, launch: Launch, size: int):
        self.launch, self.size = launch, max(size, 1)
        self._threads: dict[Hashable, threading.Thread] = {}
        self._done: queue.Queue = queue.Queue()

    @property
    def free(self) -> int:
        return self.size - len(self._threads)

    @property
    def busy(self) -> int:
        return len(self._threads)

    def start(self, key: Hashable, job: list[str], job_idx: int) -> None:
        """Launches ``job`` as job number ``job_idx``: in a thread, or here with one slot."""
        if self.size == 1:  # the basic launcher runs the task in this process: main thread only
            self._threads[key] = threading.current_thread()
            self._done.put((key, self.launch([job], job_idx)[0], None))
            return
        thread = threading.Thread(
            target=self._run, args=(key, job, job_idx), name=f"convlab-slot-{job_idx}", daemon=True
        )
        self._threads[key] = thread
        thread.start()

    def _run(self, key: Hashable, job: list[str], job_idx: int) -> None:
        try:
            self._done.put((key, self.launch([job], job_idx)[0], None))
        except BaseException as err:  # re-raised in the main thread (``wait``)
            self._done.put((key, None, err))

    def wait(self) -> list[tuple[Hashable, Any]]:
        """Blocks until a job ends; ``(key, JobReturn)`` of every job ended so far. A launcher
        that raised (not the job: Hydra keeps a job's error in its JobReturn) raises here."""
        ended = [self._done.get(timeout=None) if self.size == 1 else self._next()]
        while not self._done.empty():
            ended.append(self._done.get_nowait())
        returns = []
        for key, job_return, error in ended:
            self._threads.pop(key, None)
            if error is not None:
                raise error
            returns.append((key, job_return))
        return returns

    def _next(self):
        while True:  # a timeout, so Ctrl-C reaches the main thread between polls
            try:
                return self._done.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue

    def interrupt(self, wait: float = INTERRUPT_WAIT_SECONDS) -> None:
        """``KeyboardInterrupt`` in every slot's thread; waits up to ``wait`` s for them to end."""
        threads = [t for t in self._threads.values() if t is not threading.current_thread()]
        for thread in threads:
            if thread.is_alive() and thread.ident is not None:
                raise_in(thread.ident, KeyboardInterrupt)
        for thread in threads:
            thread.join(timeout=wait / max(len(threads), 1))
        alive = sum(t.is_alive() for t in threads)
        if alive:
            log.warning("[sweep] %d launcher thread(s) still waiting on their jobs; leaving them", alive)


def raise_in(thread_id: int, error: type[BaseException]) -> None:
    """Raises ``error`` in thread ``thread_id`` at its next Python instruction (CPython's own
    ``PyThreadState_SetAsyncExc``: a thread blocked in C code gets it when that returns)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(error))
