"""A sweep's pass ends: its parent run ended, its summary and comparison put where users look.

    outcome = summary.finish(state, stopped)  # the parent ended FINISHED or FAILED, the report written
    outcome.message                           # one line for the terminal when the sweep did not succeed

The summary (jobs finished, each failure's first line) goes to the terminal and to the parent
run (``sweep_summary.md``); the comparison (``pipeline.compare``) to the sweep's folder
(``comparison/``) and to the parent run itself: its description, a mean metric per variant, and
with ``sweep.register=NAME`` the decided winner's model registered (``handoff``). While a job
still runs in another process, the pass is left RUNNING: that process's pass writes the summary.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time

from pipeline.sweep import handoff, jobs
from pipeline.tracking import contract, store, sweep_runs, ui

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SweepPass:
    """One pass of a sweep (its first run, or a resume), as its callback opened it."""

    sweep_id: str
    parent_run_id: str
    tracking_uri: str
    experiment_name: str  # the MLflow experiment
    sweep_dir: str  # Hydra's folder for this pass: the comparison is written to its comparison/
    started: float  # time.time() when the pass started
    register: str | None  # sweep.register: the model name the decided winner is registered as
    register_undecided: bool  # sweep.register_undecided
    metric: str = contract.VAL_ACCURACY  # sweep.metric: what the verdict compares


@dataclasses.dataclass(frozen=True)
class SweepOutcome:
    """How a sweep (or one resumed pass of it) ended."""

    sweep_id: str
    parent_run_id: str
    status: str
    finished: int
    failed: list[dict]
    summary: str
    problem: str | None = None  # a finished sweep whose winner could not be registered

    @property
    def message(self) -> str | None:
        """One line for the terminal when the sweep did not succeed, else None."""
        if self.status == contract.FINISHED:
            return self.problem
        if self.status == contract.RUNNING:  # another process ends it
            return None
        total = self.finished + len(self.failed)
        lost = [c for c in self.failed if c["error"].startswith(contract.WORKER_KILLED)]
        if lost:  # named, with how to rerun them (a worker that runs out of memory may again)
            names = "; ".join(f"{c['variant']} seed={c['seed']}: {c['error']}" for c in lost)
            return f"convlab: lost {names}; rerun: sweep.resume={self.sweep_id}"
        return f"convlab: {len(self.failed)} of {total} sweep jobs failed (see the summary above)"


def finish(state: SweepPass, stopped: dict[str, str] | None = None) -> SweepOutcome:
    """Ends the parent, then puts the comparison where users look: the terminal, the sweep's
    folder, and the parent run itself (its description, its metrics, ``comparison/``)."""

    uri, parent = state.tracking_uri, state.parent_run_id
    latest = _latest_per_job(sweep_runs.children(uri, parent))
    elsewhere = [c for c in latest if c["status"] == contract.RUNNING and not jobs.is_stale(c, None)]
    if elsewhere:  # the process that finishes the sweep's last job writes its summary
        for child in elsewhere:
            log.info("[sweep] %s seed=%s: %s", child["variant"], child["seed"], jobs.running_elsewhere(child))
        log.info("sweep %s: %d job(s) still running elsewhere; the process that finishes the last one "
                 "writes the summary", state.sweep_id, len(elsewhere))  # fmt: skip
        return SweepOutcome(state.sweep_id, parent, contract.RUNNING, len(latest) - len(elsewhere), [], "")
    failed = [c for c in latest if c["status"] != contract.FINISHED]
    status = contract.FAILED if failed else contract.FINISHED
    summary = _summary(state, latest, failed)
    log.info("\n%s", summary)
    sweep_runs.log_text_to(uri, parent, summary, "sweep_summary.md")
    sweep_runs.end_run(uri, parent, status)  # first, so the report says how the sweep ended
    compared = None
    try:
        compared = _publish(state, stopped)
    except Exception as err:  # a comparison problem must not hide the sweep's own outcome
        log.warning("comparison report skipped: %s", err)
    problem = _register(state, status, compared) if state.register else None
    finished = len(latest) - len(failed)
    return SweepOutcome(state.sweep_id, parent, status, finished, failed, summary, problem)


def _publish(state: SweepPass, stopped: dict[str, str] | None) -> tuple | None:
    """The comparison where users look; returns the winner (``compare.winner.choose``, None when
    undecided) and why nothing was decided, for ``sweep.register``."""
    from pipeline.compare import load, report, winner  # pandas, scipy: once a pass ends, not in every job

    uri, parent = state.tracking_uri, state.parent_run_id
    runs = load.load_runs(state.experiment_name, parent, uri)
    out = os.path.join(state.sweep_dir, "comparison")
    metric = state.metric
    result = load.report_runs(runs, metric, out=out, log=True, echo=True, stopped=stopped)
    metric = result.summary.attrs["metric"]
    means = {
        f"{metric}/{_metric_key(row['variant'])}": row[f"{metric}_mean"]
        for _, row in result.summary.iterrows()
        if row[f"{metric}_mean"] == row[f"{metric}_mean"]  # not NaN
    }
    sweep_runs.log_metrics_to(uri, parent, means)
    note = report.markdown_summary(result.summary, result.effects, result.per_class, result.speed)
    study_note = sweep_runs.run_tags(uri, parent).get(contract.STUDY_NOTE)
    note = f"{study_note}\n\n{note}" if study_note else note  # a study: its verdict first
    sweep_runs.set_run_tags(uri, parent, {contract.NOTE: note})
    experiment_id = store.get_or_create_experiment(uri, state.experiment_name)
    # the variant summary first (the parent's means: one row however many runs), the runs grouped by variant
    print(ui.sweep_view_hint(uri, experiment_id, parent, list(means)))
    if not state.register:
        return None
    found = winner.choose(runs, result.summary, state.register_undecided)
    return found, winner.undecided_reason(result.summary)


def _register(state: SweepPass, status: str, compared: tuple | None) -> str | None:
    """``sweep.register=NAME``: the decided winner's model, registered; returns the one line that
    says why it could not be (the sweep then exits non-zero), else None. A sweep that did not
    finish registers nothing: its verdict lacks the jobs that failed."""
    name = state.register
    if status != contract.FINISHED:
        print(f"convlab: sweep.register={name}: the sweep ended {status}; nothing registered (once its "
              f"jobs finish: sweep.resume={state.sweep_id})", file=sys.stderr)  # fmt: skip
        return None
    if compared is None:
        return f"convlab: sweep.register={name}: no comparison to pick a winner from; nothing registered"
    found, undecided = compared
    try:
        handoff.register_winner(state.tracking_uri, state.sweep_id, name, found, undecided)
    except handoff.RegistrationError as err:
        return f"convlab: {err}"
    return None


def _metric_key(variant: str) -> str:
    """``downsample=stride,regularization=none -> downsample:stride regularization:none``:
    MLflow's metric keys take letters, digits, ``_-. :/`` only."""
    import re

    return re.sub(r"[^\w\-. :/]", "_", variant.replace("=", ":").replace(",", " "))


def _latest_per_job(children: list[dict]) -> list[dict]:
    """One run per job (config hash): its FINISHED run if it has one, else its latest run."""
    best: dict[str, dict] = {}
    for child in children:  # oldest first
        key = child["config_hash"] or child["run_id"]
        if best.get(key, {}).get("status") != contract.FINISHED:
            best[key] = child
    return list(best.values())


def _summary(state: SweepPass, latest: list[dict], failed: list[dict]) -> str:
    elapsed = clock(time.time() - state.started)
    done = len(latest) - len(failed)
    lines = [f"# sweep {state.sweep_id}: {done} of {len(latest)} jobs finished ({elapsed} this pass)", ""]
    for child in failed:
        lines.append(f"- {child['status']} {child['variant']} seed={child['seed']}: {child['error']}")
    return "\n".join(lines)


def clock(seconds: float) -> str:
    """``3725.4`` seconds -> ``1:02:05``: elapsed and left, in progress lines and the summary."""
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
