"""The edge between Hydra and a run: composed config in, validated run + run info out.

Both entry points end here: the Hydra task function (``python -m pipeline``, one run or each job
of a sweep) and the Python API (``pipeline.run``). Below this module nothing reads Hydra.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import sys
import tempfile
import uuid
from pathlib import Path

from pipeline.config import checks, composition, overrides
from pipeline.config.errors import ConfigError, ConvlabError
from pipeline.model import features
from pipeline.sweep import interrupts, jobs
from pipeline.tracking import contract, faults, redaction, registry, store, sweep_runs, ui
from pipeline.training import checkpoint, runner
from pipeline.training.runner import RunInfo

log = logging.getLogger(__name__)
# the parent's params ``convlab.reopen.<run id>.<end time>``: which process reopened a KILLED run
REOPEN_PREFIX = "convlab.reopen."


def task(cfg) -> float:
    """The Hydra task: validate, train, return the final ``sweep.metric`` (NaN for a failed sweep job)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    redaction.redact_logs()  # a sweep's worker process logs too
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    if multirun:  # Hydra's multirun.yaml, beside the jobs' folders
        redaction.redact_files(hydra_cfg.sweep.dir, suffixes=(".yaml",), below=False)
    job = jobs.current_job(cfg.tracking.uri) if multirun else None
    if job is not None:
        return _sweep_job(cfg, hydra_cfg, job)
    return _single_run(cfg, hydra_cfg, hydra_cfg.sweep.dir if multirun else None)


def _single_run(cfg, hydra_cfg, sweep_dir: str | None) -> float:
    """One run: validate, train. The user's own mistake is one line, no traceback.

    ``sweep_dir``: a multirun's folder, when Hydra runs this job without a sweep's parent run.
    """
    from omegaconf import OmegaConf

    lines = list(hydra_cfg.overrides.task)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    try:
        run = _validate(cfg)
        if sweep_dir is not None:
            run = _with_sweep_feature_cache(run, sweep_dir)
        variant = overrides.variant(overrides.values(lines))
        info = _run_info(
            hydra_cfg.runtime.choices, lines, Path(hydra_cfg.runtime.output_dir), resolved, variant, {}
        )
        info = _resumed(run, info)  # trainer.resume=RUN_ID: that run, from its checkpoint
        result = runner.execute(run, info)
        if sweep_dir is None:  # its run's page, as a sweep prints its view
            print(ui.run_hint(run.tracking.uri, result.experiment_id, result.run_id))
        return result.metrics.get(run.sweep.metric, math.nan)
    except ConvlabError as err:
        sys.exit(f"convlab: {err}")


