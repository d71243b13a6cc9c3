"""MLflow's system metrics on a run (CPU, memory, disk, network; GPU with nvidia-ml-py), quietly.

``mlflow.start_run(log_system_metrics=True)`` starts MLflow's monitor only once the run is the
active run in the main thread, which a short run reaches near its end (``opening.Run.wait``):
``start`` starts the same monitor right after the run is created instead.

System metrics are a bonus, never a word: the monitor's own lines, and what the store says when
the monitor's writes fail (the server is down, the disk is full: the run's own one line says
that), are dropped, so the one-line promise holds.
"""

from __future__ import annotations

import contextlib
import logging
import os

# one sample every this many seconds, unless $MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL says
# otherwise (MLflow's default, 10 s, leaves a short course run one point or none)
INTERVAL = 3.0
THREAD = "SystemMetricsMonitor"  # the name MLflow gives the monitor's thread
STOP_WAIT_SECONDS = 10.0  # a monitor stuck on a server that is down is left behind (a daemon)
# where a failed write of the monitor's thread is logged, besides the monitor's own logger
STORE_LOGGERS = ("mlflow.store.db.utils", "mlflow.utils.rest_utils", "urllib3.connectionpool")


class _NotFromTheMonitor(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.threadName != THREAD


def start(uri: str, run_id: str):
    """MLflow's own monitor on ``run_id``, sampling from now."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    quiet()
    interval = float(os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL") or INTERVAL)
    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval, tracking_uri=uri)
    monitor.start()
    return monitor


def stop(monitor) -> None:
    """Stops sampling, and logs a last point: the run's end (a short run's only one).

    MLflow's monitor drops the samples of its last, unfinished interval when it stops; its own
    ``finish`` waits for its thread without a limit.
    """
    import threading

    monitor._shutdown_event.set()
    thread = monitor._process
    if thread is not None:
        thread.join(STOP_WAIT_SECONDS)
        if thread.is_alive():
            return

    def last_point() -> None:
        with contextlib.suppress(Exception):
            monitor.collect_metrics()
            monitor.publish_metrics(monitor.aggregate_metrics())
            monitor.mlflow_logger.flush()

    last = threading.Thread(target=last_point, name=THREAD, daemon=True)  # quiet, as the monitor
    last.start()
    last.join(STOP_WAIT_SECONDS)


def quiet() -> None:
    logging.getLogger("mlflow.system_metrics").setLevel(logging.CRITICAL)
    for name in STORE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NotFromTheMonitor) for f in logger.filters):
            logger.addFilter(_NotFromTheMonitor())
