"""Data augmentation as Keras ``Random*`` layers, applied to training batches only."""

from __future__ import annotations


def build_augmentation(
    horizontal_flip: bool, width_shift: float, height_shift: float, rotation: float, seed: int
):
    """The course's ``ImageDataGenerator`` knobs as a Keras ``Sequential``, or None when all off.

    Args:
        horizontal_flip: mirror images left-right at random.
        width_shift: largest horizontal shift, as a fraction of the width (0.1 = 10%).
        height_shift: largest vertical shift, as a fraction of the height.
        rotation: largest rotation in degrees, either way.
        seed: seeds every layer, so the same run sees the same augmented images.
    """
    import keras

    layers = []
    if horizontal_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed, name="random_flip"))
    if width_shift or height_shift:
        layers.append(
            keras.layers.RandomTranslation(
                height_shift, width_shift, fill_mode="constant", seed=seed + 1, name="random_shift"
            )
        )
    if rotation:
        layers.append(
            keras.layers.RandomRotation(
                rotation / 360.0, fill_mode="constant", seed=seed + 2, name="random_rotation"
            )
        )
    return keras.Sequential(layers, name="augmentation") if layers else None
