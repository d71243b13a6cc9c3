"""The docs site as a reader gets it: it builds with ``mkdocs build --strict`` (no broken link or
reference) and offline, its generated reference names every config key, every section of the old
README has a home in it, and the commands it shows print what it says they print.

Runnable blocks: a ```` ```console ```` block is a transcript (``$ command`` lines, each followed by
what it prints) that ``test_console_blocks`` runs in a temporary folder and compares; a
```` ```python ```` block in ``reference/api.md`` is run by mktestdocs with a temporary MLflow store.
Blocks that need a server, a GPU or a long run are ```` ```bash ```` or ```` ```text ````: shown, not run.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
# Every heading of the README as it stood before the docs site (1,334 lines): each must be a
# heading somewhere in docs/ ("every section has a home").
OLD_README_HEADINGS = [
    "convlab",
    "Just train",
    "One run",
    "Long runs: checkpoints, resume, early stopping",
    "Config groups",
    "What a run logs to MLflow",
    "Experiments: presets, sweeps and the comparison",
    "Reliability: faults in the middle of a sweep",
    "From a laptop to a cluster",
    "The comparison",
    "`from_scratch`: the course's digit CNN over 3 seeds",
    "`stride_vs_pool`: strides or max-pooling, with and without dropout",
    "`augmentation`: does augmenting the training images help?",
    "Search, then confirm: `hydra/sweeper=optuna`",
    "Hand the winner on: registry, serving, batch scoring",
    "Transfer learning",
    "What's in this photo? (`task=predict`)",
    "Speed and memory",
    "Benchmarks",
    "Tests",
    "Layout",
]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built once, strict, into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    return out


def test_the_site_builds_strict_and_offline(site):
    pages = list(site.rglob("*.html"))
    assert (site / "reference" / "config-keys" / "index.html").is_file()
    assert (site / "figures" / "mlflow_sweep.png").is_file()
    for page in pages:
        html = page.read_text()
        for remote in ("fonts.googleapis.com", "fonts.gstatic.com", "googletagmanager", "google-analytics"):
            assert remote not in html, f"{page.relative_to(site)} loads {remote}"
    api = (site / "reference" / "api" / "index.html").read_text()
    assert "Composes the config like the CLI" in api  # mkdocstrings rendered run()'s docstring


def _schema_keys() -> set[str]:
    """Every dotted key the schemas accept: run settings, and each group's options' keys."""
    from pipeline.config import schemas
    from pipeline.config.groups import GROUPS

    gen = _generator()
    keys = set()
    for name, field in schemas.RunConfig.model_fields.items():
        if name in GROUPS:
            for schema in GROUPS[name]:
                keys |= set(gen.schema_types(schema, name))
        elif hasattr(field.annotation, "model_json_schema"):
            keys |= {name, *gen.schema_types(field.annotation, name)}
        else:
            keys.add(name)
    return keys


def test_every_config_key_is_in_the_reference():
    from pipeline.config import catalog

    page = _generator().config_reference()
    documented = set(re.findall(r"^\| `([\w.]+)` \|", page, flags=re.M))
    missing = _schema_keys() - documented
    assert not missing, f"in the schemas but not in reference/config-keys.md: {sorted(missing)}"
    in_conf = set().union(*catalog.known_keys().values()) - {"tracking", "sweep"}
    assert not in_conf - documented, "in conf/ but not in the reference"
    for group, options in catalog.option_keys().items():
        for option in options:
            assert f"### `{group}={option}`" in page


def _undescribed_help_keys() -> list[str]:
    """Key lines of ``--help``'s groups and run settings that carry no ``# description``."""
    from pipeline.config import help

    body = help.render({})
    shown = body.split("\nexperiment:")[0] + body.split("== Run settings")[1]
    keys = [line for line in shown.splitlines() if line[:2] == "  " and help.KEY_LINE.match(line.strip())]
    return [line for line in keys if "#" not in line]


def test_every_config_key_has_a_description():
    """A key lands described (a comment beside it in conf/, or beside its field in the schema),
    in the reference and in ``--help`` alike."""
    page = _generator().config_reference()
    rows = [re.split(r"(?<!\\)\|", line)[1:-1] for line in page.splitlines() if line.startswith("| `")]
    undescribed = sorted({row[0].strip(" `") for row in rows if not row[3].strip()})
    assert len(rows) > 150 and not undescribed, f"keys with no description in the reference: {undescribed}"
    undescribed = _undescribed_help_keys()
    assert not undescribed, "keys with no description in --help:\n" + "\n".join(undescribed)


def test_every_old_readme_section_has_a_home_in_the_docs():
    headings = set()
    for page in PAGES:
        fence = False
        for line in page.read_text().splitlines():
            fence ^= line.lstrip().startswith("```")
            if not fence and line.startswith("#"):
                headings.add(line.lstrip("#").strip())
    assert not [h for h in OLD_README_HEADINGS if h not in headings]


def test_no_code_fence_is_left_open():
    for page in [ROOT / "README.md", *PAGES]:
        fences = [line for line in page.read_text().splitlines() if line.lstrip().startswith("```")]
        assert len(fences) % 2 == 0, f"{page.relative_to(ROOT)}: a code fence is left open"


def test_the_readme_fits_on_a_screen():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).is_file(), link


def _transcripts() -> list[tuple[str, str, str]]:
    """(page, command, what it prints) for every ``$ command`` line of a console block."""
    from mktestdocs import grab_code_blocks

    found = []
    for page in [ROOT / "README.md", *PAGES]:
        for block in grab_code_blocks(page.read_text(), lang="console"):
            for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
                command, _, printed = chunk.partition("\n")
                found.append((str(page.relative_to(ROOT)), command, printed.strip()))
    return found


def test_console_blocks_print_what_the_docs_show(tmp_path):
    transcripts = _transcripts()
    assert len(transcripts) >= 10
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}

    def run(transcript):
        page, command, printed = transcript
        done = subprocess.run(
            command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        return page, command, printed, (done.stdout + done.stderr).strip()

    with ThreadPoolExecutor(max_workers=4) as pool:
        for page, command, printed, got in pool.map(run, transcripts):
            assert got == printed, f"{page}: $ {command}"


@pytest.mark.slow
def test_python_blocks_run(tmp_path, monkeypatch):
    from mktestdocs import check_md_file

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    check_md_file(DOCS / "reference" / "api.md", lang="python")


def test_every_dependency_says_why_on_the_design_page():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    design = (DOCS / "design.md").read_text()
    table = design[design.index("## Why each dependency") :]
    for requirement in [
        *project["dependencies"],
        *(f"extra `{name}`" for name in project["optional-dependencies"]),
    ]:
        name = re.split(r"[<>=\[ ]", requirement)[0] if not requirement.startswith("extra") else requirement
        assert f"`{name}`" in table or name in table, f"{name}: no line in design.md's 'Why each dependency'"
