"""A study's search space: Hydra's sweep syntax, parsed once by Hydra's parser, checked up front.

The syntax of Hydra's Optuna sweeper, from ``hydra.sweeper.params`` or the command line:

    optimizer.learning_rate: tag(log, interval(1e-4, 1e-1))   # float, log scale
    regularization.rate: interval(0.1, 0.6)                   # float
    backbone.filters: int(interval(8, 64))                    # int
    backbone.kernel_size: choice([3,3], [5,5])                # categorical
    head.units: range(32, 257, 32)                            # int with a step: 32, 64, ..., 256
    seed: 0                                                   # fixed: every trial gets it

A later line for a key replaces an earlier one (the command line wins over a preset).
``check_study`` is what the sweep's callback asks before a study's parent run opens: the space
(keys, intervals, values the schema refuses), the sweeper's own keys and the study's storage,
each wrong one in one line. Imports neither TensorFlow nor MLflow; Optuna only where
distributions are built or the storage is opened.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.config import composition
from pipeline.config.errors import ConfigError
from pipeline.config.schemas import GROUPS
from pipeline.tracking import store, studies

FLOAT, INT, CATEGORICAL = "float", "int", "categorical"


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched key: a float or int range (``log``, ``step``), or categorical ``choices``."""

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()  # as Hydra encodes them for an override: "[3,3]", 16, "stride"
    line: str = ""  # as typed

    def distribution(self):
        from optuna import distributions

        if self.kind == CATEGORICAL:
            return distributions.CategoricalDistribution(self.choices)
        if self.kind == INT:
            return distributions.IntDistribution(
                int(self.low), int(self.high), log=self.log, step=int(self.step or 1)
            )
        return distributions.FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def candidates(self) -> list:
        """The values the schema must accept: every choice, or both ends of a range."""
        return list(self.choices) if self.kind == CATEGORICAL else [self.low, self.high]


@dataclasses.dataclass(frozen=True)
class Space:
    params: dict[str, Param]
    fixed: dict[str, str]  # key -> the override line every trial gets

    def distributions(self) -> dict:
        return {key: param.distribution() for key, param in self.params.items()}

    def grid(self) -> dict[str, list]:
        """Every value of each key, for Optuna's GridSampler; only for a discrete space."""
        grid = {}
        for key, param in self.params.items():
            if param.kind == CATEGORICAL:
                grid[key] = list(param.choices)
            elif param.step is not None or param.kind == INT:
                step = param.step or 1
                count = int(round((param.high - param.low) / step)) + 1
                grid[key] = [_number(param.low + i * step, param.kind) for i in range(count)]
            else:
                raise ConfigError(
                    f"{param.line}: hydra/sweeper/sampler=grid needs discrete values: "
                    "use choice(...), range(...) or int(interval(...))"
                )
        return grid

    def overrides(self, values: Mapping[str, Any]) -> list[str]:
        """A trial's overrides: the fixed lines, then each searched key at its value."""
        return [*self.fixed.values(), *(f"{key}={format_value(value)}" for key, value in values.items())]


def lines(params: Mapping[str, Any] | None, arguments: Iterable[str]) -> list[str]:
    """``hydra.sweeper.params`` as override lines, then the command line's (which win)."""
    return [*(f"{key}={value}" for key, value in (params or {}).items()), *arguments]


