"""A quiet terminal: TensorFlow's C++ start-up noise hidden, real errors and convlab's own lines kept."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT, TINY, cli

# What TensorFlow 2.21 prints on a CPU-only machine, line for line (absl's format, to fd 2).
NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1795662816.621082    8496 cudart_stub.cc:31] Could not find cuda drivers on your "
    "machine, GPU will not be used.",
    "E0000 00:00:1795662823.993495    8496 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
    "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "E0000 00:00:1795662838.020983    8496 node_def_util.cc:682] NodeDef mentions attribute "
    "use_unbounded_threadpool which is not in the op definition: Op<name=MapDataset> Unknown "
    "attributes will be ignored.",
    "2026-11-26 03:13:32.123456: I tensorflow/core/util/port.cc:113] oneDNN custom operations are on.",
]
REAL_ERROR = "E0000 00:00:1795662840.000000    8496 bfc_allocator.cc:485] Allocator ran out of memory"
NOISE_MARKS = ("absl::InitializeLog", "cudart_stub", "cuInit", "NodeDef mentions", "oneDNN")


def _run_filtered(env: dict) -> subprocess.CompletedProcess:
    """A process that writes TensorFlow's noise, a real C++ error and a Python traceback to fd 2."""
    script = textwrap.dedent(
        f"""
        import os, sys
        from pipeline.quiet import quiet_stderr
        with quiet_stderr():
            for line in {NOISE!r} + [{REAL_ERROR!r}]:
                os.write(2, (line + "\\n").encode())
            print("convlab: a line of our own", file=sys.stderr)
            os.write(2, b"progress 3/10")  # no newline: still shown
            raise RuntimeError("a real crash")
        """
    )
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True
    )


def test_noise_is_dropped_and_real_errors_pass_through():
    done = _run_filtered({"CONVLAB_VERBOSE": "0"})

    assert done.returncode == 1
    assert not any(mark in done.stderr for mark in NOISE_MARKS), done.stderr
    for kept in (REAL_ERROR, "convlab: a line of our own", "progress 3/10", "RuntimeError: a real crash"):
        assert kept in done.stderr


def test_convlab_verbose_shows_everything():
    done = _run_filtered({"CONVLAB_VERBOSE": "1"})

    for line in [*NOISE, REAL_ERROR, "RuntimeError: a real crash"]:
        assert line in done.stderr


@pytest.mark.slow
def test_a_default_run_prints_no_noise_and_at_most_15_lines(store, tmp_path):
    done = cli(*TINY, *store.overrides, cwd=tmp_path, env={"CONVLAB_VERBOSE": ""})

    assert done.returncode == 0, done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) <= 15, lines
    assert not [line for line in lines if any(mark in line for mark in NOISE_MARKS)], lines


def test_a_users_mistake_still_shows_its_one_line(tmp_path):
    done = cli("dataset=digit_recognizer", f"dataset.path={tmp_path / 'missing.csv'}", cwd=tmp_path)

    assert done.returncode != 0
    assert done.stderr.startswith("convlab: ") and len(done.stderr.strip().splitlines()) == 1, done.stderr
