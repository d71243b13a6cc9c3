"""Sweeps: one MLflow parent run per Hydra multirun, progress, and the end-of-sweep summary.

``SweepCallback`` is registered in ``conf/config.yaml`` (``hydra.callbacks``). At the start of
a multirun it creates the parent run and writes ``sweep.json`` into the sweep folder; each
job (in this process, or a joblib/submitit worker) reads that file to nest its run under the
parent and to report "job i of N". At the end it logs the summary and the comparison report
to the parent and exits non-zero when any job failed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
import uuid
from pathlib import Path

from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)

SWEEP_FILE = "sweep.json"
_open_parent: dict | None = None  # the parent run this process opened and has not closed yet
_failures: str | None = None  # set when a finished sweep had failed jobs: the CLI exits non-zero


@dataclasses.dataclass(frozen=True)
class SweepJob:
    """One job's view of its sweep, read from ``sweep.json``."""

    sweep_id: str
    parent_run_id: str
    tracking_uri: str
    factors: list[str]
    total: int | None
    started: float
    num: int

    def values(self, overrides: list[str]) -> dict[str, str]:
        pairs = override_values(overrides)
        return {key: pairs[key] for key in self.factors if key in pairs}

    def variant(self, overrides: list[str]) -> str:
        return ",".join(f"{k}={v}" for k, v in self.values(overrides).items()) or "default"

    def tags(self, overrides: list[str]) -> dict[str, str]:
        tags = {
            "mlflow.parentRunId": self.parent_run_id,
            "convlab.role": "job",
            "convlab.sweep_id": self.sweep_id,
            "convlab.job": str(self.num),
        }
        return tags | {f"convlab.factor.{k}": v for k, v in self.values(overrides).items()}


def override_values(overrides: list[str]) -> dict[str, str]:
    """``["+a=1", "b=x,y"] -> {"a": "1", "b": "x,y"}``: Hydra overrides as key -> value text."""
    return dict(o.lstrip("+~").split("=", 1) for o in overrides if "=" in o)


def job_context(hydra_cfg) -> SweepJob | None:
    """The sweep this multirun job belongs to, or None when no ``sweep.json`` was written."""
    path = Path(hydra_cfg.sweep.dir) / SWEEP_FILE
    if not path.is_file():
        return None
    return SweepJob(**json.loads(path.read_text()), num=int(hydra_cfg.job.num))