def parse(override_lines: Iterable[str]) -> Space:
    """The search space of ``override_lines``; one ``ConfigError`` line for a malformed one."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, OverrideParseException

    parser = OverridesParser.create()
    params: dict[str, Param] = {}
    fixed: dict[str, str] = {}
    for line in override_lines:
        try:
            (override,) = parser.parse_overrides([line])
        except (OverrideParseException, HydraException) as err:
            first = next((part.strip() for part in str(err).splitlines() if part.strip()), "malformed")
            raise ConfigError(f"{line}: {first}") from None
        key = override.get_key_element()
        if key.startswith("hydra.") or override.is_delete():
            continue
        params.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            params[key] = _param(override, line)
        else:
            fixed[key] = line
    return Space(params, fixed)


def _param(override, line: str) -> Param:
    from hydra.core.override_parser.types import Transformer

    key, value = override.get_key_element(), override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        choices = tuple(override.sweep_iterator(transformer=Transformer.encode))
        if len(set(map(str, choices))) < len(choices) or not choices:
            raise ConfigError(f"{line}: choice(...) needs distinct values")
        return Param(key, CATEGORICAL, choices=choices, line=line)
    if override.is_range_sweep():
        values = list(override.sweep_iterator())
        if not values:
            raise ConfigError(f"{line}: range(...) is empty: its start must be below its stop")
        kind = INT if all(isinstance(v, int) for v in values) else FLOAT
        step = value.step if len(values) > 1 else 1
        return Param(key, kind, low=values[0], high=values[-1], step=step, line=line)
    low, high, log = value.start, value.end, "log" in value.tags
    if low >= high:
        raise ConfigError(f"{line}: interval(low, high) needs low below high (received {low}, {high})")
    if log and low <= 0:
        raise ConfigError(f"{line}: tag(log, interval(low, high)) needs low above 0 (received {low})")
    kind = INT if isinstance(low, int) and isinstance(high, int) else FLOAT
    return Param(key, kind, low=low, high=high, log=log, line=line)


def check(space: Space, cfg, override_lines: Iterable[str] = ()) -> None:
    """Every searched key exists, and the schema accepts each of its values, before anything trains.

    Args:
        cfg: the composed config the trials start from (``hydra`` included or not).
        override_lines: every line the space came from (a preset, the command line), so that a
            key is checked against the group options chosen with it.

    Raises:
        ConfigError: one line naming the search space's line and what is wrong.
    """
    from omegaconf import OmegaConf, open_dict

    if not space.params:
        raise ConfigError(
            "hydra/sweeper=optuna: the search space is empty: give hydra.sweeper.params or a sweep on the "
            "command line, e.g. 'optimizer.learning_rate=tag(log, interval(1e-4, 1e-1))'"
        )
    composition.check_overrides([*override_lines, *(param.line for param in space.params.values())])
    base = cfg.copy()
    with open_dict(base):
        base.pop("hydra", None)
    for param in space.params.values():
        if param.key in GROUPS or param.key == "experiment" or "@" in param.key:
            continue  # group options: check_overrides knows them
        for value in param.candidates():
            trial = base.copy()
            parsed = OmegaConf.create({"v": value if not isinstance(value, str) else _yaml(value)}).v
            OmegaConf.update(trial, param.key, parsed, force_add=True)
            try:
                composition.validate(trial)
            except ConfigError as err:
                raise ConfigError(f"search space {param.line}: {err}") from None


def format_value(value: Any) -> str:
    """A sampled value as an override: floats to 4 significant digits, so labels stay readable."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _number(value: float, kind: str):
    return int(round(value)) if kind == INT else round(value, 12)


def _yaml(text: str):
    """An encoded choice (``"[3,3]"``, ``"stride"``) as the value its override would set."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def is_study(config) -> bool:
    """Whether this multirun's sweeper is ``hydra/sweeper=optuna`` (this module's)."""
    return str(config.hydra.sweeper.get("_target_", "")).startswith("hydra_plugins.convlab_optuna_sweeper")


def check_study(config) -> None:
    """Everything about a study that can be wrong, in one line, before its parent run or any job
    starts (the sweep's callback calls this): the search space, the sweeper's own keys, the storage."""
    from omegaconf import OmegaConf

    store.check(str(config.tracking.uri))  # the tracking store first: the study's goes with it
    options = config.hydra.sweeper
    params = OmegaConf.to_container(options.params, resolve=False) if options.get("params") else {}
    every = lines(params, list(config.hydra.overrides.task))
    check(parse(every), config, every)
    space = parse(every)
    if options.pruner not in studies.PRUNERS:
        raise ConfigError(
            f"hydra.sweeper.pruner={options.pruner!r} is not one of: {', '.join(studies.PRUNERS)}"
        )
    if options.direction not in ("maximize", "minimize"):
        raise ConfigError(f"hydra.sweeper.direction={options.direction!r} is not one of: maximize, minimize")
    for key, value, least in (
        ("n_trials", options.n_trials, 1), ("n_jobs", options.n_jobs, 1),
        ("confirm.top_k", options.confirm.top_k, 0), ("confirm.seeds", options.confirm.seeds, 1),
    ):  # fmt: skip
        if value < least:
            raise ConfigError(f"hydra.sweeper.{key}={value}: must be at least {least}")
    if str(options.sampler.get("_target_", "")).endswith("GridSampler"):
        space.grid()
    studies.open_storage(studies.storage_for(str(config.tracking.uri), options.storage))
