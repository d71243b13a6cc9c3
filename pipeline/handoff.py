"""A sweep's decided winner handed on: its model registered in MLflow's Model Registry.

``sweep.register=NAME`` asks for it; the sweep's callback calls ``register_winner`` once the
comparison is in. ``compare``'s winner rules (``pipeline.winner``) pick the variant and its median
run; ``pipeline.registry`` writes the version (alias ``champion``, the verdict as description,
tags: sweep id, variant, seeds). Undecided: one line and nothing registered, unless
``sweep.register_undecided=true``.
"""

from __future__ import annotations

import sys

import pandas as pd

from pipeline import contract, registry, winner
from pipeline.errors import ConvlabError


def register_winner(
    uri: str, sweep_id: str, name: str, runs: pd.DataFrame, summary: pd.DataFrame, undecided: bool
):
    """Registers the decided winner's median run as a new version of ``name``; returns the
    ``ModelVersion``, or None (after one line on stderr) when nothing was registered."""
    found = winner.decide(runs, summary)
    if found is None and not undecided:
        print(
            f"convlab: sweep.register={name}: no variant is decided best against the baseline "
            f"{summary.attrs['baseline']}; nothing registered (more seeds: sweep.max_seeds; or "
            "sweep.register_undecided=true registers the best mean)",
            file=sys.stderr,
        )
        return None
    found = found or winner.best_mean(runs, summary)
    tags = {
        contract.SWEEP_ID: sweep_id,
        contract.VARIANT: found.variant,
        contract.SEEDS: ",".join(found.seeds),
        contract.SEED: found.seed,
        contract.DECIDED: str(found.decided).lower(),
        contract.SOURCE_RUN: found.run_id,
    }
    try:
        version = registry.register(uri, found.run_id, name, found.description, tags)
    except ConvlabError as err:
        print(f"convlab: sweep.register={name}: {err}; nothing registered", file=sys.stderr)
        return None
    state = "decided" if found.decided else "UNDECIDED"
    print(
        f"registered {name} version {version.version} (alias {contract.CHAMPION}, {state}): {found.variant}, "
        f"seed {found.seed}'s run {found.run_id}\n"
        f"  serve it: mlflow models serve -m models:/{name}@{contract.CHAMPION} --env-manager local"
    )
    return version
