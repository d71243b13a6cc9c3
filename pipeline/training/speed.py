"""Speed and memory of one run: the course's eighth lesson ("strides make your model faster and
reduce memory consumption") measured, not assumed.

Once per run, after the last epoch: inference milliseconds per image at batch 1 and at batch 128
(random pixels at the model's input shape: the time does not depend on them; through one traced
function of the model, timed after a warm-up call), the model's size (its weights' bytes: what a
weights file holds), and the run's peak memory (peak resident set since the run started,
``reset_peak_memory``; with a GPU also the GPU's peak). Training seconds per epoch come from the
epoch logger. Each timing stops after ``BUDGET_SECONDS`` (at least one timed call), and batch 128
is skipped where batch 1 says it would take seconds (a big backbone on a CPU).
"""

from __future__ import annotations

import contextlib
import logging
import resource
import sys
import time
from pathlib import Path

import numpy as np

from pipeline.tracking import contract

log = logging.getLogger(__name__)

BATCHES = (1, 128)  # images per call timed
BUDGET_SECONDS = 0.1  # per batch size, after the warm-up: a run's fixed cost matters
MAX_CALLS = 10
MAX_WARM_UP_SECONDS = (
    10.0  # batch 128 skipped when 128x batch 1 predicts more for its two calls (batching makes it ~10x less)
)
LOGGED = (contract.TRAIN_SECONDS_PER_EPOCH, contract.MODEL_SIZE_MB, contract.PEAK_MEMORY_MB,
          contract.GPU_PEAK_MEMORY_MB, *map(contract.inference_ms, BATCHES))  # fmt: skip


def measure(model) -> dict[str, float]:
    """The speed and memory metrics of ``model``."""
    shape = tuple(model.inputs[0].shape[1:])
    images = np.random.default_rng(0).uniform(0, 255, (max(BATCHES), *shape)).astype("float32")
    metrics = {contract.MODEL_SIZE_MB: weights_bytes(model) / 1e6, contract.PEAK_MEMORY_MB: peak_rss_mb()}
    import tensorflow as tf

    # one trace for every batch size (a backbone's trace costs seconds)
    call = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec((None, *shape))])
    for batch in BATCHES:
        expected = 2 * batch * metrics.get(contract.inference_ms(1), 0.0) / 1000  # warm-up + one call
        if expected > MAX_WARM_UP_SECONDS:  # a big backbone on a CPU: not worth the run's time
            log.info("inference at batch %d not timed: about %.0f s on this device", batch, expected)
            continue
        metrics[contract.inference_ms(batch)] = inference_ms_per_image(call, images, batch)
    gpu = gpu_peak_mb()
    if gpu is not None:
        metrics[contract.GPU_PEAK_MEMORY_MB] = gpu
    return metrics


def inference_ms_per_image(call, images: np.ndarray, batch: int) -> float:
    """Milliseconds per image for ``call`` (a traced model) on the first ``batch`` images, after a
    warm-up call; the median of the timed calls."""
    import keras
    import tensorflow as tf

    x = tf.constant(images[:batch], dtype=tf.float32)
    keras.ops.convert_to_numpy(call(x))  # warm-up: the trace (first time), allocation
    times, started = [], time.perf_counter()
    while not times or (time.perf_counter() - started < BUDGET_SECONDS and len(times) < MAX_CALLS):
        begin = time.perf_counter()
        keras.ops.convert_to_numpy(call(x))  # to numpy: waits for the device
        times.append(time.perf_counter() - begin)
    return float(np.median(times)) * 1000 / batch


def weights_bytes(model) -> int:
    """Bytes of the model's weights (trainable or not), as a weights file holds them."""
    return int(sum(np.prod(w.shape) * np.dtype(w.dtype).itemsize for w in model.weights))


def reset_peak_memory() -> None:
    """Starts this run's peak memory afresh (runs sharing a process: a sweep's, a script's): Linux's
    peak resident set (``/proc/self/clear_refs``) and TensorFlow's GPU peak. Elsewhere the peak is
    the process's."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    import tensorflow as tf

    for index, _ in enumerate(tf.config.list_logical_devices("GPU")):
        tf.config.experimental.reset_memory_stats(f"GPU:{index}")


def peak_rss_mb() -> float:
    """The peak resident memory since ``reset_peak_memory`` (Linux's VmHWM), else the process's, in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux reports KiB, macOS bytes
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6


def gpu_peak_mb() -> float | None:
    """The first GPU's peak memory allocated by TensorFlow, in MB; None without a GPU."""
    import tensorflow as tf

    if not tf.config.list_logical_devices("GPU"):
        return None
    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 1e6
