"""Pretrained backbones: shapes, preprocessing inside the model, weights files, freezing, config checks.

Every model here has random weights (``weights=None``) or weights a test saved: nothing is
downloaded. Inputs are 32x32, the smallest size ``keras.applications`` accepts.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, compose

from pipeline.config import composition
from pipeline.config.errors import ConfigError, ConvlabError
from pipeline.model import backbones, scratch

SIZE = 32
# (backbone, alpha, pooled feature width): the table the shape test runs over.
MODEL_LIST = [
    ("resnet50", None, 2048),
    ("vgg16", None, 512),
    ("mobilenet", 0.25, 256),  # 1024 x alpha
    ("mobilenet_v2", 0.35, 1280),  # 1280 whatever alpha below 1
    ("efficientnet_b0", None, 1280),
]


def features_model(name, channels=3, weights=None, alpha=None, trainable=0):
    import keras

    inputs = keras.Input((SIZE, SIZE, channels), name="image")
    return keras.Model(
        inputs, backbones.pretrained(inputs, name, weights, trainable, alpha, dropout_rate=0.0)
    )


def raw_images(count=2, channels=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (count, SIZE, SIZE, channels)).astype("float32")


@pytest.mark.slow
@pytest.mark.parametrize(("name", "alpha", "width"), MODEL_LIST, ids=[m[0] for m in MODEL_LIST])
def test_every_backbone_builds_and_gives_pooled_features(name, alpha, width):

    def backbone(inputs):
        return backbones.pretrained(inputs, name, weights=None, trainable=0, alpha=alpha, dropout_rate=0.0)

    model = scratch.build_model((SIZE, SIZE, 3), 5, backbone, head_units=None, head_activation=None)
    assert model.get_layer("features").output.shape == (None, width)
    probabilities = model.predict(raw_images(), verbose=0)
    assert probabilities.shape == (2, 5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert not model.get_layer(model.layers[-3].name).trainable_weights  # the backbone: frozen
    assert model.trainable_weights  # the head: trainable


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2", "efficientnet_b0"])
def test_preprocessing_inside_the_model_is_the_backbones_own(name):
    """Raw pixels go in; what reaches the network is exactly keras.applications' preprocess_input."""
    import importlib

    import keras

    inputs = keras.Input((SIZE, SIZE, 1))
    model = keras.Model(inputs, backbones.preprocessing(inputs, name))
    gray = raw_images(channels=1)
    module = importlib.import_module(f"keras.applications.{backbones.SPECS[name].module}")
    expected = module.preprocess_input(np.repeat(gray, 3, axis=-1).copy())
    np.testing.assert_allclose(model.predict(gray, verbose=0), expected, rtol=1e-6, atol=1e-4)


@pytest.mark.slow
def test_grayscale_images_feed_an_rgb_backbone_as_three_equal_channels():
    model = features_model("vgg16", channels=1)
    rgb = features_model("vgg16", channels=3)
    rgb.set_weights(model.get_weights())
    gray = raw_images(channels=1)
    np.testing.assert_allclose(
        model.predict(gray, verbose=0),
        rgb.predict(np.repeat(gray, 3, axis=-1), verbose=0),
        rtol=1e-5,
        atol=1e-5,
    )


