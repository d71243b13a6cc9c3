"""Hydra override strings, parsed once, with Hydra's own ``OverridesParser``.

Everything in convlab that reads an override (``seed=0,1,2``, ``optimizer=sgd``,
``+trainer.x=1``) goes through ``parse``: the sweep's plan and its variants, the one-line
checks of group options and keys before Hydra runs, and the comparison's sweep definition.
Imports neither TensorFlow nor MLflow.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
from collections.abc import Iterable, Mapping

from pipeline.config.errors import ConfigError

# Overrides that change how a run is run or recorded, not which variant it is.
NOT_VARIANT = ("seed", "experiment", "tracking", "hydra", "sweep", "dataset.path", "dataset.test_path")
NOT_VARIANT += ("backbone.weights", "trainer.feature_cache_dir")


@dataclasses.dataclass(frozen=True)
class Override:
    """One parsed override: ``key`` without its ``+``/``++``/``~`` prefix."""

    key: str
    values: tuple[str, ...]  # one value, or each value of a discrete sweep (``a,b``, ``range(3)``)
    is_sweep: bool  # any sweep, including intervals, whose values cannot be listed
    is_delete: bool
    line: str  # as typed

    @property
    def value(self) -> str:
        return ",".join(self.values)


def parse(lines: Iterable[str]) -> list[Override]:
    """Parses Hydra overrides; a malformed one raises ``ConfigError`` with one line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, OverrideParseException

    parser = OverridesParser.create()
    parsed = []
    for line in lines:
        try:
            parsed.extend(parser.parse_overrides([line]))
        except (OverrideParseException, HydraException) as err:
            raise ConfigError(f"{line}: {_first_line(err)}") from None
    return [_override(o) for o in parsed]


def _override(o) -> Override:
    key = o.key_or_group if o.package is None else f"{o.key_or_group}@{o.package}"
    if o.is_delete():
        return Override(key, (), False, True, o.input_line)
    if o.is_sweep_override():
        values = tuple(o.sweep_string_iterator()) if o.is_discrete_sweep() else ()
        return Override(key, values, True, False, o.input_line)
    return Override(key, (o.get_value_element_as_str(),), False, False, o.input_line)


def values(lines: Iterable[str]) -> dict[str, str]:
    """``["+a=1", "b=x,y"] -> {"a": "1", "b": "x,y"}``; later keys win, as in Hydra."""
    return {o.key: o.value for o in parse(lines) if not o.is_delete}


def expand(lines: Iterable[str]) -> list[dict[str, str]] | None:
    """Each job of a sweep as ``{key: value}``, in the order Hydra's basic sweeper runs them.

    Later overrides of a key replace earlier ones but keep their place (the basic sweeper's
    rule, so a command line overrides a preset's ``hydra.sweeper.params``). None when a sweep
    cannot be listed up front (an interval, for Optuna and other sweepers).
    """
    choices: dict[str, tuple[str, ...]] = {}
    for o in parse(lines):
        if o.is_delete:
            continue
        if o.is_sweep and not o.values:
            return None
        choices[o.key] = o.values
    keys = list(choices)
    return [dict(zip(keys, combo)) for combo in itertools.product(*choices.values())]


def factors(jobs: list[dict[str, str]]) -> list[str]:
    """The keys whose value varies between jobs, seed left out: what defines a variant."""
    keys = list(dict.fromkeys(k for job in jobs for k in job))
    return [k for k in keys if k != "seed" and len({job.get(k) for job in jobs}) > 1]


def variant(pairs: Mapping[str, str], factor_keys: list[str] | None = None) -> str:
    """A variant's label: its factors' values in a sweep, else every override that defines it.

    ``variant({"seed": "1", "optimizer": "sgd"}) -> "optimizer=sgd"``;
    ``variant({"downsample": "stride", "seed": "0"}, ["downsample"]) -> "downsample=stride"``.
    """
    if factor_keys is None:
        factor_keys = sorted(k for k in pairs if not _not_variant(k))
    return ",".join(f"{k}={pairs[k]}" for k in factor_keys if k in pairs) or "default"


def _not_variant(key: str) -> bool:
    return any(key == prefix or key.startswith(f"{prefix}.") for prefix in NOT_VARIANT)


def check(
    lines: Iterable[str],
    groups: Mapping[str, list[str]],
    keys: Mapping[str, set[str]],
    options: Mapping[str, Mapping[str, set[str]]] | None = None,
    chosen: Mapping[str, set[str]] | None = None,
) -> None:
    """Rejects, in one line, a group option or a key that does not exist.

    Hydra would reject them too, with several lines (a search-path dump, a struct error). A key
    of a group is looked up in the options chosen for that group: ``downsample.strides`` with
    ``downsample=none`` names ``downsample=stride``, the option that has it. A ``+key`` that no
    option has is refused too: the schemas allow no new keys.

    Args:
        groups: each config group's options, e.g. ``{"optimizer": ["adam", "sgd"]}``.
        keys: each top-level node's valid dotted keys, e.g. ``{"trainer": {"epochs", ...}}``.
        options: each group's options' dotted keys, e.g. ``{"downsample": {"stride": {...}}}``.
        chosen: the options each group takes with these overrides, e.g. ``{"downsample": {"none"}}``.
    """
    options = options or {}
    chosen = chosen or {}
    valid = {root: set(ks) for root, ks in keys.items()}
    for group, by_option in options.items():  # a group's valid keys: those of its chosen options
        taken = chosen.get(group) or set(by_option)
        valid[group] = set().union(*(by_option.get(option, set()) for option in taken))
    for o in parse(lines):
        root = o.key.split(".")[0].split("@")[0]
        if root.split("/")[0] == "hydra" or o.is_delete:
            continue
        if o.key in groups:
            for choice in o.values:
                if choice not in groups[o.key] and choice != "null":
                    allowed = ", ".join(groups[o.key])
                    raise ConfigError(f"{o.key}={choice!r} is not an option; choose one of: {allowed}")
        elif root not in valid or (o.key != root and o.key not in valid[root]):
            owners = [name for name, ks in options.get(root, {}).items() if o.key in ks]
            if owners:
                raise ConfigError(_belongs(o.key, root, owners, chosen.get(root, set())))
            raise ConfigError(f"{o.key}: no such config key{_near(o.key, valid)}")


def _belongs(key: str, group: str, owners: list[str], taken: set[str]) -> str:
    """``downsample.strides belongs to downsample=stride, not downsample=none; add downsample=stride``."""
    which = owners[0] if len(owners) == 1 else f"{', '.join(owners[:-1])} or {owners[-1]}"
    add = f"add {group}={owners[0]}" if len(owners) == 1 else f"add one of them, e.g. {group}={owners[0]}"
    return f"{key} belongs to {group}={which}, not {group}={','.join(sorted(taken))}; {add}"


def _near(key: str, valid: Mapping[str, set[str]]) -> str:
    """``; did you mean trainer.epochs?``: keys of the same kind, within the chosen options."""
    dotted = "." in key  # trainer.epoch -> trainer.epochs; optimzer -> optimizer
    known = sorted({k for ks in valid.values() for k in ks} if dotted else set(valid))
    near = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    return f"; did you mean {', '.join(near)}?" if near else "; see python -m pipeline --help"


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
