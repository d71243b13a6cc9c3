"""Key and store errors through the real command line: one line, and the line leads somewhere."""

from __future__ import annotations

import socket
import time

import pytest
from conftest import POSTGRESQL, cli, require

from pipeline.config import composition
from pipeline.config.errors import ConfigError


def _one_line(result) -> str:
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("lines", "message", "fix"),
    [
        (
            ["downsample.strides=3"],
            "downsample.strides belongs to downsample=stride, not downsample=none; add downsample=stride",
            ["downsample=stride", "downsample.strides=3"],
        ),
        (
            ["regularization.rate=0.3"],
            "regularization.rate belongs to regularization=dropout, not regularization=none; "
            "add regularization=dropout",
            ["regularization=dropout", "regularization.rate=0.3"],
        ),
        (
            ["backbone.weights=imagenet"],
            "backbone.weights belongs to backbone=efficientnet_b0, mobilenet, mobilenet_v2, resnet50 "
            "or vgg16, not backbone=scratch_cnn; add one of them, e.g. backbone=efficientnet_b0",
            ["backbone=efficientnet_b0", "backbone.weights=imagenet"],
        ),
        (
            ["dataset.path=x"],
            "dataset.path belongs to dataset=digit_recognizer or image_folder, not dataset=digits; "
            "add one of them, e.g. dataset=digit_recognizer",
            ["dataset=digit_recognizer", "dataset.path=x"],
        ),
        (  # + cannot add it either: the schema has no such key for downsample=none
            ["+downsample.strides=3"],
            "downsample.strides belongs to downsample=stride",
            ["downsample=stride", "downsample.strides=3"],
        ),
    ],
)
def test_a_key_of_another_option_names_that_option(tmp_path, lines, message, fix):
    assert _one_line(cli(*lines, cwd=tmp_path)).startswith(f"convlab: {message}")
    assert "+" not in message
    composition.check_overrides(fix)  # the advice, followed, passes


def test_did_you_mean_looks_only_within_the_chosen_option(tmp_path):
    line = _one_line(cli("backbone.foo=1", cwd=tmp_path))
    assert line.startswith("convlab: backbone.foo: no such config key; did you mean")
    assert "backbone.alpha" not in line and "backbone.weights" not in line  # scratch_cnn has neither
    assert "+" not in line  # no advice the schema would refuse
    line = _one_line(cli("backbone=mobilenet", "backbone.alph=1", cwd=tmp_path))
    assert "did you mean backbone.alpha" in line


def test_an_experiments_options_count_as_chosen():
    composition.check_overrides(["experiment=transfer_learning", "backbone.weights=null"])
    composition.check_overrides(["experiment=stride_vs_pool", "regularization.rate=0.3"])
    with pytest.raises(ConfigError, match="belongs to backbone="):
        composition.check_overrides(
            ["experiment=transfer_learning", "backbone=scratch_cnn", "backbone.weights=x"]
        )


def _postgres_listening() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        # the URL as MLflow's docs write it: psycopg 3 ([server], [dev]) drives it
        (
            "postgresql://nobody:wrong@127.0.0.1:5432/nosuch",
            'password authentication failed for user "nobody"',
        ),
        (
            "postgresql+psycopg://nobody:wrong@127.0.0.1:5432/nosuch",
            "password authentication failed for user",
        ),
        (
            "postgresql+pg8000://nobody:wrong@127.0.0.1:5432/nosuch",
            "its database driver pg8000 is not installed",
        ),
    ],
)
def test_wrong_database_credentials_are_one_line_before_training(tmp_path, uri, reason):
    if not _postgres_listening():
        require(POSTGRESQL, "no PostgreSQL on 127.0.0.1:5432")
    started = time.monotonic()
    result = cli(f"tracking.uri={uri}", "trainer.epochs=1", cwd=tmp_path, timeout=60)
    assert time.monotonic() - started < 30
    line = _one_line(result)
    assert reason in line and "wrong" not in line  # the password is not shown
    assert "Epoch" not in result.stdout  # nothing trained
