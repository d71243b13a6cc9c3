"""A quiet terminal: TensorFlow's C++ start-up chatter filtered out of stderr, real errors kept.

TensorFlow 2.21 logs through absl straight to file descriptor 2 (``failed call to cuInit``,
``NodeDef mentions attribute use_unbounded_threadpool``, absl's own notice), and
``TF_CPP_MIN_LOG_LEVEL`` no longer silences all of it. ``quiet_stderr()`` routes descriptor 2
through a pipe for the length of a run and drops only lines that match known noise; every other
line (convlab's log, Python tracebacks, a C++ error we do not know) passes through unchanged.
``CONVLAB_VERBOSE=1`` turns the filter off.

Imports nothing heavy: the CLI wraps its whole run in it before TensorFlow loads.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import sys
import threading
from collections.abc import Iterator

# absl / glog format: "E0000 00:00:1795662823.993495    8496 cuda_platform.cc:52] message"
_ABSL = re.compile(rb"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\]\s]+:\d+\] (.*)")
# TensorFlow's older format: "2026-11-26 03:13:32.123456: I tensorflow/core/... message"
_TF_LEGACY = re.compile(rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: ([IWEF]) \S+\] ?(.*)")
# Error-level lines that are start-up noise on a machine without a GPU, or version skew
# between TensorFlow's Python and C++ halves that TensorFlow itself says it ignores.
_NOISY_ERRORS = re.compile(
    rb"failed call to cuInit|NodeDef mentions attribute|Unable to register cu(DNN|FFT|BLAS) factory"
    rb"|computation placer already registered|could not open file to read NUMA node"
)
# Whole lines that are noise whatever surrounds them.
_NOISY_LINES = re.compile(
    rb"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|^To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags"
    rb"|^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d INFO mlflow\.store\.db\.utils: (Creating initial|Updating database)"
)
_PARTIAL_FLUSH_SECONDS = 0.2  # a prompt or progress line without a newline is shown after this


def is_noise(line: bytes) -> bool:
    """Whether one stderr line is known start-up noise (info, warnings and known errors)."""
    line = line.rstrip(b"\r\n")
    if _NOISY_LINES.search(line):
        return True
    found = _ABSL.match(line) or _TF_LEGACY.match(line)
    if found is None:
        return False
    level, message = found.groups()
    return level in (b"I", b"W") or (level == b"E" and bool(_NOISY_ERRORS.search(message)))


def verbose() -> bool:
    """``CONVLAB_VERBOSE`` set to anything but empty, 0 or false."""
    return os.environ.get("CONVLAB_VERBOSE", "").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Filters file descriptor 2 (Python's and C++'s stderr alike) while the block runs.

    Child processes started inside the block inherit the filter. With ``CONVLAB_VERBOSE=1``,
    or when descriptor 2 cannot be redirected, the block runs with stderr untouched.
    """
    if verbose():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        read_end, write_end = os.pipe()
    except (OSError, ValueError, AttributeError):
        yield
        return
    os.dup2(write_end, 2)
    os.close(write_end)
    reader = threading.Thread(target=_pump, args=(read_end, saved), name="convlab-quiet", daemon=True)
    reader.start()
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last writer in this process is gone: the reader sees EOF
        reader.join(timeout=1.0)  # a lingering child process (joblib worker) may hold the pipe open
        if not reader.is_alive():
            os.close(saved)


def _pump(read_end: int, out: int) -> None:
    """Copies the pipe to ``out`` line by line, dropping noise; a partial line goes out after a pause."""
    pending = b""
    with contextlib.suppress(OSError):
        while True:
            ready, _, _ = select.select([read_end], [], [], _PARTIAL_FLUSH_SECONDS)
            if not ready:
                if pending:
                    _write(out, pending)
                    pending = b""
                continue
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            *lines, pending = re.split(rb"(?<=[\n\r])", pending + chunk)
            for line in lines:
                if not is_noise(line):
                    _write(out, line)
        if pending and not is_noise(pending):
            _write(out, pending)
    os.close(read_end)


def _write(fd: int, data: bytes) -> None:
    while data:
        written = os.write(fd, data)
        data = data[written:]
