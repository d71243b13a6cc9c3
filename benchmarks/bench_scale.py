"""A sweep of 1,000 runs: the comparison, the end-of-pass summary and the parent's report, timed.

A small real sweep (``experiment=stride_vs_pool``, seed 0, 2 epochs: 4 runs) is cloned in the
store, through MLflow's client, into a sweep of VARIANTS x SEEDS children: each clone copies a
source run's tags, params and metric histories, its seed renamed and its accuracies jittered (so
seeds differ); 8 variants add a factor (``augmentation=none|flip_shift``) to the 4. Then, on
that sweep:

1. ``python -m pipeline.compare --experiment E --sweep PARENT``, the whole process;
2. the end of a pass (``pipeline.sweep.summary.finish``: the summary, the parent ended, the
   comparison's report logged to the parent, its description, metrics and saved views);
3. what the parent holds afterwards: one table row per variant, the verdict, the figures.

    python benchmarks/bench_scale.py                       # 4 x 250 and 8 x 125, plus 4 x 75 (300)
    python benchmarks/bench_scale.py --shapes 4x250 --keep DIR   # keep the store in DIR
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from pipeline.config import overrides
from pipeline.tracking import contract

SOURCE = ["experiment=stride_vs_pool", "seed=0", "trainer.epochs=2", "dataset.max_samples=300",
          "tracking.log_model=false", "tracking.experiment_name=scale_source"]  # fmt: skip
EXTRA_FACTOR = ("augmentation", ["none", "flip_shift"])  # 8 variants: the 4, each at two levels


def source_sweep(uri: str, cwd: Path):
    """The small real sweep (run once per store): its parent and children."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    if client.get_experiment_by_name("scale_source") is None:
        command = [sys.executable, "-m", "pipeline", "-m", *SOURCE, f"tracking.uri={uri}"]
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    experiment = client.get_experiment_by_name("scale_source").experiment_id
    runs = client.search_runs([experiment], max_results=100)
    (parent,) = [r for r in runs if r.data.tags.get(contract.ROLE) == contract.ROLE_SWEEP]
    return parent, [r for r in runs if r.data.tags.get(contract.PARENT) == parent.info.run_id]


def clone(uri: str, parent, children, variants: int, seeds: int) -> tuple[str, str]:
    """A new sweep of ``variants`` x ``seeds`` children cloned from ``children``; (experiment, parent)."""
    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    client = mlflow.MlflowClient(uri)
    name = f"scale_{variants}x{seeds}"
    experiment = client.create_experiment(f"{name}_{uuid.uuid4().hex[:6]}")
    factors = sweep_factors = list(_json(parent.data.tags[contract.FACTORS]))
    if variants == 2 * len(children):
        sweep_factors = [*factors, EXTRA_FACTOR[0]]
    tags = {k: v for k, v in parent.data.tags.items() if not k.startswith("mlflow.")}
    tags |= {contract.FACTORS: _dumps(sweep_factors), contract.SWEEP_ID: name}
    new_parent = client.create_run(experiment, run_name=name, tags=tags).info.run_id
    histories = {c.info.run_id: _histories(client, c) for c in children}
    rng = random.Random(0)
    sources = [(c, level) for level in EXTRA_FACTOR[1][: variants // len(children)] for c in children]
    for source, level in sources:
        values = {k: source.data.tags[contract.factor_tag(k)] for k in factors}
        if len(sweep_factors) > len(factors):
            values[EXTRA_FACTOR[0]] = level
        variant = overrides.variant(values, sweep_factors)
        shift = rng.gauss(0, 0.01)  # a variant's own offset, so that variants differ
        for seed in range(seeds):
            run_tags = {k: v for k, v in source.data.tags.items() if not k.startswith("mlflow.")}
            run_tags |= {contract.PARENT: new_parent, contract.VARIANT: variant, contract.SEED: str(seed),
                         contract.factor_tag(EXTRA_FACTOR[0]): level,
                         contract.CONFIG_HASH: uuid.uuid4().hex}  # fmt: skip
            run = client.create_run(experiment, run_name=f"{variant} seed={seed}", tags=run_tags)
            noise = shift + rng.gauss(0, 0.01)
            metrics = [
                Metric(key, min(1.0, max(0.0, value + noise)) if "accuracy" in key else value, 0, step)
                for key, steps in histories[source.info.run_id].items()
                for step, value in steps
            ]
            params = [Param(k, str(seed) if k == "seed" else v) for k, v in source.data.params.items()]
            for start in range(0, len(metrics), 1000):  # the store's cap per batch
                client.log_batch(run.info.run_id, metrics=metrics[start : start + 1000])
            for start in range(0, len(params), 100):
                client.log_batch(run.info.run_id, params=params[start : start + 100])
            client.log_batch(run.info.run_id, tags=[RunTag(contract.ROLE, contract.ROLE_JOB)])
            client.set_terminated(run.info.run_id, contract.FINISHED)
    return client.get_experiment(experiment).name, new_parent


def _histories(client, run) -> dict[str, list[tuple[int, float]]]:
    return {key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
            for key in run.data.metrics}  # fmt: skip


def _json(text: str):
    import json

    return json.loads(text)


def _dumps(value) -> str:
    import json

    return json.dumps(value)


def measure(uri: str, experiment: str, parent: str, folder: Path) -> dict:
    """compare's whole process, then the end of a pass (summary, parent's report), timed."""
    import mlflow

    from pipeline.sweep import summary

    started = time.perf_counter()
    command = [sys.executable, "-m", "pipeline.compare", "--experiment", experiment, "--sweep", parent,
               "--tracking-uri", uri, "--out", str(folder / "compare")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    compare_s = time.perf_counter() - started
    state = {"uri": uri, "parent": parent, "sweep_id": experiment, "experiment_name": experiment,
             "sweep_dir": str(folder / "sweep"), "started": time.time(), "register": None,
             "register_undecided": False}  # fmt: skip
    started = time.perf_counter()
    summary.finish(state)
    finish_s = time.perf_counter() - started
    client = mlflow.MlflowClient(uri)
    run = client.get_run(parent)
    note = run.data.tags.get(contract.NOTE, "")
    figures = [a.path for a in client.list_artifacts(parent, "comparison") if a.path.endswith(".png")]
    return {"compare_s": compare_s, "finish_s": finish_s, "note_rows": note.count("\n| "),
            "note_chars": len(note), "figures": len(figures)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="4x75,4x250,8x125", help="VARIANTSxSEEDS, comma-separated")
    parser.add_argument("--keep", help="a folder to keep the store and the reports in")
    args = parser.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="convlab-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder.resolve()}/mlflow.db"
    parent, children = source_sweep(uri, folder)
    for shape in args.shapes.split(","):
        variants, seeds = (int(n) for n in shape.split("x"))
        started = time.perf_counter()
        experiment, new_parent = clone(uri, parent, children, variants, seeds)
        cloned_s = time.perf_counter() - started
        found = measure(uri, experiment, new_parent, folder / shape)
        print(f"{shape} ({variants * seeds} runs, cloned in {cloned_s:.0f} s): "
              + " ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in found.items()),
              flush=True)  # fmt: skip
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
