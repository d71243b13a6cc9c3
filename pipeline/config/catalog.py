"""What ``conf/`` and ``experiments/`` offer: each group's options and their keys, the default
options, and the options an experiment preset chooses. Read from the YAML files themselves (the one
source of defaults), so that an override can be checked before Hydra runs (``composition``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from pipeline.config import overrides
from pipeline.config.groups import GROUPS

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # pipeline/: conf/ sits in it (a wheel) or beside it
# A wheel carries conf/ and experiments/ inside the package; a source checkout has them beside it.
CONF_DIR = next(p for p in (PACKAGE_DIR / "conf", PACKAGE_DIR.parent / "conf") if p.is_dir())
EXPERIMENTS_DIR = CONF_DIR.parent / "experiments"


def group_options(group: str) -> list[str]:
    """The option names of a config group, as ``python -m pipeline --help`` lists them."""
    if group == "experiment":
        return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def chosen_options(lines: list[str]) -> dict[str, set[str]]:
    """The options each group may take with these overrides: the default, an experiment
    preset's (its ``override /group: x`` and its sweep's ``group: a,b``), or the command line's."""
    chosen = {group: {option} for group, option in default_options().items()}
    parsed = [o for o in overrides.parse(lines) if not o.is_delete]
    for o in parsed:
        if o.key == "experiment":
            for name in o.values:
                for group, options in _preset_options(name).items():
                    chosen[group] = chosen.get(group, set()) | options
    for o in parsed:
        if o.key in GROUPS:
            chosen[o.key] = set(o.values)
    return chosen


@functools.cache
def option_keys() -> dict[str, dict[str, set[str]]]:
    """Each group's options and their keys: ``{"downsample": {"stride": {"downsample.strides", ...}}}``."""
    return {
        group: {p.stem: set(_dotted(_load(p), group)) for p in sorted((CONF_DIR / group).glob("*.yaml"))}
        for group in GROUPS
    }


@functools.cache
def default_options() -> dict[str, str]:
    """Each group's default option, from ``conf/config.yaml``'s defaults list."""
    from omegaconf import OmegaConf

    defaults = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "config.yaml"))["defaults"]
    return {k: v for entry in defaults if isinstance(entry, dict) for k, v in entry.items() if k in GROUPS}


@functools.cache
def _preset_options(name: str) -> dict[str, set[str]]:
    from omegaconf import OmegaConf

    path = EXPERIMENTS_DIR / f"{name}.yaml"
    if not path.is_file():
        return {}
    node = OmegaConf.to_container(OmegaConf.load(path))
    options: dict[str, set[str]] = {}
    for entry in node.get("defaults", []):
        for key, value in entry.items() if isinstance(entry, dict) else ():
            group = key.removeprefix("override ").strip().lstrip("/")
            if group in GROUPS:
                options.setdefault(group, set()).add(str(value))
    params = node.get("hydra", {}).get("sweeper", {}).get("params", {}) or {}
    for group, value in params.items():
        if group in GROUPS:
            options.setdefault(group, set()).update(v.strip() for v in str(value).split(","))
    return options


@functools.cache
def known_keys() -> dict[str, set[str]]:
    """Every top-level node's dotted keys, from ``conf/`` (a group's keys: all its options')."""
    from omegaconf import OmegaConf

    root = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "config.yaml"))
    keys = {
        name: set(_dotted(node, name)) for name, node in root.items() if name not in ("defaults", "hydra")
    }
    for group, options in option_keys().items():
        keys[group] = set().union(*options.values())
    keys["experiment"] = set()
    return keys


def _load(path: Path) -> dict:
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(OmegaConf.load(path))
    return {k: v for k, v in node.items() if k != "defaults"}


def _dotted(node: Any, prefix: str) -> list[str]:
    if not isinstance(node, dict):
        return []
    keys = []
    for key, value in node.items():
        keys.append(f"{prefix}.{key}")
        keys.extend(_dotted(value, f"{prefix}.{key}"))
    return keys
