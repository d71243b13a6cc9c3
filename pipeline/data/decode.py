"""Image files -> pixels at the model's input size, decoded in parallel, kept as uint8.

Photos are often far larger than the 224x224 a backbone takes: a 2,600 px JPEG decoded whole
costs 25 times the pixels of one decoded at 1/8 scale. JPEG decoders can scale by 1/2, 1/4 or
1/8 while decoding (DCT scaling), so ``decode_image`` picks the largest of those that still
leaves at least the target size, then resizes (antialiased) the rest of the way. Images are
kept at the target size as uint8 (a quarter of float32), in memory, on disk or not at all
(``dataset.cache``; ``decoded`` keeps them once per process or machine), and handed to the
model as float32 0-255 pixels.

TensorFlow is imported inside the functions.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from pipeline.config.errors import DataError
from pipeline.data import decoded

CACHES = ("memory", "disk", "none")
JPEG_SCALES = (8, 4, 2)  # libjpeg's DCT scaling factors, largest first
CHUNK = 256  # images decoded, or read from a memory-mapped file, per step


def decode_image(path, image_size: Sequence[int], channels: int):
    """One JPEG/PNG/GIF/BMP file as a float32 (H, W, C) tensor of 0-255 values at ``image_size``."""
    import tensorflow as tf

    return tf.cast(decode_uint8(path, image_size, channels), tf.float32)


def decode_uint8(path, image_size: Sequence[int], channels: int):
    """One image file as a uint8 (H, W, C) tensor at ``image_size``.

    TensorFlow decodes a CMYK JPEG to RGB but not to grayscale, so for ``channels=1`` a JPEG
    goes via RGB.
    """
    import tensorflow as tf

    raw = tf.io.read_file(path)
    jpeg = tf.io.is_jpeg(raw)
    to_channels = 3 if channels == 1 else channels
    image = tf.cond(
        jpeg,
        lambda: _scaled_jpeg(raw, to_channels, image_size),
        lambda: _any_image(raw, channels),
    )
    if channels == 1:
        image = tf.cond(jpeg, lambda: tf.image.rgb_to_grayscale(image[..., :3]), lambda: image[..., :1])
    resized = tf.image.resize(tf.cast(image, tf.float32), image_size, antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def _scaled_jpeg(raw, channels: int, image_size: Sequence[int]):
    """Decodes at 1/8, 1/4 or 1/2 scale when the result still covers ``image_size``."""
    import tensorflow as tf

    shape = tf.io.extract_jpeg_shape(raw)
    height, width = shape[0], shape[1]

    def covers(scale: int):
        return tf.logical_and(height // scale >= image_size[0], width // scale >= image_size[1])

    index = tf.constant(len(JPEG_SCALES), tf.int32)  # full size
    for position in reversed(range(len(JPEG_SCALES))):  # smallest scale first; larger ones win
        index = tf.where(covers(JPEG_SCALES[position]), position, index)
    branches = [functools.partial(tf.io.decode_jpeg, raw, channels=channels, ratio=s) for s in JPEG_SCALES]
    branches.append(functools.partial(tf.io.decode_jpeg, raw, channels=channels))
    image = tf.switch_case(index, branches)
    image.set_shape([None, None, channels])
    return image


def _any_image(raw, channels: int):
    import tensorflow as tf

    image = tf.io.decode_image(raw, channels=channels, expand_animations=False)
    image.set_shape([None, None, channels])
    return tf.image.grayscale_to_rgb(image) if channels == 1 else image  # shaped like the JPEG branch


def decode_files(
    paths, image_size: Sequence[int], channels: int, cache: str = "memory", as_float: bool = True
):
    """Image files as a ``tf.data`` of float32 0-255 images at ``image_size``, in order
    (``as_float=False``: uint8, for a pipeline that casts its batches).

    Args:
        paths: the files.
        image_size: ``(height, width)`` the model takes.
        channels: 1 or 3.
        cache: ``memory`` keeps the decoded uint8 images in this process's memory, where later
            calls for the same files (a sweep's next job) find them (``decoded``); ``disk`` also
            writes them to a file shared by processes and memory-maps it (the epochs stream from
            it, for data sets larger than memory); ``none`` decodes every epoch.

    Every file is decoded once here, so the first that cannot be (truncated, corrupt) is named
    in a ``DataError`` now, not mid-epoch in a traceback.
    """
    import tensorflow as tf

    if cache not in CACHES:
        raise ValueError(f"cache must be one of {CACHES}. Received: cache={cache!r}")
    paths = [str(p) for p in paths]
    # tf.cond and tf.switch_case already: AutoGraph's conversion would only cost seconds of tracing
    decode = tf.autograph.experimental.do_not_convert(
        functools.partial(decode_uint8, image_size=tuple(image_size), channels=channels)
    )
    shape = (len(paths), *image_size, channels)
    if cache == "none":
        ds = tf.data.Dataset.from_tensor_slices(paths).map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        _decode_all(paths, decode, shape, keep=False)  # every file checked now
    else:
        array = decoded.images(
            paths, image_size, channels, lambda: _decode_all(paths, decode, shape), disk=cache == "disk"
        )
        ds = _from_array(array)
    if not as_float:
        return ds
    return ds.map(lambda image: tf.cast(image, tf.float32), num_parallel_calls=tf.data.AUTOTUNE)


def _decode_all(paths: list[str], decode, shape, keep: bool = True):
    """Every file decoded, in order, in parallel, into a uint8 array of ``shape`` (or checked only,
    ``keep=False``); a file that fails is named in a ``DataError``."""
    import numpy as np
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(paths).map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    array = np.empty(shape if keep else (0, *shape[1:]), dtype=np.uint8)
    done = 0
    try:
        for batch in ds.batch(CHUNK).prefetch(2):
            if keep:
                array[done : done + len(batch)] = batch.numpy()
            done += len(batch)
    except tf.errors.OpError:
        for path in paths[done : done + CHUNK]:
            try:
                decode(path)
            except tf.errors.OpError as err:
                reason = err.message.split("}}")[-1].split("[Op:")[0].strip(" .")
                raise DataError(f"{path}: cannot be decoded ({reason}); replace or remove the file") from None
        raise
    return array


def _from_array(array):
    """Images from a uint8 array in memory, or streamed a chunk at a time from a memory-mapped one."""
    import numpy as np
    import tensorflow as tf

    if not isinstance(array, np.memmap):
        return tf.data.Dataset.from_tensor_slices(array)

    def rows(start):
        return np.asarray(array[start : start + CHUNK])

    def chunk(start):
        images = tf.numpy_function(rows, [start], tf.uint8, stateful=False)
        images.set_shape([None, *array.shape[1:]])
        return images

    starts = tf.data.Dataset.range(0, len(array), CHUNK)
    return starts.map(chunk, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
