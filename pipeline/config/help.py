"""``python -m pipeline --help``: every group's options with their keys and YAML comments.

Hydra's own help lists only the chosen option's keys and shows ``tracking.uri`` as the raw
``${oc.env:...}``. ``conf/hydra/help/convlab.yaml`` calls the ``${convlab_help:}`` resolver
registered here, which reads the YAML files themselves (comments included): for each group,
its options, the default marked, each option's keys; the experiments; the launchers; then the
config composed for the options chosen (``backbone=resnet50 --help`` shows resnet50's keys).
A key's description is the comment beside it in its YAML file, else the comment beside its field
in the schema (``epochs: PositiveInt  # ...``): the one rule ``docs/gen_reference.py`` follows too.
Reads only files: no TensorFlow, no MLflow.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import re
from pathlib import Path

from pipeline.config import composition, schemas

INDENT = "    "
ENV = re.compile(r"\$\{oc\.env:(\w+),([^}]*)\}")  # ${oc.env:VAR,default}
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_]\w*):(?P<value>[^#]*)(#\s?(?P<comment>.*))?$")
FIELD = re.compile(r"^    (?P<name>\w+): [^#]*(#\s*(?P<comment>.+))?$")  # ``    epochs: PositiveInt  # ...``
# Launchers of installed Hydra plugins: (option, plugin module, what it does)
PLUGIN_LAUNCHERS = (
    ("joblib", "hydra_plugins.hydra_joblib_launcher", "jobs in parallel processes on this machine (n_jobs)"),
    ("submitit_local", "hydra_plugins.hydra_submitit_launcher", "jobs as local submitit processes"),
    ("submitit_slurm", "hydra_plugins.hydra_submitit_launcher", "jobs as SLURM jobs (submitit)"),
)


def register() -> None:
    """Makes ``${convlab_help:}`` available to the help template (before Hydra parses ``--help``)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("convlab_help"):
        OmegaConf.register_new_resolver("convlab_help", _resolve)


def _resolve(*, _root_) -> str:
    from omegaconf import OmegaConf

    choices = OmegaConf.to_container(_root_.hydra.runtime.choices)
    app = OmegaConf.masked_copy(_root_, [g for g in composition.GROUPS if g in _root_])
    # Hydra's help template is a string.Template: a literal $ is written $$
    return render(choices, OmegaConf.to_yaml(app)).replace("$", "$$")


def render(choices: dict, composed_yaml: str = "") -> str:
    """The help body: groups and their options, experiments, launchers, run settings, composed config."""
    defaults = composition.default_options()
    parts = ["== Config groups: group=option (* the default; each option's keys below it) =="]
    for group in composition.GROUPS:
        parts.append(f"{group}:")
        for path in sorted((composition.CONF_DIR / group).glob("*.yaml")):
            mark = " *" if defaults.get(group) == path.stem else ""
            chosen = " (chosen)" if choices.get(group) == path.stem and not mark else ""
            parts.append(f"  {path.stem}{mark}{chosen}")
            parts += [f"{INDENT}{line}" for line in _body(path)]
    parts.append("experiment: (none by default) a preset of options and its sweep; run with -m")
    for path in sorted(composition.EXPERIMENTS_DIR.glob("*.yaml")):
        parts.append(f"  {path.stem}")
        parts += [f"{INDENT}{line}" for line in _leading_comments(path)]
    parts += ["", "== Launchers: -m hydra/launcher=NAME (how a sweep's jobs run) ==", *launchers()]
    parts += ["", "== Run settings (override any key: trainer.epochs=2) =="]
    parts += [f"  {line}" for line in _body(composition.CONF_DIR / "config.yaml", root=True)]
    if composed_yaml:
        picked = ", ".join(f"{g}={choices.get(g)}" for g in composition.GROUPS)
        parts += ["", f"== The options chosen, composed ({picked}) =="]
        parts.append("  # another option's keys: python -m pipeline backbone=resnet50 --help; all: --cfg job")
        parts += [f"  {readable(line)}" for line in composed_yaml.rstrip().splitlines()]
    return "\n".join(parts)


def launchers() -> list[str]:
    """``basic`` (the default), the installed plugins' launchers, and convlab's own in conf/hydra/launcher."""
    lines = ["  basic *          one job after another, in this process"]
    for name, module, what in PLUGIN_LAUNCHERS:
        if _installed(module):
            lines.append(f"  {name:<16} {what}")
    for path in sorted((composition.CONF_DIR / "hydra" / "launcher").glob("*.yaml")):
        lines.append(f"  {path.stem:<16} {_first_comment(path).rstrip(':')}")
    return lines


