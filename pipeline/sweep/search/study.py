"""``hydra/sweeper=optuna``: a study whose trials are the sweep's child runs, then its winner confirmed.

Ask and tell (Optuna 4+): up to ``n_jobs`` trials are in flight, each launched on its own through
whichever Hydra launcher the command chose (basic, joblib, submitit, SLURM, Ray), and a new one is
asked the moment one ends (``pipeline.sweep.search.slots``: no worker waits for a batch); each job trains
with its trial's overrides and reports val_accuracy per epoch to the study's storage
(``pipeline.run.pruning``), where the pruner may stop it; the job's return value is told back.
The sweep's callback (``pipeline.sweep.callback``) owns the parent run; trials are its
children, with the usual names, tags, interrupts and resume. After ``n_trials``, the top
configurations run again over seeds (``pipeline.sweep.search.confirm``) and the parent gets the
verdict, the winner's values (params ``best.<key>``) and figures (``pipeline.sweep.search.report``).

Resume (``sweep.resume``): the study is reopened by name from the parent run. A trial whose job
finished is told its result; one whose process died runs again with the same values (its slot);
the study goes on until it has ``n_trials`` trials.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import math
import os
from typing import Any

from pipeline.config.errors import ConfigError
from pipeline.sweep.search import confirm, slots
from pipeline.sweep.search import report as study_report
from pipeline.sweep.search import space as search_space
from pipeline.tracking import contract, store, studies, sweep_runs

log = logging.getLogger(__name__)

LOST_ATTR = "convlab.lost"  # a trial whose process died: its slot runs again
OVERRIDES_ATTR = confirm.OVERRIDES_ATTR


@dataclasses.dataclass(frozen=True)
class Context:
    """Where the study's runs go: the tracking store, its experiment, the sweep's parent."""

    uri: str
    experiment_name: str
    parent: str
    sweep_id: str
    storage: str  # the study storage's spec (``studies.open_storage``)
    epochs: int
    metric: str = "val_accuracy"  # sweep.metric: the objective each trial returns and reports


class StudySweeper:
    """The sweeper behind ``hydra_plugins.convlab_optuna_sweeper``; keys as in its config."""

    def __init__(
        self,
        sampler: Any,
        direction: str = "maximize",
        storage: str | None = None,
        study_name: str | None = None,
        n_trials: int = 20,
        n_jobs: int = 1,
        max_failure_rate: float = 1.0,
        params: Any = None,
        pruner: str = "none",
        pruner_startup_trials: int = 5,
        pruner_warmup_epochs: int = 1,
        confirm: Any = None,
    ) -> None:
        self.sampler, self.direction, self.storage, self.study_name = sampler, direction, storage, study_name
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, max(n_jobs, 1), max_failure_rate
        self.params = dict(params or {})
        self.pruner = {
            "kind": pruner,
            "startup_trials": pruner_startup_trials,
            "warmup_epochs": pruner_warmup_epochs,
        }
        self.confirm = {"top_k": 3, "seeds": 5, **dict(confirm or {})}
        self.config = self.launcher = None
        self.job_idx = 0

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> None:
        space = search_space.parse(search_space.lines(self.params, arguments))
        space.fixed.setdefault("seed", f"seed={self.config.seed}")  # named, so runs read `seed=0`
        context = self._context()
        # the storage's URL may hold a password: the jobs inherit it from this process's
        # environment (a SLURM job, a joblib or submitit worker, a Ray task: launch/), never
        # through their overrides, which Hydra writes to .hydra/ and the launch log
        os.environ[contract.ENV_STUDY_STORAGE] = context.storage
        study = self._study(space, context)
        recover(study, context)
        self._search(study, space, context)
        env = trial_env(study.study_name, context, None)
        verdict = confirm.confirm(self, study, space, context, env, **self.confirm)
        study_report.publish(study, context, verdict, self.pruner["kind"])

    def launch(self, jobs: list[list[str]], job_idx: int | None = None) -> list:
        """Runs ``jobs`` (override lists) as one batch through the launcher; their JobReturns.
        ``job_idx``: the first job's number, drawn by the caller (a slot's thread); else the next."""
        if job_idx is not None:
            return list(self.launcher.launch([tuple(job) for job in jobs], initial_job_idx=job_idx))
        returns = self.launcher.launch([tuple(job) for job in jobs], initial_job_idx=self.job_idx)
        self.job_idx += len(returns)
        return list(returns)

    def _context(self) -> Context:
        parent = os.environ.get(contract.ENV_PARENT_RUN_ID)
        if not parent:
            raise ConfigError("hydra/sweeper=optuna needs convlab's sweep callback (hydra.callbacks.sweep)")
        uri, name = str(self.config.tracking.uri), str(self.config.tracking.experiment_name)
        return Context(
            uri, name, parent, os.environ.get(contract.ENV_SWEEP_ID, ""),
            studies.storage_for(uri, self.storage), int(self.config.trainer.epochs),
            str(self.config.sweep.get("metric", contract.VAL_ACCURACY)),
        )  # fmt: skip

    def _study(self, space: search_space.Space, context: Context):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        tags = sweep_runs.run_tags(context.uri, context.parent)
        name = tags.get(contract.STUDY) or self.study_name or f"{context.experiment_name}-{context.sweep_id}"
        sampler = self.sampler
        if isinstance(sampler, functools.partial):  # the grid sampler, built from the space
            grid = space.grid()
            sampler = sampler(grid)
            size = math.prod(len(values) for values in grid.values())
            self.n_trials = min(self.n_trials, size)
        storage = studies.open_storage(context.storage)
        sampler = self._reseeded(sampler, name, storage)
        study = optuna.create_study(
            study_name=name, storage=storage, sampler=sampler, direction=self.direction, load_if_exists=True
        )
        study.set_user_attr(studies.PRUNER_ATTR, self.pruner)
        total = self.n_trials + self.confirm["top_k"] * self.confirm["seeds"]
        sweep_runs.set_run_tags(context.uri, context.parent, {
            contract.STUDY: name, contract.STUDY_STORAGE: store.redact(context.storage),
            contract.TOTAL_JOBS: str(total),
        })  # fmt: skip
        log.info(
            "study %s: %d trials, %s, %s %s, pruner %s, storage %s",
            name, self.n_trials, type(sampler).__name__, self.direction, context.metric, self.pruner["kind"],
            store.redact(context.storage),
        )  # fmt: skip
        return study

    def _reseeded(self, sampler, name: str, storage):
        """A resumed study's seeded sampler, seeded anew by the trials it has: the same seed would
        draw the first pass's values again."""
        import optuna
        from hydra.utils import instantiate

        node = self.config.hydra.sweeper.sampler
        if node.get("seed") is None or isinstance(sampler, optuna.samplers.GridSampler):
            return sampler
        try:
            done = len(optuna.load_study(study_name=name, storage=storage).trials)
        except KeyError:  # a new study
            return sampler
        return instantiate(node, seed=int(node.seed) + done) if done else sampler

    def _search(self, study, space: search_space.Space, context: Context) -> None:
        """Asks a trial whenever a slot is free (``slots``): no worker waits for a batch to end."""
        distributions = space.distributions()
        pool = slots.Slots(self.launch, self._slots())
        told: collections.deque[bool] = collections.deque(maxlen=pool.size)  # the last trials' outcomes
        stopping = False
        try:
            while True:
                while not stopping and pool.free and self.n_trials - counted(study) > 0:
                    trial, job = self._ask(study, space, context, distributions)
                    if job:
                        pool.start(trial, job, self.job_idx)
                        self.job_idx += 1
                if not pool.busy:
                    return
                for trial, job in pool.wait():
                    told.append(tell(study, trial, job))
                failures = told.count(False)
                if not stopping and len(told) == told.maxlen and failures / len(told) > self.max_failure_rate:
                    log.error("%d of the last %d trials failed (hydra.sweeper.max_failure_rate=%s): "
                              "the study stops", failures, len(told), self.max_failure_rate)  # fmt: skip
                    stopping = True
        except BaseException:  # Ctrl-C, SIGTERM, a launcher's error: the slots' jobs stop too
            pool.interrupt()
            raise

    def _ask(self, study, space: search_space.Space, context: Context, distributions) -> tuple:
        """The next trial and its job's overrides (none: it repeats a finished trial's values)."""
        trial = study.ask(distributions)
        values = {key: trial.params[key] for key in space.params}
        searched = [f"{key}={search_space.format_value(value)}" for key, value in values.items()]
        trial.set_user_attr(OVERRIDES_ATTR, searched)
        if repeat_of(study, trial, searched):
            return trial, None
        return trial, [*space.fixed.values(), *searched, *trial_env(study.study_name, context, trial.number)]

    def _slots(self) -> int:
        """Trials in flight: ``n_jobs``, or one where the launcher runs jobs in this process."""
        target = str(self.config.hydra.launcher.get("_target_", ""))
        return 1 if target.endswith(".BasicLauncher") else self.n_jobs


