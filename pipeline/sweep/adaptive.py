"""Adaptive seeding (``sweep.max_seeds=N``): add seeds until each comparison is decided.

After a sweep's listed seeds, each variant whose comparison with the baseline is still
undecided (Holm-adjusted p >= alpha) gets one more seed (its smallest seed not yet run), and
the baseline runs that seed too if it has not, so the comparison stays paired. A variant stops
once it is decided or has N seeds. Each round is a resume of the same sweep
(``sweep.resume=<id>``), so its runs nest under the same parent and nothing that finished runs
again. The report says per variant why it stopped.

The sweep's callback computes the next round when a pass ends and hands it to the command
line (``pipeline.__main__``) as the value of a ``NextRound`` raised at the pass's end (the way a
sweep's outcome already reaches it, as ``SystemExit``); the command line runs it through Hydra
like the first pass. Hydra gives a callback no other way to start jobs, nor to return a value.
"""

from __future__ import annotations

from pipeline.config import overrides
from pipeline.tracking import contract


class NextRound(SystemExit):
    """A pass ended and the sweep wants more seeds: ``passes``, each the overrides of one Hydra
    command line (``passes()``), run as resumes of the sweep. Exits 0 if nothing catches it."""

    def __init__(self, passes: list[list[str]]) -> None:
        super().__init__(0)
        self.passes = passes


def plan(runs, summary, max_seeds: int) -> tuple[list[dict[str, str]], dict[str, str]]:
    """The next round and why each variant stopped.

    Args:
        runs: ``compare.load_runs`` of the sweep (one row per job).
        summary: ``compare.summary_table`` of those runs.

    Returns:
        ``(jobs, stopped)``: each new job as its factor values plus ``seed``; per variant that
        gets no more seeds, why (``"decided after 4 seeds"``, ``"undecided at the 8-seed budget"``).
    """
    from pipeline.compare import tables  # pandas and scipy load once a pass ends, not in every job

    finished = runs[runs.status == contract.FINISHED]
    seeds = {v: sorted({int(s) for s in group.seed}) for v, group in finished.groupby("variant")}
    baseline = summary.attrs["baseline"]
    undecided = set(tables.undecided(summary)) - {baseline}
    stopped, grow = {}, []
    for variant in summary.variant:
        count = len(seeds.get(variant, []))
        if variant == baseline:
            continue
        if variant not in undecided:
            stopped[variant] = f"decided after {count} seeds"
        elif count >= max_seeds:
            stopped[variant] = f"undecided at the {max_seeds}-seed budget"
        else:
            grow.append(variant)
    factors = runs.attrs["factors"]

    def job(variant: str, seed: int) -> dict[str, str]:
        row = runs[runs.variant == variant].iloc[0]
        return {**{k: str(row[k]) for k in factors if k in row}, "seed": str(seed)}

    jobs, paired = [], set()
    for variant in grow:  # each its smallest seed not yet run
        seed = min(set(range(max_seeds + 1)) - set(seeds.get(variant, [])))
        jobs.append(job(variant, seed))
        paired |= {*seeds.get(variant, []), seed}
    # the baseline runs every seed the growing variants have and it lacks (one that failed too)
    jobs += [job(baseline, seed) for seed in sorted(paired - set(seeds.get(baseline, [])))]
    return jobs, stopped


def passes(jobs: list[dict[str, str]], lines: list[str], sweep_id: str) -> list[list[str]]:
    """The Hydra command lines that run ``jobs`` as a resume of sweep ``sweep_id``.

    ``lines`` are the finished pass's own overrides (task and launcher); every key a job sets is
    replaced. Jobs that form a full grid run as one pass, so a parallel launcher runs them
    together; otherwise one pass per job.
    """
    keys = {k for job in jobs for k in job}
    kept = [
        o.line for o in overrides.parse(lines) if o.key not in keys and not o.key.startswith("sweep.resume")
    ]
    kept.append(f"sweep.resume={sweep_id}")
    grid = {k: sorted({job[k] for job in jobs}) for k in keys}
    size = 1
    for values in grid.values():
        size *= len(values)
    if size == len(jobs):
        return [[*kept, *(f"{k}={','.join(v)}" for k, v in grid.items())]]
    return [[*kept, *(f"{k}={v}" for k, v in job.items())] for job in jobs]
