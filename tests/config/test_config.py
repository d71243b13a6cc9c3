"""Config composition and validation: fast, and never loads TensorFlow."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT, cli, compose

from pipeline.config import composition
from pipeline.config.errors import ConfigError
from pipeline.config.schemas import GROUPS, RunConfig

ALL_OPTIONS = [(group, option) for group in composition.GROUPS for option in composition.group_options(group)]
PATH_NEEDED = {"digit_recognizer": "dataset.path=train.csv", "image_folder": "dataset.path=images"}


@pytest.mark.parametrize(("group", "option"), ALL_OPTIONS, ids=[f"{g}={o}" for g, o in ALL_OPTIONS])
def test_every_group_option_composes_and_validates(group, option):
    overrides = [f"{group}={option}"]
    if option in PATH_NEEDED and group == "dataset":
        overrides.append(PATH_NEEDED[option])
    run = composition.validate(compose(overrides))
    assert getattr(run, group).name == option


def test_defaults_are_the_course_model(run_config):
    run = run_config()
    assert (run.dataset.name, run.backbone.name, run.head.name) == ("digits", "scratch_cnn", "dense_softmax")
    assert (run.backbone.conv_layers, run.backbone.filters, tuple(run.backbone.kernel_size)) == (
        2,
        20,
        (3, 3),
    )
    assert (run.head.units, run.optimizer.name, run.downsample.name) == (128, "adam", "none")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optimizer.learning_rate=-0.1"], "optimizer.learning_rate=-0.1"),
        (["optimizer=sgd", "optimizer.momentum=1.5"], "optimizer.momentum=1.5"),
        (["regularization=dropout", "regularization.rate=1.0"], "regularization.rate=1.0"),
        (["regularization=dropout", "regularization.rate=-0.2"], "regularization.rate=-0.2"),
        (["trainer.epochs=0"], "trainer.epochs=0"),
        (["trainer.batch_size=abc"], "trainer.batch_size='abc'"),
        (["trainer.validation_split=1.5"], "trainer.validation_split=1.5"),
        (["+optimizer.betas=2"], "optimizer.betas=2"),
        (["dataset=digit_recognizer"], "dataset.path is required"),
        (["backbone.kernel_size=[3,3,3]"], "backbone.kernel_size"),
        (["backbone.conv_layers=6", "downsample=stride"], "too small"),
        (["backbone.kernel_size=[0,3]"], "backbone.kernel_size[0]=0: Input should be greater than 0"),
        (["augmentation.name=mirror"], "augmentation.name='mirror' is not one of: none, flip_shift"),
        (["augmentation.rotation=-5"], "augmentation.rotation=-5"),
        (["head=softmax", "+head.units=64"], "head.units=64: Extra inputs are not permitted"),
        (["sweep.register=cnn", "tracking.log_model=false"], "sweep.register=cnn needs the runs' models"),
        (["sweep.register=''"], "sweep.register='': String should have at least 1 character"),
        (["task=predict", "predict.model=models:/digits@champion"], "predict.model scores a CSV"),
        (["sweep.metric=val_f2"], "sweep.metric='val_f2': Input should be 'val_accuracy'"),
        (["trainer.class_weight=inverse"], "trainer.class_weight='inverse'"),
    ],
)
def test_bad_values_name_the_key_and_value(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        composition.validate(compose(overrides))
    assert "\n" not in str(err.value)


def test_each_group_is_typed_by_its_option(run_config):
    """``run.head.units`` exists exactly where it means something."""
    assert run_config("head=softmax").head.model_dump() == {"name": "softmax"}
    assert run_config("head=dense_softmax").head.units == 128
    assert run_config("downsample=stride").conv_strides == 2 and run_config().conv_strides == 1
    assert run_config("downsample=maxpool").pool_size == 2 and run_config().pool_size is None
    assert run_config("regularization=dropout").dropout_rate == 0.5 and run_config().dropout_rate == 0.0
    assert run_config("backbone.kernel_size=5").backbone.kernel_size == (5, 5)


def test_defaults_live_in_the_yaml_files_only():
    """The schemas declare types and constraints; every default value comes from conf/."""

    schemas = [schema for options in GROUPS.values() for schema in options]
    schemas += [RunConfig.model_fields[key].annotation for key in ("trainer", "tracking", "predict", "sweep")]
    for schema in schemas:
        defaulted = [name for name, field in schema.model_fields.items() if not field.is_required()]
        assert defaulted == [], f"{schema.__name__} repeats defaults: {defaulted}"


@pytest.mark.parametrize(
    ("overrides", "warns"),
    [
        (["augmentation=flip_shift"], True),  # digits: a mirrored 2 is not a 2
        (["augmentation=shift_rotate"], False),
        (["augmentation=flip_shift", "dataset=fashion_mnist"], False),  # a mirrored shirt is a shirt
    ],
)
def test_flips_on_labels_that_are_not_mirror_invariant_warn_at_validation(overrides, warns, caplog):
    run = composition.validate(compose(overrides))
    assert run.augmentation.enabled
    assert ("not mirror-invariant" in caplog.text) == warns


@pytest.mark.parametrize(
    "args",
    [
        ["optimizer.learning_rate=-1"],
        ["regularization=dropout", "regularization.rate=1.5"],
        ["trainer.epochs=0"],
        ["optimizer=rmsprop"],
        ["dataset=digit_recognizer"],
    ],
    ids=["negative-lr", "dropout-rate", "zero-epochs", "unknown-option", "missing-path"],
)
def test_cli_config_errors_are_one_line_and_start_nothing(args, tmp_path):
    result = cli(*args, cwd=tmp_path, timeout=60)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("convlab: ")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists()  # failed before any run was opened


PROBE = """
import json, runpy, sys
sys.argv = ["pipeline", *json.loads(sys.argv[1])]
try:
    runpy.run_module("pipeline", run_name="__main__")