def readable(line: str) -> str:
    """``uri: ${oc.env:MLFLOW_TRACKING_URI,sqlite:///mlflow.db}`` -> ``uri: sqlite:///mlflow.db
    # or $MLFLOW_TRACKING_URI when set``; the line's own comment follows that note."""
    code, commented, comment = line.partition("#")
    env = ENV.search(code)
    if env is None:
        return line
    note = f"or ${env[1]} when set" + (f"; {comment.strip()}" if commented else "")
    return f"{code[: env.start()]}{env[2]}{code[env.end() :].rstrip()}   # {note}"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def option_schema(group: str, option: str) -> type:
    """The schema a group's option validates against (the union member whose ``name`` it is)."""
    for schema in schemas.GROUPS[group]:
        if option in getattr(schema.model_fields["name"].annotation, "__args__", ()):
            return schema
    return schemas.GROUPS[group][0]


@functools.cache
def field_notes(model: type, prefix: str) -> dict[str, str]:
    """Each field's comment in a schema's source (its bases' included), by dotted key (an alias
    if it has one), nested models walked: ``{"trainer.deterministic": "TensorFlow op ..."}``.
    The comment beside the field, else the comment lines right above it."""
    notes: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if cls.__module__.startswith("pipeline.config."):  # not pydantic's BaseModel, not object
            notes.update(_module_notes(inspect.getsourcefile(cls)).get(cls.__name__, {}))
    fields = model.model_fields
    notes = {f"{prefix}{fields[name].alias or name}": note for name, note in notes.items() if name in fields}
    for name, field in fields.items():
        nested = field.annotation if isinstance(field.annotation, type) else None
        if nested is not None and hasattr(nested, "model_fields"):
            notes.update(field_notes(nested, f"{prefix}{field.alias or name}."))
    return notes


@functools.cache
def _module_notes(path: str) -> dict[str, dict[str, str]]:
    """Each class of a module and its fields' notes, the file read once (``inspect.getsource``
    parses the whole module again for every class: a third of a second for ``--help``)."""
    classes: dict[str, list[str]] = {}
    body: list[str] | None = None
    for line in Path(path).read_text().splitlines():
        if line.startswith("class "):
            body = classes.setdefault(re.match(r"class (\w+)", line)[1], [])
        elif line and not line.startswith((" ", "#")):
            body = None  # a top-level statement ends the class
        elif body is not None:
            body.append(line)
    return {name: _class_notes(lines) for name, lines in classes.items()}


def _class_notes(lines: list[str]) -> dict[str, str]:
    notes, above = {}, []
    for line in lines:
        if line.startswith("    # "):
            above.append(line.strip()[2:])
            continue
        field = FIELD.match(line)
        if field and (field["comment"] or above):
            notes[field["name"]] = (field["comment"] or " ".join(above)).strip()
        above = []
    return notes


def yaml_notes(path: Path) -> dict[str, str]:
    """The schema's note for each key of a file in ``conf/``: ``config.yaml``'s run settings,
    or a group option's keys (``accelerator.jit_compile``)."""
    if path == composition.CONF_DIR / "config.yaml":
        return field_notes(schemas.RunConfig, "")
    group = path.parent.name
    return field_notes(option_schema(group, path.stem), f"{group}.")


def _body(path: Path, root: bool = False) -> list[str]:
    """The file's lines as written (comments kept), less its ``name:``, ``defaults`` and ``hydra``;
    a key without a comment gets its field's note from the schema."""
    lines, skipping = [], False
    for line in path.read_text().splitlines():
        if line.startswith("# @package") or line.startswith("name:") or not line.strip():
            continue
        top = not line.startswith((" ", "#"))
        if top:
            skipping = line.startswith(("defaults:", "hydra:"))
        if skipping or (root and line.startswith("#")):
            continue
        lines.append(line)
    prefix = [] if root else [path.parent.name]
    return [readable(line) for line in _with_notes(lines, yaml_notes(path), prefix)]


def _with_notes(lines: list[str], notes: dict[str, str], prefix: list[str]) -> list[str]:
    """Each key line without a comment gets its note (by dotted key), aligned with the file's comments."""
    keys = [KEY_LINE.match(line) for line in lines]
    written = [line.index("#") for line, key in zip(lines, keys) if key and key["comment"] is not None]
    widths = [len(line) + 2 for line, key in zip(lines, keys) if key]
    column = written[0] if written else max(widths, default=0)
    described, stack = [], list(prefix)
    for line, key in zip(lines, keys):
        if key:
            stack[len(prefix) + len(key["indent"]) // 2 :] = [key["key"]]
            note = notes.get(".".join(stack))
            if note and key["comment"] is None:
                line = f"{line.rstrip().ljust(column - 2)}  # {note}"
        described.append(line)
    return described


def _leading_comments(path: Path) -> list[str]:
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("# @package"):
            continue
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


def _first_comment(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("# ") and not line.startswith("# @package"):
            return line[2:].strip()
    return ""
