"""Grad-CAM: where the network looked, on its last conv layer (Selvaraju et al., 2017).

The course's first lesson, "convolutions are filters", carried to the end of the network: the
last conv layer's feature maps, each weighted by the mean gradient of a class's probability
with respect to it, summed and rectified, give a coarse map of the pixels that pushed the
prediction towards that class. Works on the scratch CNN (its ``conv<i>`` layers are in the model
itself) and on the pretrained backbones (a ``keras.applications`` model nested in ours: the
layers around it are replayed in order). Takes a built ``keras.Model`` and arrays; nothing here
knows about MLflow.
"""

from __future__ import annotations

import numpy as np

CONV_TYPES = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D")


def last_conv_layer(model):
    """``(holder, layer)``: the last conv layer and the model that holds it (``model`` itself or a
    backbone nested in it); ``(None, None)`` when there is none."""
    for layer in reversed(model.layers):
        if type(layer).__name__ in CONV_TYPES:
            return model, layer
        if hasattr(layer, "layers"):  # a nested model: a pretrained backbone
            holder, conv = last_conv_layer(layer)
            if conv is not None:
                return layer, conv
    return None, None


def heatmaps(model, images: np.ndarray, classes: np.ndarray) -> np.ndarray | None:
    """Grad-CAM maps of ``classes[i]`` for ``images[i]``, resized to the images, each in [0, 1].

    Args:
        model: the trained classifier (raw pixels in, probabilities out).
        images: ``(n, H, W, C)`` 0-255 pixels.
        classes: the class explained per image (the predicted one, for a mistake).

    Returns:
        ``(n, H, W)`` maps, or None when the model has no conv layer.
    """
    import keras
    import tensorflow as tf

    holder, conv = last_conv_layer(model)
    if conv is None:
        return None
    forward = _forward(model, holder, conv)
    x = tf.convert_to_tensor(images, dtype=tf.float32)
    with tf.GradientTape() as tape:
        maps, probabilities = forward(x)  # maps: computed under the tape, so differentiable
        picked = tf.gather(tf.cast(probabilities, tf.float32), classes, axis=1, batch_dims=1)
    gradients = tf.cast(tape.gradient(picked, maps), tf.float32)
    maps = tf.cast(maps, tf.float32)  # mixed precision: float16 maps
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1))[..., None]
    height, width = images.shape[1:3]
    if 2 * cam.shape[1] > height and 2 * cam.shape[2] > width:
        # no downsampling, only 'valid' convs' borders lost: each map pixel sits over the input pixel
        # at the centre of its receptive field, so the map goes in the middle, not stretched
        top, left = (height - cam.shape[1]) // 2, (width - cam.shape[2]) // 2
        cam = tf.image.pad_to_bounding_box(cam, top, left, height, width)[..., 0]
    else:  # strided or pooled: a coarse map, upsampled
        cam = tf.image.resize(cam, (height, width), method="bilinear")[..., 0]
    cam = keras.ops.convert_to_numpy(cam)
    peak = cam.reshape(len(cam), -1).max(axis=1)[:, None, None]
    return cam / np.maximum(peak, 1e-9)


def _forward(model, holder, conv):
    """``images -> (conv maps, probabilities)``, the conv maps on the gradient's path."""
    import keras

    if holder is model:  # the scratch CNN: one model with both outputs
        both = keras.Model(model.inputs, [conv.output, model.output])
        return lambda x: both(x, training=False)
    inner = keras.Model(holder.inputs, [conv.output, holder.output])  # the nested backbone's own graph

    def replay(x):  # the layers around the backbone are a chain: call them in order
        maps = None
        for layer in model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            if layer is holder:
                maps, x = inner(x, training=False)
            else:
                x = layer(x, training=False)
        return maps, x

    return replay


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """``image`` (0-255, 1 or 3 channels) under ``cam`` in the jet colour map: RGB in [0, 1]."""
    from matplotlib import colormaps

    pixels = np.asarray(image, dtype="float32") / 255.0
    rgb = np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels[..., :3]
    heat = colormaps["jet"](cam)[..., :3]
    return np.clip((1 - alpha) * rgb + alpha * heat, 0, 1)