def sweep_plan(task_overrides: list[str], sweeper_params: dict) -> tuple[int | None, list[str], dict]:
    """``(number of jobs, factor keys, sweep definition)`` as Hydra's basic sweeper will expand it.

    Command-line values win over the preset's ``hydra.sweeper.params``, as in the sweeper.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    arguments = [f"{k}={v}" for k, v in sweeper_params.items()] + list(task_overrides)
    definition = override_values(arguments)
    try:
        parsed = OverridesParser.create().parse_overrides(arguments)
        jobs = BasicSweeper.split_arguments(parsed, None)[0]
    except Exception:  # range/interval sweeps of other sweepers: size unknown up front
        return None, [k for k, v in definition.items() if "," in v and k != "seed"], definition
    varying = {}
    for job in jobs:
        for item in job:
            key, value = item.lstrip("+~").split("=", 1)
            varying.setdefault(key, set()).add(value)
    factors = [k for k, values in varying.items() if len(values) > 1 and k != "seed"]
    return len(jobs), factors, definition


class SweepCallback(Callback):
    """Hydra callback: parent run, progress lines, summary and comparison at the end."""

    def on_multirun_start(self, config, **kwargs) -> None:
        # Hydra turns a callback's exception into a warning and launches the jobs anyway; a sweep
        # that cannot be tracked must not run untracked, so this one stops the command.
        try:
            self._start(config)
        except Exception as err:
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
            sys.exit(f"convlab: cannot start the sweep's MLflow parent run: {reason}")

    def _start(self, config) -> None:
        from omegaconf import OmegaConf

        from pipeline import tracking

        global _open_parent
        task_overrides = list(config.hydra.overrides.task)
        params_node = config.hydra.sweeper.get("params")
        params = OmegaConf.to_container(params_node, resolve=True) if params_node else {}
        total, factors, definition = sweep_plan(task_overrides, params)
        experiment = _experiment_choice(config)
        uri = config.tracking.uri
        sweep_id = uuid.uuid4().hex[:12]
        tags = {
            "convlab.role": "sweep",
            "convlab.sweep_id": sweep_id,
            "convlab.experiment": experiment,
            "convlab.factors": json.dumps(factors),
            "convlab.sweep_params": json.dumps(definition),
            "convlab.overrides": " ".join(task_overrides),
        }
        name = f"sweep {experiment or 'multirun'} {sweep_id[:6]}"
        parent = tracking.start_parent_run(uri, config.tracking.experiment_name, name, tags)
        state = {
            "sweep_id": sweep_id,
            "parent_run_id": parent,
            "tracking_uri": uri,
            "factors": factors,
            "total": total,
            "started": time.time(),
        }
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / SWEEP_FILE).write_text(json.dumps(state))
        _open_parent = {
            **state,
            "experiment_name": config.tracking.experiment_name,
            "sweep_dir": str(sweep_dir),
        }
        log.info("sweep %s: %s jobs, parent run %s (%s)", sweep_id, total or "?", parent, ", ".join(factors))

    def on_job_start(self, config, **kwargs) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode != RunMode.MULTIRUN:
            return
        job = job_context(hydra_cfg)
        if job is None:
            return
        from pipeline import tracking

        overrides = list(hydra_cfg.overrides.task)
        done = tracking.count_finished_children(job.tracking_uri, job.parent_run_id)
        elapsed = time.time() - job.started
        left = (
            f"~{_clock(elapsed / done * (job.total - done))} left"
            if done and job.total
            else "estimating time left"
        )
        seed = override_values(overrides).get("seed", "?")
        log.info(
            "[sweep] job %d/%s | %s seed=%s | elapsed %s | %s",
            job.num + 1,
            job.total or "?",
            job.variant(overrides),
            seed,
            _clock(elapsed),
            left,
        )

    def on_multirun_end(self, config, **kwargs) -> None:
        finish_open_sweep()


def finish_open_sweep() -> None:
    """Summarises the sweep on its parent run, ends it, and fails loudly if any job failed."""
    global _open_parent, _failures
    from pipeline import compare, tracking

    state, _open_parent = _open_parent, None
    if state is None:
        return
    uri, parent = state["tracking_uri"], state["parent_run_id"]
    children = tracking.children_status(uri, parent)
    failed = [c for c in children if c["status"] != "FINISHED"]
    summary = _summary(state, children, failed)
    log.info("\n%s", summary)
    tracking.log_text_to(uri, parent, summary, "sweep_summary.md")
    try:
        out = Path(state["sweep_dir"]) / "comparison"
        compare.write_report(
            experiment=state["experiment_name"], sweep=parent, tracking_uri=uri, out=out, log=True, echo=True
        )
    except Exception as err:  # a comparison problem must not hide the sweep's own outcome
        log.warning("comparison report skipped: %s", err)
    tracking.end_parent_run(uri, parent, "FAILED" if failed else "FINISHED")
    if failed:
        _failures = f"convlab: {len(failed)} of {len(children)} sweep jobs failed (see the summary above)"


def failures() -> str | None:
    """After a sweep: a one-line message when any job failed, else None. Hydra swallows
    exceptions raised in callbacks, so the CLI asks for this once the sweep returns."""
    return _failures


def abort_open_sweep(status: str) -> None:
    """Ends a parent run left open by an interrupted or crashed sweep."""
    global _open_parent
    if _open_parent is not None:
        from pipeline import tracking

        tracking.end_parent_run(_open_parent["tracking_uri"], _open_parent["parent_run_id"], status)
        _open_parent = None


def record_failure(job: SweepJob | None, overrides: list[str], err: BaseException, cfg) -> None:
    """Makes sure a failed job shows up as a FAILED child run, even if it failed before training."""
    if job is None or getattr(err, "convlab_run_id", None):
        return
    from pipeline import tracking

    name = cfg.get("tracking", {}).get("experiment_name", "convlab")
    tags = job.tags(overrides) | {"convlab.variant": job.variant(overrides), "convlab.error": f"{err}"[:500]}
    seed = override_values(overrides).get("seed")
    if seed is not None:
        tags["convlab.seed"] = seed
    tracking.record_failed_run(job.tracking_uri, name, job.variant(overrides), tags)


def _summary(state: dict, children: list[dict], failed: list[dict]) -> str:
    elapsed = _clock(time.time() - state["started"])
    done = len(children) - len(failed)
    lines = [f"# sweep {state['sweep_id']}: {done} of {len(children)} jobs finished in {elapsed}", ""]
    for child in failed:
        lines.append(f"- FAILED {child['variant']} seed={child['seed']}: {child['error']}")
    return "\n".join(lines)


def _experiment_choice(config) -> str:
    choices = config.hydra.runtime.choices
    return str(choices.get("experiment") or "")


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
