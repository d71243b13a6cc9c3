"""Sweeps: one MLflow parent run per Hydra multirun, its jobs nested under it, resume, summary.

``SweepCallback`` is registered in ``conf/config.yaml`` (``hydra.callbacks``). When a multirun
starts it creates the parent run (or, with ``sweep.resume``, reopens an earlier one) and hands
every job the parent's run id and the sweep id as plain values: environment variables set
through each job's own config (``hydra.job.env_set``), so a job launched on another machine
(submitit/SLURM, Ray) nests under the parent as long as it reaches the same tracking server.
Each job reads the sweep's definition from the parent run itself (``pipeline.tracking.contract``).
When the multirun ends, ``summary.finish`` ends the parent run and writes the summary and comparison.

Resume (``sweep.resume=<sweep id>`` or ``last``): a job whose resolved config (seed included)
already has a FINISHED child is skipped; FAILED and KILLED ones run again. A child left RUNNING
is stale, and is marked KILLED before its job runs again, when its process is gone: on the
same host, its pid no longer runs (or is another process: start times differ); from another
host, it has sent no heartbeat (a metric logged every few seconds while it lives) for ``sweep.stale_after``
seconds.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import time
import uuid

from hydra.experimental.callback import Callback

from pipeline.config import overrides
from pipeline.config.errors import ConfigError, ConvlabError
from pipeline.sweep import adaptive, interrupts, jobs, summary
from pipeline.sweep.launch import local_jobs, workers
from pipeline.sweep.search import space
from pipeline.tracking import contract, faults, store, sweep_lookup, sweep_runs

log = logging.getLogger(__name__)


class SweepCallback(Callback):
    """Hydra callback: parent run, job identity, progress lines, summary and comparison."""

    def __init__(self) -> None:
        self._state: summary.SweepPass | None = None
        self._guard = None

    def on_multirun_start(self, config, **kwargs) -> None:
        # Hydra turns a callback's Exception into a warning and launches the jobs anyway; a sweep
        # that cannot be tracked must not run untracked: SystemExit stops the command.

        try:
            if space.is_study(config):  # hydra/sweeper=optuna: its space and storage, before a run opens
                space.check_study(config)
            self._state = _open(config)
        except ConvlabError as err:
            raise SystemExit(f"convlab: {err}") from None
        except Exception as err:
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise SystemExit(f"convlab: cannot start the sweep's MLflow parent run: {reason}") from None

        state = self._state
        self._guard = interrupts.SweepGuard(lambda status: _abort(state, status)).__enter__()
        lost = lambda pid, signal_name, host=None: _lost(state, pid, signal_name, host)  # noqa: E731
        workers.listen(lost)  # a dead worker: one job lost
        if "joblib" in str(config.hydra.launcher.get("_target_", "")):
            workers.install(lost)
        local_jobs.watch(config)  # submitit_local: every job watched at once

    def on_job_start(self, config, **kwargs) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode != RunMode.MULTIRUN or not os.environ.get(contract.ENV_PARENT_RUN_ID):
            return

        job = jobs.current_job(config.tracking.uri)
        pairs = overrides.values(hydra_cfg.overrides.task)
        siblings = sweep_runs.children(job.tracking_uri, job.parent_run_id)
        done = sum(
            r["status"] in contract.TERMINAL and r["start_time"] >= job.started * 1000 for r in siblings
        )
        elapsed = time.time() - job.started
        left = (
            f"~{summary.clock(elapsed / done * (job.total - done))} left"
            if done and job.total
            else "estimating"
        )
        number = int(hydra_cfg.job.num) + 1
        log.info(
            "[sweep] job %d/%s | %s seed=%s | elapsed %s | %s",
            number, job.total or "?", job.variant(pairs), pairs.get("seed", "?"),
            summary.clock(elapsed), left,
        )  # fmt: skip

    def on_multirun_end(self, config, **kwargs) -> None:

        state, self._state = self._state, None
        if state is None:
            return
        if self._guard is not None:
            self._guard.release()
        next_round, stopped = _next_round(state, config) if config.sweep.max_seeds else ([], None)
        if next_round:  # more seeds to come: the winner is registered after the last pass
            state = dataclasses.replace(state, register=None)
        try:
            outcome = summary.finish(state, stopped)
        except Exception as err:
            if faults.unreachable(err):
                raise SystemExit(
                    f"convlab: the tracking server at {store.redact(state.tracking_uri)} does not answer; "
                    f"once it does, continue the sweep: sweep.resume={state.sweep_id}"
                ) from None
            if not (full := faults.disk_full_path(err, state.tracking_uri)):
                raise
            faults.end_run_in_place(
                state.tracking_uri, state.parent_run_id, contract.FAILED, f"no space left on device: {full}"
            )
            raise SystemExit(
                f"convlab: no space left on device: {full}; free some, then sweep.resume={state.sweep_id}"
            ) from None
        if outcome.message:
            raise SystemExit(outcome.message)
        if next_round and outcome.status == contract.FINISHED:
            raise adaptive.NextRound(next_round)  # to the command line, which runs it


def _next_round(state: summary.SweepPass, config) -> tuple[list[list[str]], dict[str, str] | None]:
    """Adaptive seeding: the passes that add seeds to undecided variants (``pipeline.sweep.adaptive``)."""

    try:
        from pipeline.compare import load  # pandas and scipy load once a pass ends, not in every job

        runs = load.load_runs(state.experiment_name, state.parent_run_id, state.tracking_uri)
        summary = load.summary_table(runs, config.sweep.metric)
        wanted, stopped = adaptive.plan(runs, summary, config.sweep.max_seeds)
    except Exception as err:  # e.g. a single variant: nothing to decide
        log.warning("sweep.max_seeds: no seeds added: %s", err)
        return [], None
    # this pass's identity overrides (added by _open) are set anew by the next pass
    identity = tuple(f"hydra.job.env_set.{key}=" for key in contract.SWEEP_ENV)
    lines = [
        *config.hydra.overrides.task,
        *(line for line in config.hydra.overrides.hydra if not any(key in line for key in identity)),
    ]
    return adaptive.passes(wanted, lines, state.sweep_id), stopped


def _open(config) -> summary.SweepPass:
    """Creates (or reopens) the parent run and hands its identity to every job."""
    from omegaconf import OmegaConf, open_dict

    task = list(config.hydra.overrides.task)
    params_node = config.hydra.sweeper.get("params")
    params = OmegaConf.to_container(params_node, resolve=True) if params_node else {}
    arguments = [f"{k}={v}" for k, v in params.items()] + task
    grid = overrides.expand(arguments)
    experiment = str(config.hydra.runtime.choices.get("experiment") or "")
    uri, name, options = config.tracking.uri, config.tracking.experiment_name, config.sweep
    store.check(uri)  # an unusable store: one line, and no job starts
    now = time.time()
    pass_tags = {contract.STARTED: f"{now:.3f}", contract.TOTAL_JOBS: str(len(grid)) if grid else ""}
    if options.resume:
        sweep_id, parent = _reopen(uri, name, str(options.resume), experiment, options.stale_after)
        sweep_runs.set_run_tags(uri, parent, pass_tags)
    else:
        sweep_id = uuid.uuid4().hex[:12]
        factor_keys = (
            overrides.factors(grid) if grid else [o.key for o in overrides.parse(arguments) if o.is_sweep]
        )
        tags = {
            contract.ROLE: contract.ROLE_SWEEP,
            contract.SWEEP_ID: sweep_id,
            contract.EXPERIMENT: experiment,
            contract.FACTORS: json.dumps([k for k in factor_keys if k != "seed"]),
            contract.SWEEP_PARAMS: json.dumps(overrides.values(arguments)),
            contract.OVERRIDES: " ".join(task),
            **pass_tags,
        }
        run_name = f"sweep {experiment or 'multirun'} {sweep_id[:6]}"
        parent = sweep_runs.start_parent_run(uri, name, run_name, tags)
        definition = {f"sweep.{key}": value for key, value in overrides.values(arguments).items()}
        sweep_runs.log_params_to(uri, parent, definition)  # the sweep's definition, as params
    identity = {
        contract.ENV_PARENT_RUN_ID: parent,
        contract.ENV_SWEEP_ID: sweep_id,
        contract.ENV_SWEEP_PROCESS: _this_process(),
    }
    os.environ.update(identity)  # for this process and the workers it starts
    with open_dict(config):  # ...and in each job's own config, for workers on other machines
        for key, value in identity.items():
            config.hydra.overrides.hydra.append(f"++hydra.job.env_set.{key}={value}")
    log.info("sweep %s: %s jobs, parent run %s, output in %s", sweep_id, len(grid) if grid else "?", parent,
             config.hydra.sweep.dir)  # fmt: skip
    return summary.SweepPass(
        sweep_id=sweep_id,
        parent_run_id=parent,
        tracking_uri=uri,
        experiment_name=name,
        sweep_dir=str(config.hydra.sweep.dir),
        started=now,
        register=options.register,
        register_undecided=options.register_undecided,
        metric=compared_metric(config),
    )


def compared_metric(config) -> str:
    """What the sweep compares: ``sweep.metric``; with early stopping (whose runs keep the best
    epoch's weights) val_accuracy means the best epoch's, ``best_val_accuracy``: the model each run
    hands on."""
    from omegaconf import OmegaConf

    metric = OmegaConf.select(config, "sweep.metric", default=contract.VAL_ACCURACY)
    stopping = OmegaConf.select(config, "trainer.early_stopping.patience", default=None) is not None
    return contract.BEST_VAL_ACCURACY if stopping and metric == contract.VAL_ACCURACY else metric


def _reopen(uri: str, name: str, resume: str, experiment: str, stale_after: float) -> tuple[str, str]:
    """The parent run of the sweep to resume, reopened, its stale children marked KILLED."""

    parent = sweep_lookup.find_parent(uri, name, None if resume == "last" else resume, experiment)
    if parent is None:
        which = f"of experiment={experiment or '(none)'} " if resume == "last" else f"{resume!r} "
        raise ConfigError(f"sweep.resume={resume}: no sweep {which}in MLflow experiment {name!r} at {uri}")
    sweep_id, parent_id = parent
    for child in sweep_runs.children(uri, parent_id):
        if child["status"] == contract.RUNNING and jobs.is_stale(child, stale_after):
            sweep_runs.end_run(uri, child["run_id"], contract.KILLED, "stale: its process is gone (resumed)")
            log.info(
                "marked stale run %s (%s seed=%s) KILLED", child["run_id"], child["variant"], child["seed"]
            )
    sweep_runs.reopen_run(uri, parent_id)
    return sweep_id, parent_id


def _abort(state: summary.SweepPass, status: str) -> None:
    """The sweep was interrupted or crashed: every child still RUNNING, and the parent, end."""

    uri, parent = state.tracking_uri, state.parent_run_id
    reason = "interrupted (Ctrl-C or SIGTERM)" if status == contract.KILLED else "the sweep crashed"
    for child in sweep_runs.children(uri, parent):
        if child["status"] == contract.RUNNING and _ours(child):
            sweep_runs.end_run(uri, child["run_id"], contract.KILLED, reason)
    sweep_runs.end_run(uri, parent, status)
    for key in contract.SWEEP_ENV:
        os.environ.pop(key, None)


def _lost(state: summary.SweepPass, pid: int | None, signal_name: str, host: str | None = None) -> None:
    """A worker (joblib's, a local job's process, a Ray job's on ``host``) died: its job's run
    ends FAILED (lost), the runs its death took along KILLED."""
    uri = state.tracking_uri
    for child in sweep_runs.children(uri, state.parent_run_id):
        if child["status"] != contract.RUNNING or not _ours(child) or _in_this_process(child):
            continue
        if child["host"] == (host or socket.gethostname()) and child["pid"] == str(pid):
            error = f"{contract.WORKER_KILLED} {signal_name} (out of memory?)"
            sweep_runs.end_run(uri, child["run_id"], contract.FAILED, error)
            log.error("[sweep] %s seed=%s lost: %s", child["variant"], child["seed"], error)
        elif jobs.is_stale(child, None):
            sweep_runs.end_run(uri, child["run_id"], contract.KILLED, "stopped: another worker died")


def _ours(child: dict) -> bool:
    """Whether a RUNNING child is this sweep process's to end: its own run (same host and pid);
    on this host, one whose process is gone (another process resuming the same sweep here keeps
    its runs); on another host, only a job this process launched there (submitit, Ray), cancelled
    with it: a resume running elsewhere keeps its runs."""
    if _in_this_process(child):
        return True
    if child["host"] == socket.gethostname():
        return jobs.is_stale(child, None)
    return child["sweep_process"] == _this_process()


def _in_this_process(child: dict) -> bool:
    return child["host"] == socket.gethostname() and child["pid"] == str(os.getpid())


def _this_process() -> str:
    """``host:pid``: the sweep process, as its jobs' runs name it (``contract.SWEEP_PROCESS``)."""
    return f"{socket.gethostname()}:{os.getpid()}"
