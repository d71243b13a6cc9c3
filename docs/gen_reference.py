"""The generated pages of the docs: every config key, and the names of the MLflow contract.

Read from the same sources as ``python -m pipeline --help``: the YAML files in ``conf/`` (each
key's default and its comment) and the pydantic schemas in ``pipeline/config/`` (each key's
type and limits, and the comment beside its field where the YAML line has none, through
``pipeline.config.help.field_notes`` as ``--help`` reads it). MkDocs runs it as a hook (``hooks:``
in ``mkdocs.yml``), so the pages are made at every build and cannot drift from the code;
``python docs/gen_reference.py`` prints them.
The hook also serves ``benchmarks/figures/`` as ``figures/``, so the docs show the same images.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG_PAGE = "reference/config-keys.md"
CONTRACT_PAGE = "reference/contract.md"
CLI_PAGE = "reference/cli.md"
# The commands, in the order a newcomer meets them: (module, what it does)
COMMANDS = (
    ("pipeline", "one run, or a sweep with `-m` (also installed as `convlab`)"),
    (
        "pipeline.ui",
        "start the UI on the runs: MLflow's UI on the configured store, opened on the training runs",
    ),
    (
        "pipeline.compare",
        "a sweep's report, again or for another sweep (also installed as `convlab-compare`)",
    ),
    ("pipeline.register", "one run's model into MLflow's Model Registry"),
    ("pipeline.server", "the team tracking server: MLflow on PostgreSQL, logins, TLS"),
)
ENV = re.compile(r"\$\{oc\.env:(\w+),([^}]*)\}")


def yaml_keys(path: Path, prefix: str) -> tuple[list[str], list[tuple[str, str, str]]]:
    """A YAML file's leading comment lines, and (dotted key, value, comment) for each key, in order.

    Read line by line, as ``--help`` shows them, so each key keeps the comment written beside it.
    """
    from pipeline.config.help import KEY_LINE

    intro, rows, stack = [], [], []
    for line in path.read_text().splitlines():
        if line.startswith("#") and not rows:
            if not line.startswith("# @package"):
                intro.append(line.lstrip("#").strip())
            continue
        match = KEY_LINE.match(line)
        if not match:
            continue
        depth = len(match["indent"]) // 2
        stack[depth:] = [match["key"]]
        if stack[0] in ("defaults", "hydra"):
            continue
        value = match["value"].strip()
        rows.append((".".join([prefix, *stack]).lstrip("."), value, (match["comment"] or "").strip()))
    return intro, rows


def schema_types(model: type, prefix: str) -> dict[str, str]:
    """Each dotted key of a pydantic model (nested models walked) and its type with its limits."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    types: dict[str, str] = {}

    def walk(node: dict, where: str) -> None:
        for key, prop in node.get("properties", {}).items():
            dotted = f"{where}.{key}"
            ref = prop.get("$ref")
            if ref:
                types[dotted] = "section"
                walk(defs[ref.rsplit("/", 1)[-1]], dotted)
            else:
                types[dotted] = describe(prop)

    walk(schema, prefix)
    return types


def describe(prop: dict) -> str:
    """A JSON schema property in a few words: ``integer > 0 or null``, ``val_accuracy | val_loss``."""
    if "anyOf" in prop:
        return " or ".join(describe(p) for p in prop["anyOf"])
    if "const" in prop:
        return f"`{prop['const']}`"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    kind = prop.get("type", "any")
    if kind == "array" and "prefixItems" in prop:
        kind = "[" + ", ".join(describe(p) for p in prop["prefixItems"]) + "]"
    elif kind == "array":
        kind = f"list of {describe(prop.get('items', {}))}"
    limits = [
        f"{sign} {prop[name]}"
        for name, sign in (
            ("minimum", "≥"),
            ("exclusiveMinimum", ">"),
            ("maximum", "≤"),
            ("exclusiveMaximum", "<"),
        )
        if name in prop
    ]
    if prop.get("minLength"):
        limits.append("not empty")
    return " ".join([kind, *limits]) if not limits else f"{kind} {', '.join(limits)}"


