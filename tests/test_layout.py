"""The floors stay visible: convlab's own imports sit at the top of each module.

The import graph is the architecture (``lint-imports`` checks its layers in CI); an import of a
convlab module hidden in a function body hides an edge of it. The few that must wait (they would
load pandas or the run floor for ``--help``) say why on the same line.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pipeline

PACKAGE = Path(pipeline.__file__).parent
PLUGINS = PACKAGE.parent / "hydra_plugins"  # Hydra imports each at start-up: convlab loads inside launch
PRAGMA = re.compile(r"\b(noqa|type: ?ignore|fmt: ?(skip|off|on)|pragma)\b[:\w, ]*")


def reason(line: str, above: list[str]) -> str:
    """The why of an import on ``line``: its comment, else the comment line just above its block of
    imports (``above``: the lines before it, nearest last); linters' pragmas are no reason."""
    comment = line.partition("#")[2]
    for earlier in reversed(above):
        if comment or not earlier.strip().startswith(("from ", "import ", "#")):
            break
        comment = earlier.strip()[1:] if earlier.strip().startswith("#") else ""
    words = re.findall(r"[A-Za-z]{2,}", PRAGMA.sub("", comment))
    return " ".join(words) if len(words) >= 3 else ""


def _hidden_imports() -> list[tuple[str, int, str]]:
    """``(file, line, why)`` of every convlab import inside a function or class, in pipeline/ and
    hydra_plugins/; ``why`` is empty where no reason is given."""
    found = []
    for path in sorted([*PACKAGE.rglob("*.py"), *PLUGINS.rglob("*.py")]):
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
                why = reason(lines[node.lineno - 1], lines[: node.lineno - 1])
                found.append((str(path.relative_to(PACKAGE.parent)), node.lineno, why))
    return found


def test_a_reason_is_words_not_a_bare_hash_or_a_pragma():
    assert reason("    from pipeline import app  # the run floor: not loaded for --help", [])
    assert not reason("    from pipeline import app  #", [])
    assert not reason("    from pipeline import app  # noqa: F401", [])
    assert not reason("    from pipeline import app  # fmt: skip", [])
    above = ["def launch(self):", "    # Hydra imports every plugin at start-up: the sweep floor loads here"]
    assert reason("    from pipeline.tracking import contract", [*above, "    from pipeline.sweep import x"])
    assert not reason("    from pipeline.tracking import contract", ["def launch(self):"])


def test_convlab_imports_in_function_bodies_say_why():
    hidden = _hidden_imports()
    unexplained = [(path, line) for path, line, why in hidden if not why]
    assert unexplained == [], "import convlab modules at the top, or say why on the line (or just above)"
    in_pipeline = [path for path, _, _ in hidden if path.startswith("pipeline/")]
    assert len(in_pipeline) <= 7  # pipeline.run, the CLI's app, the sweep's comparison and callback: no creep
    assert any(path.startswith("hydra_plugins/") for path, _, _ in hidden)  # the plugins are read too


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


def test_every_code_fence_of_the_readme_is_closed():
    """An unclosed fence renders the rest of the README as code (it once swallowed a section)."""
    lines = (PACKAGE.parent / "README.md").read_text().splitlines()
    fences = [number for number, line in enumerate(lines, start=1) if line.startswith("```")]
    assert len(fences) % 2 == 0, f"the fence opened at README.md line {fences[-1]} is never closed"
    blocks = zip(fences[::2], fences[1::2])
    inside = [lines[number] for opened, closed in blocks for number in range(opened, closed - 1)]
    assert [line for line in inside if line.startswith("## ")] == []  # no section is swallowed