def trial_env(study_name: str, context: Context, number: int | None) -> list[str]:
    """The overrides that tell a job its study and trial (none: a confirm run, not a trial).

    Not its storage (a URL with a password): that is in the environment the job inherits."""
    values = {
        contract.ENV_STUDY: study_name,
        contract.ENV_TRIAL: "" if number is None else str(number),
    }
    return [f"++hydra.job.env_set.{key}={_quoted(value)}" for key, value in values.items()]


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def counted(study) -> int:
    """Trials that fill a slot: every one asked, less those lost with their process."""
    from optuna.trial import TrialState

    return sum(
        t.state != TrialState.WAITING and not t.user_attrs.get(LOST_ATTR)
        for t in study.get_trials(deepcopy=False)
    )


def repeat_of(study, trial, searched: list[str]) -> bool:
    """A trial that repeats a finished one's values gets its result, not a second run."""
    from optuna.trial import TrialState

    for earlier in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if earlier.user_attrs.get(OVERRIDES_ATTR) == searched:
            log.info("trial %d repeats trial %d's values: its result is reused", trial.number, earlier.number)
            if earlier.state == TrialState.COMPLETE:
                study.tell(trial, earlier.value)
            else:
                for step, value in earlier.intermediate_values.items():
                    trial.report(value, step)
                study.tell(trial, state=TrialState.PRUNED)
            return True
    return False


