"""Image files -> pixels at the model's input size, decoded in parallel, kept as uint8.

Photos are often far larger than the 224x224 a backbone takes: a 2,600 px JPEG decoded whole
costs 25 times the pixels of one decoded at 1/8 scale. JPEG decoders can scale by 1/2, 1/4 or
1/8 while decoding (DCT scaling), so ``decode_image`` picks the largest of those that still
leaves at least the target size, then resizes (antialiased) the rest of the way. Images are
kept at the target size as uint8 (a quarter of float32), in memory, on disk or not at all
(``dataset.cache``), and handed to the model as float32 0-255 pixels.

TensorFlow is imported inside the functions.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import shutil
import tempfile
from collections.abc import Sequence

from pipeline.config.errors import DataError

CACHES = ("memory", "disk", "none")
JPEG_SCALES = (8, 4, 2)  # libjpeg's DCT scaling factors, largest first


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


def decode_files(paths, image_size: Sequence[int], channels: int, cache: str = "memory"):
    """Image files as a ``tf.data`` of float32 0-255 images at ``image_size``, in order.

    Args:
        paths: the files.
        image_size: ``(height, width)`` the model takes.
        channels: 1 or 3.
        cache: ``memory`` keeps the decoded uint8 images in memory (decoded once, now);
            ``disk`` writes them to a temporary file that the epochs read (for data sets larger
            than memory); ``none`` decodes every epoch.

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
    ds = tf.data.Dataset.from_tensor_slices(paths).map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    if cache == "memory":
        ds = ds.cache()
    elif cache == "disk":
        ds = ds.cache(f"{_cache_folder()}/{next(_cache_numbers)}")  # one file set per call
    _check_every_file(ds, paths, decode)
    return ds.map(lambda image: tf.cast(image, tf.float32), num_parallel_calls=tf.data.AUTOTUNE)


def _check_every_file(ds, paths: list[str], decode) -> None:
    """One pass over ``ds`` (filling its cache); a file that fails is named in a ``DataError``."""
    import tensorflow as tf

    chunk, done = 256, 0
    try:
        for batch in ds.batch(chunk):
            done += len(batch)
    except tf.errors.OpError:
        for path in paths[done : done + chunk]:
            try:
                decode(path)
            except tf.errors.OpError as err:
                reason = err.message.split("}}")[-1].split("[Op:")[0].strip(" .")
                raise DataError(f"{path}: cannot be decoded ({reason}); replace or remove the file") from None
        raise


_cache_numbers = itertools.count()


@functools.cache
def _cache_folder() -> str:
    """A temporary folder for ``cache=disk``, removed when the process exits."""
    folder = tempfile.mkdtemp(prefix="convlab-images-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder
