"""Pretrained backbones from ``keras.applications``, fed raw 0-255 pixels like the scratch CNN.

Each backbone's own ``preprocess_input`` runs inside the model ('caffe' for ResNet50 and VGG16:
RGB->BGR minus the ImageNet mean; 'tf' for the MobileNets: x / 127.5 - 1; nothing for
EfficientNetB0, which rescales itself), after a grayscale image is repeated into RGB. So a
model built here, and the model logged to MLflow, takes the pixels a data source holds and
needs no preprocessing code beside it.

This module imports Keras lazily. The families it builds, ``SPECS``, live in ``pipeline.config.sizes``:
the config checks them before TensorFlow loads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pipeline.config.errors import ConvlabError
from pipeline.config.sizes import SPECS

CLASS_INDEX_URL = "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json"


def pretrained(
    inputs,
    name: str,
    weights: str | Path | None,
    trainable: int,
    alpha: float | None,
    dropout_rate: float,
):
    """A ``keras.applications`` backbone without its top, global-average pooled, on raw pixels.

    Args:
        inputs: the image tensor, 0-255 pixel values, 1 or 3 channels.
        name: a key of ``SPECS``, e.g. ``"resnet50"``.
        weights: ``"imagenet"``, None (random) or a weights file (Keras 3 ``.weights.h5`` or a
            Keras 2 ``.h5`` such as ``resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5``).
        trainable: 0 freezes the backbone (the course's way); N fine-tunes its last N layers.
        alpha: the MobileNets' width multiplier; None for the other families.
        dropout_rate: Dropout on the pooled features, before the head, when above 0.

    Returns:
        The features. The layer named ``features`` marks where the head starts: the feature
        cache cuts the model there.
    """
    import keras

    x = preprocessing(inputs, name)
    base = application(name, tuple(x.shape[1:]), weights, include_top=False, alpha=alpha)
    set_trainable(base, trainable)
    # training=False keeps BatchNorm statistics and the backbone's own dropout in inference
    # mode, frozen or fine-tuned, as Keras recommends for transfer learning.
    x = base(x, training=False)
    x = keras.layers.Identity(name="features")(x)
    if dropout_rate:
        x = keras.layers.Dropout(dropout_rate, name="features_dropout")(x)
    return x


def imagenet_classifier(input_shape, name: str, weights: str | Path | None, alpha: float | None):
    """The whole ImageNet network, top included: raw pixels in, 1000 class probabilities out."""
    import keras

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = preprocessing(inputs, name)
    base = application(name, tuple(x.shape[1:]), weights, include_top=True, alpha=alpha)
    return keras.Model(inputs, base(x, training=False), name=f"{name}_imagenet")


def preprocessing(inputs, name: str):
    """Grayscale to RGB, then the backbone's own ``preprocess_input``, as one named sub-model.

    Built from Keras layers and ops only, so the model saves and loads without convlab.
    """
    import importlib

    import keras

    image = keras.Input(shape=tuple(inputs.shape[1:]), name="raw_pixels")
    x = image
    if image.shape[-1] == 1:
        x = keras.layers.Concatenate(name="grayscale_to_rgb")([x, x, x])
    x = importlib.import_module(f"keras.applications.{SPECS[name].module}").preprocess_input(x)
    if x is image:  # EfficientNet: rescaling is part of the network itself
        return inputs
    return keras.Model(image, x, name=f"{name}_preprocessing")(inputs)


def application(name: str, input_shape, weights: str | Path | None, include_top: bool, alpha: float | None):
    """Calls the ``keras.applications`` constructor, turning download and file errors into one line.

    ``weights`` is used as the config normalised it: ``imagenet``, None, or an absolute path.
    """
    import keras

    kwargs = {"alpha": alpha} if alpha is not None else {}
    if not include_top:
        kwargs["pooling"] = "avg"
    from_file = weights not in ("imagenet", None)
    try:
        return getattr(keras.applications, SPECS[name].application)(
            include_top=include_top,
            weights=str(weights) if from_file else weights,
            input_shape=tuple(input_shape),
            **kwargs,
        )
    except ValueError as err:  # a weights file made for another network or another top
        if not from_file:
            raise
        top = "with" if include_top else "without"
        raise ConvlabError(
            f"backbone.weights={weights}: does not fit backbone={name} {top} its ImageNet top "
            f"({str(err).splitlines()[0]})"
        ) from None
    except Exception as err:  # keras.utils.get_file wraps network errors in a bare Exception
        if weights != "imagenet" or "fetch failure" not in str(err):
            raise
        raise ConvlabError(
            f"backbone={name} weights=imagenet: could not download the weights ({str(err).splitlines()[0]}); "
            "pass a local file with backbone.weights=PATH"
        ) from None


def set_trainable(model, last_layers: int) -> None:
    """Freezes ``model``, then unfreezes its last ``last_layers`` layers, BatchNorm layers excepted."""
    import keras

    model.trainable = last_layers > 0
    if not last_layers:
        return
    first = len(model.layers) - last_layers
    for index, layer in enumerate(model.layers):
        layer.trainable = index >= first and not isinstance(layer, keras.layers.BatchNormalization)


def unfreeze(model, last_layers: int) -> None:
    """Fine-tuning's second stage: the pretrained network inside ``model`` (built by ``pretrained``)
    gets its last ``last_layers`` layers trainable, BatchNorm excepted. The model calls that network
    with ``training=False``, so BatchNorm keeps its ImageNet statistics either way. Compile again
    after this: Keras reads ``trainable`` when it compiles."""
    import keras

    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    (base,) = [layer for layer in nested if not layer.name.endswith("_preprocessing")]
    set_trainable(base, last_layers)


def split_at_features(model):
    """``(image -> features, features -> probabilities)``: two models sharing ``model``'s layers.

    Training the second trains ``model``'s head in place.
    """
    import keras

    features = model.get_layer("features").output
    extractor = keras.Model(model.inputs, features, name="feature_extractor")
    return extractor, keras.Model(features, model.output, name="head")


def imagenet_classes() -> list[tuple[str, str]]:
    """ImageNet's 1000 ``(wordnet id, name)`` pairs, in the order of the classifier's outputs.

    Read from Keras's class index, downloaded once into ``$KERAS_HOME/models`` (default
    ``~/.keras/models``); a file already there is used as it is.
    """
    import keras

    keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    try:
        path = keras.utils.get_file(
            "imagenet_class_index.json", CLASS_INDEX_URL, cache_subdir="models", cache_dir=keras_home
        )
    except Exception as err:  # no network: say where the file goes
        raise ConvlabError(
            f"could not download ImageNet's class names ({str(err).splitlines()[0]}); "
            f"put imagenet_class_index.json into {keras_home}/models"
        ) from None
    index = json.loads(Path(path).read_text())
    return [tuple(index[str(i)]) for i in range(len(index))]
