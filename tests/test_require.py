"""conftest's ``require``: a missing capability skips a test here, and fails it in CI, by name."""

from __future__ import annotations

import pytest
from conftest import POSTGRESQL, SLURM, require


def test_a_present_capability_neither_skips_nor_fails(monkeypatch):
    monkeypatch.setenv("CI", "true")
    require(POSTGRESQL, None)


def test_a_missing_capability_skips_with_its_reason_outside_ci(monkeypatch):
    for variable in ("CI", "CONVLAB_REQUIRE_SERVER", "CONVLAB_REQUIRE_CLUSTER"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(pytest.skip.Exception, match="sinfo not found"):
        require(SLURM, "sinfo not found")


@pytest.mark.parametrize(
    ("variable", "capability", "said"),
    [
        ("CI", "Chromium", "CI=true needs Chromium here, but it is missing"),
        (
            "CONVLAB_REQUIRE_SERVER",
            POSTGRESQL,
            "CONVLAB_REQUIRE_SERVER=1 needs PostgreSQL here, but it is missing",
        ),
        ("CONVLAB_REQUIRE_CLUSTER", SLURM, "CONVLAB_REQUIRE_CLUSTER=1 needs SLURM here, but it is missing"),
    ],
)
def test_a_missing_capability_fails_in_ci_naming_it(monkeypatch, variable, capability, said):
    for name in ("CI", "CONVLAB_REQUIRE_SERVER", "CONVLAB_REQUIRE_CLUSTER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, "true" if variable == "CI" else "1")
    with pytest.raises(pytest.fail.Exception) as failed:
        require(capability, "it is missing")
    assert str(failed.value) == said


def test_the_cluster_variable_does_not_require_postgresql(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("CONVLAB_REQUIRE_CLUSTER", "1")
    monkeypatch.delenv("CONVLAB_REQUIRE_SERVER", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require(POSTGRESQL, "no PostgreSQL")
