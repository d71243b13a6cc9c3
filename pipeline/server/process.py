"""An MLflow server running as a child process: waited for until it answers, and stopped with the
workers it started. ``python -m pipeline.ui`` runs one this way; the tests and benchmarks start
the team server so (``tests/teamserver.py``)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request

from pipeline.server.postgres import ServerError


def wait_until_ready(url: str, process: subprocess.Popen | None = None, timeout: float = 180) -> None:
    """Polls the server's ``/health`` until it answers; a ``ServerError`` if ``process`` exits first
    or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServerError(f"the MLflow server exited with code {process.returncode} before answering")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise ServerError(f"the MLflow server at {url} did not answer within {timeout:.0f} s")


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """Stops a server started with ``start_new_session=True``, its workers included: SIGTERM to
    its session, SIGKILL after ``timeout`` seconds."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