def _sweep_job(cfg, hydra_cfg, job: jobs.SweepJob) -> float:
    """One job of a sweep: skipped when it need not run (``jobs.skip_reason``), claimed so that
    it trains once however many processes run the sweep (``jobs.claim``), then trained. A job
    that fails is recorded FAILED and the sweep goes on: NaN, as for a skipped job."""
    from omegaconf import OmegaConf

    lines = list(hydra_cfg.overrides.task)
    pairs = overrides.values(lines)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    digest = jobs.config_hash(resolved)
    variant = job.variant(pairs)
    claimed = None
    try:
        run = _validate(cfg)
        if reason := jobs.skip_reason(job, digest, run.sweep.fail_fast):
            log.info("[sweep] %s seed=%s: skipped, %s", variant, pairs.get("seed", "?"), reason)
            return math.nan
        run = _with_sweep_feature_cache(run, hydra_cfg.sweep.dir)
        info = _run_info(
            hydra_cfg.runtime.choices, lines, Path(hydra_cfg.runtime.output_dir), resolved, variant,
            job.tags(pairs, digest),
        )  # fmt: skip
        if run.trainer.resume is not None:
            raise ConfigError(
                f"trainer.resume={run.trainer.resume} resumes one run: a sweep resumes with sweep.resume"
            )
        resumed, reason = _resumable_job(job, digest, run, info)  # its killed run, from its checkpoint
        if reason:
            log.info("[sweep] %s seed=%s: skipped, %s", variant, pairs.get("seed", "?"), reason)
            return math.nan
        if resumed is not None:
            claimed, info = resumed.claimed_run_id, resumed
        else:  # each job is trained once, however many processes run the sweep
            name, claim_tags = runner.run_name(run, info), runner.run_tags(run, info)  # variant, seed...
            claimed, reason = jobs.claim(job, digest, run.tracking.experiment_name, name, claim_tags)
            if claimed is None:
                log.info("[sweep] %s seed=%s: skipped, %s", variant, pairs.get("seed", "?"), reason)
                return math.nan
            info = dataclasses.replace(info, claimed_run_id=claimed)
        # what a search optimises: sweep.metric, the final epoch's; with early stopping val_accuracy
        # is the best epoch's (its weights are the run's model); a pruner meanwhile sees every epoch's
        stopping = run.trainer.early_stopping.patience is not None
        best = stopping and run.sweep.metric == contract.VAL_ACCURACY
        objective = contract.BEST_VAL_ACCURACY if best else run.sweep.metric
        return runner.execute(run, info).metrics.get(objective, math.nan)
    except Exception as err:
        # recorded FAILED here if it failed before its run opened, and named in the sweep's summary
        unrecordable = isinstance(err, (faults.DiskFullError, faults.OutageError))  # the store cannot take it
        if claimed is not None and not unrecordable:  # failed before its run opened?
            sweep_runs.end_if_running(job.tracking_uri, claimed, contract.FAILED, f"{err}")
        elif isinstance(err, ConvlabError) and not unrecordable:  # its run is ended
            _record_failure(job, cfg, pairs, digest, variant, err)
        log.error("job failed: %s: %s", type(err).__name__, err)
        return math.nan


