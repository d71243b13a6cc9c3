"""A sweep's decided winner handed on: its model registered in MLflow's Model Registry.

``sweep.register=NAME`` asks for it. Once the comparison is in, the sweep's callback picks the
winner (``pipeline.compare.winner``: the variant and its median run) and calls
``register_winner``, which writes the version through ``pipeline.tracking.registry`` (alias
``champion``, the verdict as description, tags: sweep id, variant, seeds). Undecided: one line
and nothing registered, unless ``sweep.register_undecided=true``. A run already registered under
the name (a resume of a finished sweep) is not registered again, and ``champion`` stays where it
is. Any other failure is a ``RegistrationError``: the sweep exits non-zero.
"""

from __future__ import annotations

import sys
from typing import Protocol

from pipeline.config.errors import ConvlabError
from pipeline.tracking import contract, registry


class RegistrationError(ConvlabError):
    """The winner could not be registered (one line): the sweep exits non-zero."""


class Winner(Protocol):
    """What ``pipeline.compare.winner.Winner`` gives (the comparison loads only when a pass ends)."""

    variant: str
    run_id: str
    seed: str
    seeds: list[str]
    decided: bool
    description: str


def register_winner(uri: str, sweep_id: str, name: str, found: Winner | None, undecided: str):
    """Registers ``found`` (the winner's median run) as a new version of ``name``; returns the
    ``ModelVersion`` (the existing one when that run is registered already), or None (after one
    line on stderr saying ``undecided``, why nothing was decided) when ``found`` is None."""
    if found is None:
        print(
            f"convlab: sweep.register={name}: {undecided}; nothing registered (more seeds: "
            "sweep.max_seeds; or sweep.register_undecided=true registers the best mean)",
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
        if (version := registry.version_of(uri, name, found.run_id)) is not None:
            print(f"{name} version {version.version} holds {found.variant}, seed {found.seed}'s run "
                  f"{found.run_id} already: nothing registered again")  # fmt: skip
            return version
        version = registry.register(uri, found.run_id, name, found.description, tags)
    except Exception as err:  # whatever it was, the sweep must not end as if the model were handed on
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise RegistrationError(f"sweep.register={name}: {reason}; nothing registered") from None
    state = "decided" if found.decided else "UNDECIDED"
    print(
        f"registered {name} version {version.version} (alias {contract.CHAMPION}, {state}): {found.variant}, "
        f"seed {found.seed}'s run {found.run_id}\n"
        f"  serve it: mlflow models serve -m models:/{name}@{contract.CHAMPION} --env-manager local"
    )
    return version
