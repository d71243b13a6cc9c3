"""The edge between Hydra and a run: composed config in, validated run + run info out.

Both entry points end here: the Hydra task function (``python -m pipeline``) and the Python
API (``pipeline.run``). Below this module nothing reads Hydra.
"""

from __future__ import annotations

import logging
import math
import sys
import tempfile
from pathlib import Path

from pipeline import config
from pipeline.errors import ConfigError, ConvlabError

log = logging.getLogger(__name__)

# Overrides that change how a run is run or recorded, not which variant it is.
NOT_VARIANT = (
    "seed",
    "experiment",
    "tracking.",
    "hydra.",
    "dataset.path",
    "dataset.test_path",
    "backbone.weights",
)


def task(cfg) -> float:
    """The Hydra task: validate, train, return final val_accuracy (NaN for a failed sweep job)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from pipeline import sweep

    hydra_cfg = HydraConfig.get()
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    overrides = list(hydra_cfg.overrides.task)
    sweep_job = sweep.job_context(hydra_cfg) if in_sweep else None
    try:
        run = config.validate(cfg)
        info = _run_info(
            hydra_cfg.runtime.choices,
            overrides,
            Path(hydra_cfg.runtime.output_dir),
            OmegaConf.to_container(cfg, resolve=True),
            sweep_job,
        )
        from pipeline import runner

        return runner.execute(run, info).metrics.get("val_accuracy", math.nan)
    except Exception as err:
        if not in_sweep:
            if isinstance(err, ConvlabError):  # the user's own mistake: one line, no traceback
                sys.exit(f"convlab: {err}")
            raise
        # A sweep goes on: the job is recorded FAILED and named in the sweep's summary.
        sweep.record_failure(sweep_job, overrides, err, cfg)
        log.error("job failed: %s: %s", type(err).__name__, err)
        return math.nan


def run_overrides(overrides: list[str], config_name: str = "config"):
    """The Python API behind ``pipeline.run``: compose as the CLI does, then train."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict

    from pipeline import runner

    config.register_experiments()
    config.check_choices(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(config.CONF_DIR), job_name="convlab"):
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    except HydraException as err:
        raise ConfigError(str(err).splitlines()[0]) from None
    choices = dict(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    run = config.validate(cfg)
    with tempfile.TemporaryDirectory(prefix="convlab-") as folder:
        hydra_dir = Path(folder) / ".hydra"
        hydra_dir.mkdir()
        OmegaConf.save(cfg, hydra_dir / "config.yaml")
        OmegaConf.save(OmegaConf.create(overrides), hydra_dir / "overrides.yaml")
        info = _run_info(choices, overrides, Path(folder), OmegaConf.to_container(cfg, resolve=True), None)
        return runner.execute(run, info)


def _run_info(choices, overrides, output_dir, params, sweep_job):
    from pipeline.runner import RunInfo

    groups = {group: str(option) for group, option in choices.items() if group in config.GROUPS}
    if sweep_job is not None:
        variant, tags = sweep_job.variant(overrides), sweep_job.tags(overrides)
    else:
        variant, tags = variant_label(overrides), {}
    return RunInfo(groups, overrides, output_dir, params, variant, tags)


def variant_label(overrides: list[str]) -> str:
    """``["seed=1", "optimizer=sgd", "trainer.epochs=1"] -> "optimizer=sgd,trainer.epochs=1"``."""
    kept = sorted(o.lstrip("+~") for o in overrides if not o.lstrip("+~").startswith(NOT_VARIANT))
    return ",".join(kept) or "default"
