"""The floors stay visible: convlab's own imports sit at the top of each module.

The import graph is the architecture (``lint-imports`` checks its layers in CI); an import of a
convlab module hidden in a function body hides an edge of it. The few that must wait (they would
load pandas or the run floor for ``--help``) say why on the same line.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pipeline

PACKAGE = Path(pipeline.__file__).parent


def _hidden_imports() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.col_offset > 0 and node.level == 0:
                names = [node.module or ""]
            elif isinstance(node, ast.Import) and node.col_offset > 0:
                names = [alias.name for alias in node.names]
            else:
                continue
            if any(name == "pipeline" or name.startswith("pipeline.") for name in names):
                found.append((str(path.relative_to(PACKAGE)), node.lineno, lines[node.lineno - 1]))
    return found


def test_convlab_imports_in_function_bodies_say_why():
    hidden = _hidden_imports()
    unexplained = [(path, line) for path, line, text in hidden if "#" not in text]
    assert unexplained == [], "import convlab modules at the top, or say why on the line"
    assert len(hidden) <= 7  # pipeline.run, the CLI's app, the sweep's comparison and callback: no creep


def test_every_floor_says_what_it_owns_and_may_use():
    for floor in ("config", "data", "model", "tracking", "training", "sweep", "compare", "server"):
        doc = ast.get_docstring(ast.parse((PACKAGE / floor / "__init__.py").read_text()))
        assert doc and "May use" in doc or floor == "config" and "imports no other convlab floor" in doc


def test_the_public_api_survives_loading_every_floor():
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("pipeline", *path.relative_to(PACKAGE).with_suffix("").parts))
        if not module.endswith(("__main__", "__init__")):
            importlib.import_module(module)
    # a subpackage named like the API (pipeline/run/) would have replaced the function
    assert callable(pipeline.run) and pipeline.run.__module__ == "pipeline"
    assert issubclass(pipeline.ConfigError, pipeline.ConvlabError)
