"""Cost guards: a model too big to be worth training is refused before anything starts."""

from __future__ import annotations

import pytest
from conftest import cli, write_image_folder

import pipeline
from pipeline import config, contract

SCRATCH_VARIANTS = [
    [],
    ["downsample=stride"],
    ["downsample=maxpool", "head=softmax"],
    ["backbone.conv_layers=3", "backbone.filters=[4,8,16]", "backbone.kernel_size=[4,7]"],
    ["dataset=image_folder", "dataset.image_size=[40,32]", "downsample=stride"],
]


@pytest.mark.parametrize("overrides", SCRATCH_VARIANTS, ids=lambda o: " ".join(o) or "default")
def test_the_estimate_from_the_config_is_the_keras_models_count(overrides, run_config, tmp_path_factory):
    from pipeline import wiring

    if "dataset=image_folder" in overrides:
        root = tmp_path_factory.mktemp("images")
        write_image_folder(root, classes=("cat", "dog", "owl"), per_class=2)
        overrides = [*overrides, f"dataset.path={root}"]
    run = run_config(*overrides)
    classes = 3 if "dataset=image_folder" in overrides else 10
    channels = 3 if "dataset=image_folder" in overrides else 1
    model = wiring.build_model(run, (*run.dataset.image_size, channels), classes)
    assert config.scratch_parameter_count(run, classes) == model.count_params()


def test_the_course_cnn_on_224_pixel_photos_is_refused_in_one_line_naming_the_fixes(tmp_path):
    root = write_image_folder(tmp_path / "images", per_class=4)
    result = cli("dataset=image_folder", f"dataset.path={root}", cwd=tmp_path, timeout=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert lines[0].startswith("convlab: the model would have 123,908,566 parameters")
    for fix in ("trainer.max_parameters=25,000,000", "dataset.image_size", "downsample=stride", "backbone="):
        assert fix in lines[0]
    assert not (tmp_path / "mlflow.db").exists()  # refused before a run opened


def test_a_lower_limit_refuses_the_digit_cnn_and_a_strided_one_still_trains(store):
    limit = "trainer.max_parameters=1000000"  # the course's digit CNN has 1,479,798
    with pytest.raises(pipeline.ConfigError, match="1,479,798 parameters"):
        pipeline.run([limit, *store.overrides])
    assert store.runs() == []
    result = pipeline.run([limit, "downsample=stride", "dataset.max_samples=100", "trainer.epochs=1",
                           "tracking.log_model=false", *store.overrides])  # fmt: skip
    assert result.status == contract.FINISHED
