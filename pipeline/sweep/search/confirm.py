"""Confirm a study's winner: its top configurations again over seeds, through convlab's statistics.

The best of N noisy trials is biased upward (the winner's curse). So after the search the
``top_k`` best distinct configurations run again over seeds 0, 1, ... (every one the same seeds:
the same validation split and shuffling, so the comparison is paired); a trial that ran at one
of those seeds is not run again, its run counts. The comparison is ``pipeline.compare``'s own
(paired t-tests, Holm, logit intervals) with the best confirmed mean as the baseline, and seeds
are added the way ``sweep.max_seeds`` adds them (``pipeline.sweep.adaptive``): each runner-up
still undecided against the leader gets one more seed, up to ``seeds``. The parent run records
which variants were confirmed and the leader (tags), so ``python -m pipeline.compare`` on the
study reports exactly these runs. Each (configuration, seed) is launched once: a configuration
whose job does not finish (it failed, or was skipped as lost) leaves the confirmation with one
warning, and the report says why it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging

from pipeline.compare import load
from pipeline.config import overrides
from pipeline.config.errors import ConvlabError
from pipeline.sweep import adaptive
from pipeline.tracking import contract, sweep_runs

log = logging.getLogger(__name__)

OVERRIDES_ATTR = "convlab.overrides"  # a trial's searched values, as its job's override lines
FIRST_SEEDS = 3  # seeds every confirmed configuration gets before seeds are added adaptively


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The confirm stage's outcome: the comparison and each confirmed configuration's search value."""

    summary: object  # ``compare.summary_table`` with the winner as baseline
    winner: str  # variant label
    winner_values: dict[str, str]  # searched key -> value
    search_values: dict[str, float]  # variant -> its trial's value in the search
    raw_best: str  # the variant of the search's best trial
    stopped: dict[str, str]
    runs: object  # ``compare.load_runs`` of the confirmed configurations


def confirm(sweeper, study, space, context, env: list[str], top_k: int = 3, seeds: int = 5) -> Verdict | None:
    """Runs the confirm stage (``top_k=0``: none) and returns its verdict; ``env``: the jobs' study
    overrides (``search.trial_env``), ``sweeper.launch`` runs batches of jobs."""
    top = top_trials(study, top_k)
    if not top:
        return None
    factors = json.loads(sweep_runs.run_tags(context.uri, context.parent).get(contract.FACTORS, "[]"))
    searched = {t.number: overrides.values(t.user_attrs[OVERRIDES_ATTR]) for t in top}
    variants = {number: overrides.variant(values, factors) for number, values in searched.items()}
    sweep_runs.set_run_tags(
        context.uri, context.parent, {contract.CONFIRMED: json.dumps(list(variants.values()))}
    )
    fixed = [line for key, line in space.fixed.items() if key != "seed"]
    first = range(min(FIRST_SEEDS, seeds))
    log.info("confirming the top %d configurations over seeds %s", len(top), ", ".join(map(str, first)))
    sweeper.launch([
        [*fixed, *(f"{k}={v}" for k, v in searched[t.number].items()), f"seed={seed}", *env]
        for t in top for seed in first
    ])  # fmt: skip
    launched = {(variants[t.number], str(seed)) for t in top for seed in first}
    stopped: dict[str, str] = {}
    left: dict[str, str] = {}  # configurations that cannot finish: out of the confirmation, said once
    while True:  # bounded: each (configuration, seed) is launched once, seeds up to ``seeds``
        frame = load.load_runs(context.experiment_name, context.parent, context.uri)
        _leave_unfinished(frame, launched, left)
        summary = load.summary_table(
            frame, context.metric, baseline=_leader(frame, study, left, context.metric)
        )
        if len(variants) - len(left) < 2:
            break
        jobs, stopped = adaptive.plan(frame, summary, seeds)
        jobs = [
            job for job in jobs if _key(job, factors) not in launched and _key(job, factors)[0] not in left
        ]
        if not jobs:
            break
        launched |= {_key(job, factors) for job in jobs}
        sweeper.launch([[*fixed, *(f"{k}={v}" for k, v in job.items()), *env] for job in jobs])
    stopped = {**stopped, **left}
    winner = summary.attrs["baseline"]
    number = next(n for n, v in variants.items() if v == winner)
    sweep_runs.set_run_tags(context.uri, context.parent, {contract.BASELINE: winner})
    search_values = {variants[t.number]: t.value for t in top}
    return Verdict(summary, winner, searched[number], search_values, variants[top[0].number], stopped, frame)


def top_trials(study, k: int) -> list:
    """The ``k`` best completed trials with distinct values, best first."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    maximize = study.direction == StudyDirection.MAXIMIZE
    ranked = sorted(done, key=lambda t: (-t.value if maximize else t.value, t.number))
    top, seen = [], set()
    for trial in ranked:
        key = " ".join(trial.user_attrs.get(OVERRIDES_ATTR, []))
        if key and key not in seen:
            seen.add(key)
            top.append(trial)
    return top[:k]


def _key(job: dict[str, str], factors: list[str]) -> tuple[str, str]:
    """``(variant, seed)`` of a planned job (its factor values and seed)."""
    return overrides.variant(job, factors), job["seed"]


def _leave_unfinished(frame, launched: set[tuple[str, str]], left: dict[str, str]) -> None:
    """A configuration whose launched job did not finish (it failed, or was skipped as lost)
    leaves the confirmation: one warning, and the reason in ``left`` for the report."""
    for row in frame.itertuples():
        key = (str(row.variant), str(row.seed))
        if key in launched and row.status != contract.FINISHED and row.variant not in left:
            left[row.variant] = f"left the confirmation: seed {row.seed} did not finish ({row.status})"
            log.warning("[confirm] %s seed=%s did not finish (%s%s); it leaves the confirmation",
                        row.variant, row.seed, row.status, f": {row.error}" if row.error else "")  # fmt: skip


def _leader(frame, study, left: dict[str, str], metric: str) -> str:
    """The confirmed variant with the best mean over its finished seeds (of those still in)."""
    from optuna.study import StudyDirection

    done = frame[(frame.status == contract.FINISHED) & ~frame.variant.isin(list(left))]
    if not len(done):
        raise ConvlabError(
            "the confirm stage: no confirmed configuration finished a run (see the warnings above)"
        )
    means = done.groupby("variant")[metric].mean()
    return str(means.idxmax() if study.direction == StudyDirection.MAXIMIZE else means.idxmin())