def save_keras2_h5(model, path):
    """Keras 2's weights layout: what the course's resnet50_..._notop.h5 holds."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)


@pytest.mark.slow
@pytest.mark.parametrize("file_name", ["resnet50.weights.h5", "resnet50_notop.h5"])
def test_a_weights_file_loads_through_weights_path(tmp_path, file_name):
    reference = features_model("resnet50", weights=None)
    network = reference.get_layer("resnet50")
    path = tmp_path / file_name
    if file_name.endswith(".weights.h5"):
        network.save_weights(path)  # Keras 3
    else:
        save_keras2_h5(network, path)
    loaded = features_model("resnet50", weights=str(path))
    images = raw_images()
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), reference.predict(images, verbose=0))


@pytest.mark.filterwarnings("ignore:Skipping nested container:UserWarning")  # Keras, on the wrong file
def test_a_weights_file_of_another_network_is_named_in_one_line(tmp_path):
    path = tmp_path / "vgg16.weights.h5"
    features_model("vgg16").get_layer("vgg16").save_weights(path)
    with pytest.raises(
        ConvlabError, match=r"backbone.weights=.*vgg16.weights.h5: does not fit backbone=mobilenet"
    ):
        features_model("mobilenet", weights=str(path), alpha=0.25)


def test_fine_tuning_unfreezes_the_last_layers_but_not_batchnorm():
    import keras

    model = features_model("mobilenet_v2", alpha=0.35, trainable=10)
    network = model.get_layer("mobilenetv2_0.35_32")
    unfrozen = [layer for layer in network.layers if layer.trainable and layer.weights]
    assert unfrozen and all(layer in network.layers[-10:] for layer in unfrozen)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in unfrozen)
    assert not features_model("mobilenet_v2", alpha=0.35, trainable=0).trainable_weights


def test_the_head_split_from_the_model_shares_its_layers():

    def vgg16(inputs):
        return backbones.pretrained(inputs, "vgg16", weights=None, trainable=0, alpha=None, dropout_rate=0.0)

    model = scratch.build_model((SIZE, SIZE, 3), 3, vgg16, head_units=8, head_activation="relu")
    extractor, head = backbones.split_at_features(model)
    images = raw_images()
    np.testing.assert_allclose(
        head.predict(extractor.predict(images, verbose=0), verbose=0),
        model.predict(images, verbose=0),
        rtol=1e-6,
    )
    assert {w.path for w in head.trainable_weights} == {w.path for w in model.trainable_weights}


def test_imagenet_class_names_come_from_keras_home(tmp_path, monkeypatch):
    import json

    (tmp_path / "models").mkdir()
    index = {str(i): [f"n{i:08d}", f"thing_{i}"] for i in range(1000)}
    (tmp_path / "models" / "imagenet_class_index.json").write_text(json.dumps(index))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    classes = backbones.imagenet_classes()
    assert len(classes) == 1000 and classes[7] == ("n00000007", "thing_7")


# --- config: checked before TensorFlow loads ------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["backbone=resnet50", "backbone.input_size=null"],
            r"dataset.image_size=\[28, 28\]: .*at least 32x32",
        ),
        (
            ["backbone=vgg16", "backbone.input_size=[16,16]"],
            r"backbone.input_size=\[16, 16\]: .*at least 32x32",
        ),
        (["backbone=mobilenet", "backbone.alpha=0.3"], r"backbone.alpha=0.3: .*0.25, 0.5, 0.75, 1.0"),
        (["backbone=mobilenet_v2", "backbone.alpha=0"], r"backbone.alpha=0"),
        (
            ["backbone=resnet50", "backbone.weights=missing.h5"],
            r"backbone.weights='missing.h5': no such file",
        ),
        (["backbone=resnet50", "backbone.trainable=-1"], r"backbone.trainable=-1"),
        (
            ["backbone=resnet50", "+backbone.alpha=0.5"],
            r"backbone.alpha=0.5: Extra inputs",
        ),  # MobileNets only
        (["backbone=efficientnet_b0", "downsample=stride"], r"downsample=stride shapes the scratch CNN only"),
        (["task=predict"], r"task=predict needs an ImageNet classifier"),
        (["task=predict", "backbone=resnet50"], r"task=predict reads image files: use dataset=image_folder"),
        (
            [
                "task=predict",
                "backbone=resnet50",
                "dataset=image_folder",
                "dataset.path=x",
                "backbone.input_size=[96,96]",
            ],
            r"backbone.input_size=\[96, 96\]: .*takes \[224, 224\]",
        ),
        (["task=evaluate"], r"task='evaluate'"),
    ],
)
def test_pretrained_config_mistakes_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        composition.validate(compose(overrides))


def test_weights_file_and_model_input_size_in_the_config(tmp_path, monkeypatch):
    weights = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    weights.write_bytes(b"")
    run = composition.validate(
        compose(["backbone=resnet50", f"backbone.weights={weights}", "backbone.input_size=[64,48]"])
    )
    assert run.backbone.weights == weights.resolve() and run.model_input_size == (64, 48)
    # normalised once, in the schema: relative to the working directory, or under ~
    monkeypatch.chdir(tmp_path)
    relative = composition.validate(compose(["backbone=resnet50", f"backbone.weights={weights.name}"]))
    monkeypatch.setenv("HOME", str(tmp_path))
    home = composition.validate(compose(["backbone=resnet50", f"backbone.weights='~/{weights.name}'"]))
    assert relative.backbone.weights == home.backbone.weights == weights.resolve()
    assert composition.validate(compose(["backbone=resnet50"])).backbone.weights == "imagenet"
    run = composition.validate(
        compose(["backbone=mobilenet_v2", "backbone.input_size=null", "dataset.image_size=[40,40]"])
    )
    assert run.model_input_size == (40, 40)
    run = composition.validate(
        compose(["backbone=mobilenet_v2", "backbone.weights=null", "backbone.alpha=0.2"])
    )
    assert run.backbone.alpha == 0.2  # any width without ImageNet weights


def test_validating_a_pretrained_config_never_imports_tensorflow():
    code = (
        "import sys; from pipeline.config import composition; from conftest import compose; "
        "composition.validate(compose(['backbone=efficientnet_b0', 'task=predict', 'dataset=image_folder', "
        "'dataset.path=x'])); "
        "print(sorted(m for m in ('tensorflow', 'keras', 'mlflow') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT / "tests",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "[]"
