"""Where convlab reaches into a library's private parts (no public way does the job), each is
named here with the versions it was checked on: an upgrade past them, or a private name gone,
fails here, saying what to check again, rather than somewhere deep in a sweep."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys

import pytest
from packaging.version import Version

# (distribution, checked from, up to (excluded), module, private name, where convlab uses it)
COUPLINGS = [
    ("hydra-joblib-launcher", "1.2.0", "1.3", "hydra_plugins.hydra_joblib_launcher._core", "Parallel",
     "pipeline/sweep/launch/workers.py install: ResilientParallel in place of joblib's Parallel"),
    ("optuna", "4.0", "5.2", "optuna.study", "Study._storage",
     "pipeline/sweep/search/study.py recover: a lost trial's attribute"),
    ("optuna", "4.0", "5.2", "optuna.trial", "FrozenTrial._trial_id",
     "pipeline/sweep/search/study.py recover: a lost trial's attribute"),
    ("mlflow", "3.0", "3.19", "mlflow.tracking.fluent", "_active_run_stack",
     "pipeline/tracking/lifecycle.py _forget_active_run: the run of a store that cannot be reached"),
    ("mlflow", "3.0", "3.19", "mlflow.tracking._tracking_service.utils", "_tracking_uri",
     "pipeline/tracking/registry.py kept_uris: the tracking URI set in the process, put back"),
    ("mlflow", "3.0", "3.19", "mlflow.tracking._model_registry.utils", "_registry_uri",
     "pipeline/tracking/registry.py kept_uris: the registry URI set in the process, put back"),
    ("mlflow", "3.18", "3.19", "mlflow.environment_variables", "_MLFLOW_SGI_NAME",
     "pipeline/ui.py create_app: how mlflow server tells its app it runs under uvicorn"),
    ("hydra-submitit-launcher", "1.2.0", "1.3", "hydra_plugins.hydra_submitit_launcher.submitit_launcher",
     "SlurmLauncher._EXECUTOR", "hydra_plugins/convlab_launchers/slurm_launcher.py submit: launch, copied"),
    ("hydra-ray-launcher", "1.2.2", "1.3", "hydra_plugins.hydra_ray_launcher._launcher_util",
     "launch_job_on_ray", "pipeline/sweep/launch/ray_cluster.py launch: the launch, copied"),
]  # fmt: skip


@pytest.mark.parametrize(("package", "low", "high", "module", "name", "where"), COUPLINGS)
def test_each_private_api_convlab_uses_is_there_in_a_version_it_was_checked_on(
    package, low, high, module, name, where
):
    try:
        installed = Version(importlib.metadata.version(package))
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{package} is not installed")  # an optional extra ([ray]): nothing uses it then
    assert Version(low) <= installed < Version(high), (
        f"{package} {installed}: {where} was checked on {low} up to {high}; check it again, then widen"
    )
    found = importlib.import_module(module)
    owner, _, attribute = name.rpartition(".")
    if owner:
        found = getattr(found, owner)
    # a slot of an instance (Study._storage) is set in __init__: look in the source
    assert hasattr(found, attribute) or f"self.{attribute} =" in _source(found), f"{module}.{name} is gone"


def _source(obj) -> str:
    import inspect

    return inspect.getsource(obj)


def test_the_python_whose_atexit_convlab_runs_by_hand_was_checked():
    """``pipeline.__main__._leave`` runs ``atexit._run_exitfuncs`` and skips the teardown."""
    import atexit

    assert (3, 10) <= sys.version_info[:2] <= (3, 13), "check pipeline/__main__.py _leave on this Python"
    assert callable(atexit._run_exitfuncs)
