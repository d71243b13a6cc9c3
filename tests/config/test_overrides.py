"""The one override parser: sweep plans as Hydra runs them, variants, one-line key checks."""

from __future__ import annotations

import pytest

from pipeline.config import composition, overrides
from pipeline.config.errors import ConfigError


@pytest.mark.parametrize(
    "lines",
    [
        ["downsample=stride,maxpool", "regularization=none,dropout", "seed=0,1,2"],
        ["seed=0,1", "optimizer=adam", "seed=3,4"],  # a command line overriding a preset's key
        ["+trainer.x=1", "optimizer.learning_rate=range(1,3)", "seed=0"],
        ["backbone.kernel_size=[3,3]", "optimizer=adam,sgd"],
    ],
)
def test_expand_matches_hydras_basic_sweeper(lines):
    # Hydra's own sweeper is the reference (tests may read its internals; the package does not).
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    reference = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(lines), None)[0]
    jobs = overrides.expand(lines)
    as_lines = [[f"{k}={v}" for k, v in job.items()] for job in jobs]
    assert [[line.lstrip("+") for line in job] for job in reference] == as_lines


def test_factors_and_variants_leave_the_seed_out():
    jobs = overrides.expand(["downsample=stride,maxpool", "trainer.epochs=1", "seed=0,1"])
    assert overrides.factors(jobs) == ["downsample"]
    assert overrides.variant(jobs[0], ["downsample"]) == "downsample=stride"
    pairs = overrides.values(["seed=1", "optimizer=sgd", "trainer.epochs=1", "tracking.uri=sqlite:///x.db"])
    assert overrides.variant(pairs) == "optimizer=sgd,trainer.epochs=1"
    assert overrides.variant({"seed": "3"}) == "default"


def test_interval_sweeps_cannot_be_listed_up_front():
    assert overrides.expand(["optimizer.learning_rate=interval(0.001,0.1)", "seed=0"]) is None


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["optimizer=rmsprop"], "optimizer='rmsprop' is not an option; choose one of: adam, sgd"),
        (["optimizer=adam,rmsprop"], "optimizer='rmsprop' is not an option"),
        (["trainer.foo=1"], "trainer.foo: no such config key; did you mean"),
        (["trainer.epoch=1"], "did you mean trainer.epochs"),
        (["optimzer.learning_rate=0.1"], "did you mean optimizer.learning_rate"),
        (["seed=[1"], "seed=[1"),
        (["+trainer.extra=1"], "trainer.extra: no such config key"),  # the schema allows no new keys
    ],
)
def test_unknown_options_and_keys_get_one_line(lines, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as err:
        composition.check_overrides(lines)
    assert "\n" not in str(err.value)


def test_valid_overrides_pass_the_check():
    composition.check_overrides(
        ["optimizer=adam,sgd", "seed=0,1", "trainer.epochs=1", "hydra/launcher=joblib"]
    )
    composition.check_overrides(["dataset=image_folder", "dataset.color_mode=grayscale", "sweep.resume=last"])