def run_overrides(lines: list[str], config_name: str = "config"):
    """The Python API behind ``pipeline.run``: compose as the CLI does, then train."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict

    composition.register_experiments()
    composition.check_overrides(lines)
    redaction.redact_logs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(
            version_base="1.3", config_dir=str(composition.CONF_DIR), job_name="convlab"
        ):
            cfg = compose(config_name, overrides=lines, return_hydra_config=True)
    except HydraException as err:
        raise ConfigError(str(err).splitlines()[0]) from None
    choices = dict(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    run = _validate(cfg)
    with tempfile.TemporaryDirectory(prefix="convlab-") as folder:
        hydra_dir = Path(folder) / ".hydra"
        hydra_dir.mkdir()
        OmegaConf.save(cfg, hydra_dir / "config.yaml")
        OmegaConf.save(OmegaConf.create(lines), hydra_dir / "overrides.yaml")
        redaction.redact_files(hydra_dir)
        resolved = OmegaConf.to_container(cfg, resolve=True)
        info = _run_info(
            choices, lines, Path(folder), resolved, overrides.variant(overrides.values(lines)), {}
        )
        return runner.execute(run, _resumed(run, info))


def _resumed(run, info: RunInfo) -> RunInfo:
    """``info`` resuming the run ``trainer.resume`` names, from its checkpoint (checked here, before
    TensorFlow loads: a FINISHED run, no checkpoint or another config are one line)."""
    if run.task != "train" or run.trainer.resume is None:
        return info
    run_id = run.trainer.resume
    status, logged_through = sweep_runs.run_progress(run.tracking.uri, run_id)
    state = checkpoint.check_resume(run.trainer.checkpoint.dir, run_id, status, info.params)
    log.info("resuming run %s after epoch %d", run_id, state["epoch"])
    sweep_runs.reopen_run(run.tracking.uri, run_id)
    resumed = state | {"logged_through": logged_through, "run_id": run_id}
    return dataclasses.replace(info, claimed_run_id=run_id, reopened=True, resumed=resumed)


def _resumable_job(job, digest: str, run, info: RunInfo) -> tuple[RunInfo | None, str]:
    """A resumed (or requeued) sweep job whose run was KILLED: that run, reopened, continued from
    its checkpoint, or from the start when it ended before logging an epoch (a SLURM warning
    during start-up); None for a job to claim afresh. The reopening is claimed once, as
    ``jobs.claim`` claims a new run: of two processes that find the same KILLED run (two resumes
    of one sweep at once; in a study, two trials with the same values) one reopens it, the other
    skips the job (the reason, second). The claim's key names that KILLED end of the run (its
    end time), so a run killed again after its resume can be resumed again."""
    for child in sweep_runs.children(job.tracking_uri, job.parent_run_id):
        if child["config_hash"] != digest or child["status"] != contract.KILLED:
            continue
        state = checkpoint.read(run.trainer.checkpoint.dir, child["run_id"])
        if state is not None and state["identity"] != checkpoint.identity(info.params):
            continue
        _, logged_through = sweep_runs.run_progress(job.tracking_uri, child["run_id"])
        if state is None and logged_through:
            continue  # epochs logged, none checkpointed: a new run trains it
        me = f"{os.getpid()} {socket.gethostname()} {uuid.uuid4().hex}"
        key = f"{REOPEN_PREFIX}{child['run_id']}.{child['end_time']}"
        first = sweep_runs.write_once(job.tracking_uri, job.parent_run_id, key, me)
        if first != me:  # another process reopened it first
            pid, host, *_ = [*first.split(" "), "?", "?"]
            if (
                host == socket.gethostname()
                and pid.isdigit()
                and not interrupts.process_alive(int(pid), None)
            ):
                continue  # it died before reopening the run: a new run trains the job
            return None, f"running in process {pid} on {host}"
        sweep_runs.reopen_run(job.tracking_uri, child["run_id"])
        after = f"after epoch {state['epoch']}" if state else "from the start"
        log.info("[sweep] %s: resuming run %s %s", info.variant, child["run_id"], after)
        resumed = state | {"logged_through": logged_through, "run_id": child["run_id"]} if state else None
        return dataclasses.replace(info, claimed_run_id=child["run_id"], reopened=True, resumed=resumed), ""
    return None, ""


def _validate(cfg):
    """The typed run, its store and data files checked too: before TensorFlow loads or a run opens."""
    run = composition.validate(cfg)
    store.check(run.tracking.uri)
    layout = checks.check_data(
        run.task,
        validation_split=run.trainer.validation_split,
        **run.dataset.model_dump(include={"name", "path", "test_path", "max_samples"}),
    )
    if run.task == "predict" and run.predict.model is not None:  # the model's own shape, no TensorFlow
        spec = registry.model_spec(run.tracking.uri, run.predict.model)
        checks.check_scoring_data(run.dataset.name, run.dataset.path, spec.shape)
    if layout:  # the run's first log line: which folders train, validate and test
        log.info("%s", layout)
    return run


def _with_sweep_feature_cache(run, sweep_dir: str):
    """``run`` keeping frozen-backbone features in the sweep's own folder, unless it names one.

    A sweep's jobs may each be a process of their own (joblib, submitit): a folder they all see
    lets one job compute the features and the others read them. Set on the typed run after
    ``config_hash``, not in the composed config: a resumed sweep has another folder, and its
    jobs must keep the hash that identifies them.
    """

    if run.trainer.feature_cache_dir is not None:  # the user's own folder wins
        return run
    folder = str(Path(sweep_dir).absolute() / features.SWEEP_FOLDER)
    return run.model_copy(update={"trainer": run.trainer.model_copy(update={"feature_cache_dir": folder})})


def _run_info(choices, lines, output_dir, params, variant, sweep_tags):

    groups = {group: str(option) for group, option in choices.items() if group in composition.GROUPS}
    return RunInfo(groups, lines, output_dir, params, variant, sweep_tags)


def _record_failure(job, cfg, pairs: dict, digest: str, variant: str, err: Exception) -> None:

    tags = job.tags(pairs, digest) | {contract.VARIANT: variant, contract.ERROR: f"{err}"[:500]}
    if "seed" in pairs:
        tags[contract.SEED] = pairs["seed"]
    sweep_runs.record_failed_run(job.tracking_uri, cfg.tracking.experiment_name, variant, tags)