def _cell(text: str) -> str:
    """Text made safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


def _table(rows: list[tuple[str, str, str]], types: dict[str, str], notes: dict[str, str]) -> list[str]:
    """A key's description: its YAML comment, else its schema field's (``help.field_notes``)."""
    out = ["| key | default | type | what it sets |", "|---|---|---|---|"]
    seen = set()
    for key, value, comment in rows:
        seen.add(key)
        env = ENV.fullmatch(value)  # ${oc.env:VAR,default}
        shown = f"`{env[2]}` (or `${env[1]}` when set)" if env else f"`{value}`" if value else ""
        out.append(f"| `{key}` | {shown} | {types.get(key, '')} | {_cell(comment or notes.get(key, ''))} |")
    for key, kind in types.items():  # a key the schema has but no YAML file sets
        if key not in seen:
            out.append(f"| `{key}` | (none in conf/) | {kind} | {_cell(notes.get(key, ''))} |")
    return out + [""]


def config_reference() -> str:
    """The page ``reference/config-keys.md``: every group's options and keys, then the run settings."""
    from pipeline.config import catalog, help, schemas
    from pipeline.config.groups import GROUPS

    defaults = catalog.default_options()
    out = [
        "# Every config key",
        "",
        "Generated at each build from the YAML files in `conf/` (each key's default and comment) and the",
        "pydantic schemas in `pipeline/config/schemas.py` and `groups.py` (each key's type and limits, and",
        "the comment beside its field, for a key whose YAML line has none): the same sources, read by the",
        "same code, as `python -m pipeline --help`. Set any key on the command line",
        "(`trainer.epochs=2`); choose a group's option with `group=option` (`optimizer=sgd`).",
        "See [Configuration](configuration.md) for how the groups fit together and what a bad value prints.",
        "",
        "## Run settings",
        "",
    ]
    _, rows = yaml_keys(catalog.CONF_DIR / "config.yaml", "")
    types: dict[str, str] = {}
    notes = help.field_notes(schemas.RunConfig, "")
    for name, field in schemas.RunConfig.model_fields.items():
        if name in GROUPS:
            continue
        model = field.annotation if isinstance(field.annotation, type) else None
        if model is not None and hasattr(model, "model_json_schema"):
            types[name] = "section"
            types.update(schema_types(model, name))
        else:
            types[name] = describe(schemas.RunConfig.model_json_schema()["properties"][name])
    out += _table(rows, types, notes)
    for group in GROUPS:
        out += [
            f"## `{group}`",
            "",
            f"Choose one: `{group}=OPTION`; the default is `{defaults.get(group)}`.",
            "",
        ]
        for path in sorted((catalog.CONF_DIR / group).glob("*.yaml")):
            mark = " (default)" if defaults.get(group) == path.stem else ""
            intro, rows = yaml_keys(path, group)
            schema = help.option_schema(group, path.stem)
            out += [f"### `{group}={path.stem}`{mark}", "", " ".join(intro), ""]
            out += [f"Schema: `{schema.__name__}`.", ""]
            notes = help.field_notes(schema, f"{group}.")
            notes = {f"{group}.name": f"set by `{group}={path.stem}`", **notes}
            out += _table(rows, schema_types(schema, group), notes)
    out += [
        "## `experiment`",
        "",
        "Presets (`experiments/`): a delta on the defaults and its sweep; run with `-m`.",
        "",
    ]
    for path in sorted(catalog.EXPERIMENTS_DIR.glob("*.yaml")):
        intro, _ = yaml_keys(path, "")
        out += [f"- `experiment={path.stem}`: {' '.join(intro)}"]
    return "\n".join(out) + "\n"


