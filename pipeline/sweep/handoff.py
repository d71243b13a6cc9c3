"""A sweep's decided winner handed on: its model registered in MLflow's Model Registry.

``sweep.register=NAME`` asks for it. Once the comparison is in, the sweep's callback picks the
winner (``pipeline.compare.winner``: the variant and its median run) and calls
``register_winner``, which writes the version through ``pipeline.tracking.registry`` (alias
``champion``, the verdict as description, tags: sweep id, variant, seeds). Undecided: one line
and nothing registered, unless ``sweep.register_undecided=true``.
"""

from __future__ import annotations

import sys
from typing import Protocol

from pipeline.config.errors import ConvlabError
from pipeline.tracking import contract, registry


class Winner(Protocol):
    """What ``pipeline.compare.winner.Winner`` gives (the comparison loads only when a pass ends)."""

    variant: str
    run_id: str
    seed: str
    seeds: list[str]
    decided: bool
    description: str


def register_winner(uri: str, sweep_id: str, name: str, found: Winner | None, baseline: str):
    """Registers ``found`` (the winner's median run) as a new version of ``name``; returns the
    ``ModelVersion``, or None (after one line on stderr) when nothing was registered."""
    if found is None:
        print(
            f"convlab: sweep.register={name}: no variant is decided best against the baseline "
            f"{baseline}; nothing registered (more seeds: sweep.max_seeds; or "
            "sweep.register_undecided=true registers the best mean)",
            file=sys.stderr,
        )
        return None
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