def tell(study, trial, job) -> bool:
    """Tells the study how a trial's job ended; False when it failed."""
    from optuna.trial import TrialState

    try:
        value = float(job.return_value)
    except Exception as err:  # the job raised: Hydra re-raises it here
        log.warning("trial %d failed: %s", trial.number, err)
        value = math.nan
    attrs = study.get_trials(deepcopy=False)[trial.number].user_attrs  # what the job wrote there
    if studies.PRUNED_AT_ATTR in attrs:
        study.tell(trial, state=TrialState.PRUNED)
        return True
    if math.isnan(value):
        study.tell(trial, state=TrialState.FAIL)
        return False
    study.tell(trial, value)
    return True


def recover(study, context: Context) -> None:
    """Resume: each trial left RUNNING by a process that died is told its run's outcome, or lost."""
    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return
    by_trial = studies.trial_runs(context.uri, context.parent, context.metric)
    for trial in running:
        run = by_trial.get(trial.number)
        status = run["status"] if run else None
        if status == contract.RUNNING:
            continue  # alive in another process (stale ones were marked KILLED by the callback)
        if status == contract.FINISHED and run["pruned_at"]:
            study.tell(trial.number, state=TrialState.PRUNED)
        elif status == contract.FINISHED and run["value"] is not None:
            study.tell(trial.number, run["value"])
        else:
            # private: no public way sets an attribute of another process's RUNNING trial (a Study has
            # none, a FrozenTrial hides its id); checked on Optuna 4.0-5.1 (tests/test_private_apis.py)
            study._storage.set_trial_user_attr(trial._trial_id, LOST_ATTR, True)
            study.tell(trial.number, state=TrialState.FAIL)
            study.enqueue_trial(trial.params)  # its slot runs again, with the same values
            log.info("trial %d was lost with its process: it runs again", trial.number)