except SystemExit:
    pass
heavy = sorted(m for m in ("tensorflow", "keras", "mlflow") if m in sys.modules)
print("HEAVY=" + json.dumps(heavy))
"""


@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job"], ["trainer.epochs=0"], ["optimizer=nope"]])
def test_help_cfg_and_config_errors_never_import_tensorflow_or_mlflow(args, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "HEAVY=[]" in result.stdout, result.stdout + result.stderr


def test_help_teaches_every_option_its_keys_and_the_launchers(tmp_path):
    out = cli("--help", cwd=tmp_path, timeout=60).stdout
    groups = out.split("== Launchers")[0]
    for group in composition.GROUPS:
        assert f"\n{group}:\n" in groups
        for option in composition.group_options(group):
            assert f"\n  {option}" in groups, option
    assert "\n  none *\n" in groups and "\n  scratch_cnn *\n" in groups and "\n  adam *\n" in groups
    for key in ("path: ???", "weights: imagenet", "strides: 2", "rate: 0.5", "alpha: 1.0"):
        assert f"\n    {key}" in groups, key  # keys of options that are not the default
    assert "# a mirrored 2 is not a 2" in groups  # the YAML comments
    assert "experiment: (none by default)" in groups and "\n  stride_vs_pool\n" in groups
    launchers = out.split("== Launchers")[1].split("==")[1]
    assert "basic *" in launchers and "joblib" in launchers and "slurm" in launchers
    assert "uri: sqlite:///mlflow.db   # or $MLFLOW_TRACKING_URI when set" in out and "${" not in out
    assert "backbone=resnet50 --help" in out
    chosen = cli("backbone=resnet50", "--help", cwd=tmp_path, timeout=60).stdout.split(
        "== The options chosen"
    )[1]
    assert "name: resnet50" in chosen and "weights: imagenet" in chosen and "conv_layers" not in chosen


@pytest.mark.slow
def test_the_wheel_ships_the_configs_and_presets(tmp_path):
    """A built wheel carries conf/ and experiments/ inside the package, where config looks for them."""
    import zipfile

    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = tmp_path.glob("convlab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        f"pipeline/conf/{p.relative_to(composition.CONF_DIR)}" for p in composition.CONF_DIR.rglob("*.yaml")
    }
    shipped |= {f"pipeline/experiments/{p.name}" for p in composition.EXPERIMENTS_DIR.glob("*.yaml")}
    assert shipped <= names and "pipeline/conf/config.yaml" in names
    # the Optuna sweeper, where Hydra discovers plugins: the namespace package has no __init__.py
    plugin = {
        f"hydra_plugins/convlab_optuna_sweeper/{n}.py" for n in ("__init__", "config", "optuna_sweeper")
    }
    assert plugin <= names and "hydra_plugins/__init__.py" not in names
    # installed (its dependencies are this environment's), it composes a preset from its own files
    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site)]
    subprocess.run([*install, str(wheel)], check=True, capture_output=True, timeout=120)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = "import pipeline, runpy; print('FROM=' + pipeline.__file__); "
    code += "runpy.run_module('pipeline', run_name='__main__')"
    args = ["experiment=stride_vs_pool", "--cfg", "job"]
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"FROM={site}" in done.stdout and "experiment_name: stride_vs_pool" in done.stdout