def contract_reference() -> str:
    """The page ``reference/contract.md``: every constant of ``pipeline/tracking/contract.py``."""
    path = ROOT / "pipeline" / "tracking" / "contract.py"
    source = path.read_text()
    lines = source.splitlines()
    out = [
        "# The MLflow contract",
        "",
        "Every name that crosses from the runs that write to what reads them (the comparison, the UI,",
        "the tests), generated at each build from `pipeline/tracking/contract.py`.",
        "",
    ]
    for node in ast.parse(source).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and node.lineno == 1:
            out += [node.value.value.split("\n\n", 1)[1].replace("``", "`"), ""]
    out += ["| name | value | note |", "|---|---|---|"]
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            line = lines[node.lineno - 1]
            comment = line.split("  # ", 1)[1] if "  # " in line else ""
            value = ast.get_source_segment(source, node.value).replace("\n", " ")
            out.append(f"| `{node.targets[0].id}` | `{_cell(value)}` | {_cell(comment)} |")
    return "\n".join(out) + "\n"


def cli_reference() -> str:
    """The page ``reference/cli.md``: each command's own ``--help``, run at build time."""
    import importlib.util
    import os
    import subprocess

    out = [
        "# Commands",
        "",
        "Each command's `--help`, as the installed code prints it (generated at each build).",
        "Every config key these commands accept is in [Every config key](config-keys.md).",
        "",
    ]
    env = {**os.environ, "COLUMNS": "100", "PYTHONPATH": str(ROOT)}
    commands = [(module, what) for module, what in COMMANDS if importlib.util.find_spec(module) is not None]
    started = [  # all at once: each pays its own imports
        subprocess.Popen(
            [sys.executable, "-m", module, "--help"], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
        )
        for module, _ in commands
    ]
    for (module, what), process in zip(commands, started):
        text = process.communicate(timeout=120)[0]
        out += [
            f"## `python -m {module}`",
            "",
            what[0].upper() + what[1:] + ".",
            "",
            "```text",
            text.rstrip(),
            "```",
            "",
        ]
    return "\n".join(out) + "\n"


def floors() -> str:
    """The floors of ``pipeline/`` and every import-linter contract, read from ``pyproject.toml``."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c["layers"] for c in contracts if c["type"] == "layers")
    rows = [[name.strip().removeprefix("pipeline.") for name in layer.split("|")] for layer in layers]
    width = max(len("   ".join(row)) for row in rows) + 4
    box = ["+" + "-" * width + "+"]
    for i, row in enumerate(rows):
        box.append("|" + "   ".join(row).center(width) + "|")
        box.append("+" + "-" * width + "+" if i == len(rows) - 1 else "|" + " v ".center(width, "-") + "|")
    out = ["```text", "   the CLI and the Python API (pipeline/__main__.py, app.py, __init__.py)", *box]
    out += ["   (each floor may import only the floors below it)", "```", "", "| contract | kind | what |"]
    out += ["|---|---|---|"]
    for c in contracts:
        if c["type"] == "layers":
            what = " > ".join(" | ".join(row) for row in rows)
        elif c["type"] == "forbidden":
            what = f"{', '.join(c['source_modules'])} may not import {', '.join(c['forbidden_modules'])}"
        else:
            what = f"no cycles among the sub-packages of {', '.join(c.get('ancestors', []))}"
        out.append(f"| {c['name']} | {c['type']} | {_cell(what)} |")
    return "\n".join(out) + "\n"


# --- the MkDocs hook ----------------------------------------------------------------------------
def on_files(files, config):  # noqa: ANN001, ANN201 (MkDocs' hook signature)
    from mkdocs.structure.files import File

    sys.path.insert(0, str(ROOT)) if str(ROOT) not in sys.path else None
    files.append(File.generated(config, CONFIG_PAGE, content=config_reference()))
    files.append(File.generated(config, CONTRACT_PAGE, content=contract_reference()))
    files.append(File.generated(config, CLI_PAGE, content=cli_reference()))
    for image in sorted((ROOT / "benchmarks" / "figures").glob("*.png")):
        files.append(File.generated(config, f"figures/{image.name}", abs_src_path=str(image)))
    return files


def on_page_markdown(markdown, page, config, files):  # noqa: ANN001, ANN201
    """``<!-- floors -->`` in a page becomes the floors' diagram and their contracts."""
    return markdown.replace("<!-- floors -->", floors()) if "<!-- floors -->" in markdown else markdown


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    pages = {"contract": contract_reference, "cli": cli_reference, "floors": floors}
    print(pages.get(sys.argv[1] if sys.argv[1:] else "", config_reference)())
