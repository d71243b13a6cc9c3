"""One run, dispatched: open the MLflow run, tag it, set up Keras, then train or predict.

``execute(run, info)`` takes a validated ``RunConfig`` plus what Hydra knows about the run
(choices, overrides, output folder, sweep) and returns a ``RunResult``. The CLI
(``python -m pipeline``) and the Python API (``pipeline.run``) both end here. ``train`` and
``predict`` share this dispatcher, not each other: each gets the ``tf.distribute`` strategy and
returns its metrics.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import subprocess
import time
from pathlib import Path

from pipeline.config import sizes
from pipeline.config.schemas import RunConfig
from pipeline.model import accelerator
from pipeline.tracking import contract, heartbeat, lifecycle, record
from pipeline.training import checkpoint, predict, train, wiring

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What the launcher knows about a run, beyond its config."""

    choices: dict[str, str]  # group -> chosen option
    overrides: list[str]  # as typed on the command line (or passed to ``run``)
    output_dir: Path | None  # holds Hydra's .hydra/ folder
    params: dict  # the whole composed config, to log as params
    variant: str  # short label: the overrides that define the variant, seed left out
    sweep_tags: dict[str, str] = dataclasses.field(default_factory=dict)
    claimed_run_id: str | None = None  # a sweep job's claim: its run, created before training
    reopened: bool = False  # claimed_run_id is a KILLED run reopened: it has its params already
    resumed: dict | None = None  # the checkpoint's state it continues from (None: from epoch 0)


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What ``pipeline.run`` returns: the finished run, as MLflow recorded it.

    Attributes:
        run_id: The MLflow run's id.
        experiment_id: Its MLflow experiment's id.
        status: ``FINISHED``, ``FAILED`` or ``KILLED``.
        metrics: The final epoch's metrics, plus ``best_val_accuracy`` and ``best_epoch``.
        history: Each metric per epoch.
        model_uri: The logged model (``models:/m-...``), for ``mlflow.pyfunc.load_model``;
            None with ``tracking.log_model=false``.
    """

    run_id: str
    experiment_id: str
    status: str
    metrics: dict[str, float]  # final epoch's metrics, plus best_val_accuracy / best_epoch
    history: dict[str, list[float]]
    model_uri: str | None = None


def execute(run: RunConfig, info: RunInfo) -> RunResult:
    """Runs and logs one run; the MLflow run ends FINISHED, FAILED or KILLED."""
    if run.task == "train":
        sizes.check_parameter_count(run)  # before MLflow and TensorFlow load
        plan = wiring.plan(run)  # the config read once: everything below takes plain values
    started = time.perf_counter()
    with lifecycle.run_context(run.tracking.uri, run.tracking.experiment_name, run_name(run, info),
                               run_tags(run, info), info.claimed_run_id, run.tracking.outage_seconds,
                               run.tracking.system_metrics,
                               heartbeat.every(run.sweep.stale_after)) as active:  # fmt: skip
        if not info.reopened:  # a reopened run has them (and sweep.resume=last would differ)
            params = record.flatten(info.params)
            record.log_params({k: v for k, v in params.items() if k != "trainer.resume"})
        if info.output_dir is not None:  # Hydra's records of the run, redacted
            record.log_artifacts(info.output_dir / ".hydra", ".hydra")
        strategy = setup_keras(run)
        if run.task == "predict":
            active.open_in_background()  # MLflow loads while the images decode and the model predicts
            metrics, history, model_uri = predict.predict_and_log(run, strategy), {}, None
        else:
            identity = checkpoint.identity(info.params)
            metrics, history, model_uri = train.train(plan, strategy, identity, info.resumed)
            log.info("run %s: val_accuracy=%.4f", active.run_id, metrics[contract.VAL_ACCURACY])
        record.log_metrics({contract.RUN_SECONDS: time.perf_counter() - started})
    if run.task == "train":  # FINISHED: nothing left to resume
        checkpoint.remove(run.trainer.checkpoint.dir, active.run_id)
    return RunResult(active.run_id, active.experiment_id, contract.FINISHED, metrics, history, model_uri)


def run_name(run: RunConfig, info: RunInfo) -> str:
    """``tracking.run_name``, else the variant and the seed: unique within a sweep."""
    return run.tracking.run_name or f"{info.variant} seed={run.seed}"


def run_tags(run: RunConfig, info: RunInfo) -> dict[str, str]:
    """Every group's option, the variant, the seed, the overrides, the git commit, the sweep's tags."""
    tags = {contract.group_tag(group): option for group, option in info.choices.items()}
    tags |= {
        contract.VARIANT: info.variant,
        contract.SEED: str(run.seed),
        contract.OVERRIDES: " ".join(info.overrides) or "(defaults)",
    }
    commit = _git_commit()
    if commit:
        tags[contract.GIT_COMMIT] = commit
    return tags | info.sweep_tags


def setup_keras(run: RunConfig):
    """Device, float policy, seed and determinism for a run; returns its ``tf.distribute`` strategy."""
    import keras

    # fresh layer names and graph per run; first: it also resets Keras' global float policy,
    # which configure then sets (after it, mixed precision was silently float32)
    keras.backend.clear_session(free_memory=False)
    strategy, device = accelerator.configure(**wiring.accelerator_arguments(run))
    keras.config.disable_interactive_logging()  # no progress bars from predict() calls
    # Runs sharing a process (sweeps, scripts) retrace Keras' step functions: expected, not a bug.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    keras.utils.set_random_seed(run.seed)
    _set_determinism(run.trainer.deterministic, run.accelerator.jit_compile)
    record.set_tags({f"{contract.ACCELERATOR_PREFIX}{k}": v for k, v in device.items()})
    return strategy


_determinism = {"on": False}  # TensorFlow's op determinism, once switched on in this process


def _set_determinism(deterministic: bool, jit_compile: bool) -> None:
    """Same seed, same config, same machine: same metrics.

    XLA (jit_compile) does not run under op determinism, so with it on, runs are reproducible
    only up to float round-off. TensorFlow's public API can switch op determinism on but not
    off again, so once a run of this process has switched it on, later runs keep it (and Keras
    then compiles without XLA).
    """
    import tensorflow as tf

    if deterministic and jit_compile:
        log.warning("accelerator.jit_compile=true: op determinism is off, seeds reproduce runs approximately")
    if deterministic and not jit_compile:
        tf.config.experimental.enable_op_determinism()
        _determinism["on"] = True
    elif _determinism["on"]:
        log.warning(
            "op determinism stays on: an earlier run in this process switched it on, and TensorFlow "
            "cannot switch it off (start a new process for trainer.deterministic=false or jit_compile)"
        )


@functools.cache
def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
