"""Registers one run's model in MLflow's Model Registry, as ``sweep.register`` does for a sweep.

    python -m pipeline.register RUN_ID NAME                     # a new version of NAME, alias champion
    python -m pipeline.register RUN_ID NAME --alias staging --tracking-uri http://127.0.0.1:5000

The version's description says which run it is (variant, seed, final val_accuracy), its tags
carry the run's variant, seed and sweep id. Bad input (an unknown run, a run with no model, an
unusable store) is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.config.errors import ConvlabError
from pipeline.tracking import contract, registry, store


def describe(uri: str, run_id: str) -> tuple[str, dict[str, str]]:
    """The description and tags of a version registered by hand from ``run_id``."""
    run = registry.client(uri).get_run(run_id)
    tags, metrics = run.data.tags, run.data.metrics
    variant, seed = tags.get(contract.VARIANT, "default"), tags.get(contract.SEED, "")
    accuracy = metrics.get(contract.VAL_ACCURACY)
    scored = f", final {contract.VAL_ACCURACY} {accuracy:.4f}" if accuracy is not None else ""
    description = (
        f"Registered by hand (python -m pipeline.register) from run {run_id} ({run.info.run_name}): "
        f"{variant}, seed {seed}{scored}. Not a sweep's verdict: one run, one seed."
    )
    version_tags = {contract.VARIANT: variant, contract.SEED: seed, contract.SEEDS: seed}
    version_tags |= {contract.SOURCE_RUN: run_id, contract.DECIDED: "false"}
    if contract.SWEEP_ID in tags:
        version_tags[contract.SWEEP_ID] = tags[contract.SWEEP_ID]
    return description, version_tags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.register", description=__doc__.splitlines()[0])
    parser.add_argument("run_id", help="the run whose logged model to register")
    parser.add_argument("name", help="the registered model's name (created on first use)")
    parser.add_argument("--alias", default=contract.CHAMPION, help="set on the new version (%(default)s)")
    parser.add_argument("--tracking-uri", help=f"default: $MLFLOW_TRACKING_URI or {store.DEFAULT_URI}")
    args = parser.parse_args(argv)
    uri = store.resolve_uri(args.tracking_uri)
    try:
        store.check(uri)
        registry.logged_model_id(uri, args.run_id)  # an unknown run or one without a model: one line
        description, tags = describe(uri, args.run_id)
        version = registry.register(uri, args.run_id, args.name, description, tags, args.alias)
    except ConvlabError as err:
        print(f"convlab: {err}", file=sys.stderr)
        return 2
    print(f"registered {args.name} version {version.version} (alias {args.alias}) from run {args.run_id}")
    print(f"  serve it: mlflow models serve -m models:/{args.name}@{args.alias} --env-manager local")
    return 0


if __name__ == "__main__":
    sys.exit(main())
