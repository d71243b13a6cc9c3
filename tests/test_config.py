"""Config composition and validation: fast, and never loads TensorFlow."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from conftest import ROOT, cli

from pipeline import config
from pipeline.errors import ConfigError


def compose(overrides=()):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    config.register_experiments()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(config.CONF_DIR)):
        return hydra_compose("config", overrides=list(overrides))


ALL_OPTIONS = [(group, option) for group in config.GROUPS for option in config.group_options(group)]
PATH_NEEDED = {"digit_recognizer": "dataset.path=train.csv", "image_folder": "dataset.path=images"}


@pytest.mark.parametrize(("group", "option"), ALL_OPTIONS, ids=[f"{g}={o}" for g, o in ALL_OPTIONS])
def test_every_group_option_composes_and_validates(group, option):
    overrides = [f"{group}={option}"]
    if option in PATH_NEEDED and group == "dataset":
        overrides.append(PATH_NEEDED[option])
    run = config.validate(compose(overrides))
    assert getattr(run, group).name == option


def test_defaults_are_the_course_model():
    run = config.validate(compose())
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
    ],
)
def test_bad_values_name_the_key_and_value(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        config.validate(compose(overrides))
    assert "\n" not in str(err.value)


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


def test_help_lists_every_group_and_option(tmp_path):
    out = cli("--help", cwd=tmp_path, timeout=60).stdout
    for group in config.GROUPS:
        assert f"{group}: " in out
    assert "downsample: maxpool, none, stride" in out
    assert "experiment: " in out


def test_package_ships_its_configs():
    assert (config.CONF_DIR / "config.yaml").is_file()
    assert config.CONF_DIR == ROOT / "conf" or config.CONF_DIR.parent.name == "pipeline"
