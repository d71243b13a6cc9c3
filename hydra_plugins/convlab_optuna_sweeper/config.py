"""``hydra/sweeper=optuna``: the config keys of Hydra's own Optuna sweeper, plus pruning and confirm.

Hydra imports this module while it discovers plugins (every ``python -m pipeline``), so it
imports nothing heavy: the samplers are ``_target_`` strings that Optuna builds at sweep time.

    python -m pipeline -m hydra/sweeper=optuna hydra/sweeper/sampler=random \
        hydra.sweeper.sampler.seed=1 hydra.sweeper.n_trials=20 \
        'optimizer.learning_rate=tag(log, interval(1e-4, 1e-1))' downsample=choice(stride,maxpool)
"""

# No ``from __future__ import annotations``: Hydra executes plugin modules outside sys.modules,
# where dataclasses cannot resolve string annotations.
import importlib.util
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class SamplerConfig:
    _target_: str = MISSING
    seed: int | None = None


@dataclass
class TPESamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.TPESampler"
    n_startup_trials: int = 10
    multivariate: bool = False


@dataclass
class RandomSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.RandomSampler"


@dataclass
class GridSamplerConfig(SamplerConfig):
    """Every combination of the (discrete) search space: built once the space is known."""

    _target_: str = "optuna.samplers.GridSampler"
    _partial_: bool = True


@dataclass
class CmaEsSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.CmaEsSampler"
    n_startup_trials: int = 1


@dataclass
class QMCSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.QMCSampler"
    qmc_type: str = "sobol"
    scramble: bool = False


@dataclass
class ConfirmConfig:
    """After the search: the top_k configurations run again over seeds (0 turns it off)."""

    top_k: int = 3
    seeds: int = 5  # at most this many seeds per configuration (adaptive: fewer once decided)


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.convlab_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])

    sampler: SamplerConfig = MISSING
    direction: str = "maximize"  # the app returns the final val_accuracy
    storage: str | None = None  # null: beside the tracking store (README: where a study lives)
    study_name: str | None = None  # null: one study per sweep, named after its sweep id
    n_trials: int = 20
    n_jobs: int = 1  # trials in flight, a new one as soon as one ends: the launcher's parallelism
    max_failure_rate: float = 1.0  # stop once more than this share of a batch failed
    params: dict[str, Any] | None = None
    pruner: str = "none"  # median | hyperband | none, on the per-epoch val_accuracy
    pruner_startup_trials: int = 5  # median: trials that always run to the end first
    pruner_warmup_epochs: int = 1  # median: epochs before a trial can be pruned
    confirm: ConfirmConfig = field(default_factory=ConfirmConfig)


_store = ConfigStore.instance()
# Hydra's own plugin, once installed (a release for Optuna 4), takes the name: convlab's steps aside.
if importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None:
    _store.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="convlab")
    for _name, _node in {
        "tpe": TPESamplerConfig,
        "random": RandomSamplerConfig,
        "grid": GridSamplerConfig,
        "cmaes": CmaEsSamplerConfig,
        "qmc": QMCSamplerConfig,
    }.items():
        _store.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="convlab")
