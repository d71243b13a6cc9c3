"""Realistic data for bench_course.py, written once into a folder (no network).

- ``digits.csv``: Kaggle's digit-recognizer format (``label,pixel0..pixel783``, 0-255), ROWS
  real handwritten digits: scikit-learn's 8x8 digits upscaled to 20x20, placed in a 28x28 frame
  with a random shift of up to 3 pixels (as MNIST centres its 20x20 digits), plus small noise.
- ``photos/{train,val}/<class>/*.jpg``: real photos from scikit-image (the astronaut and the cat
  against coffee and a rocket), randomly cropped, scaled to 300-2,600 px wide, flipped and
  re-lit, saved as JPEGs of camera quality: what decoding costs on real photos, not flat colours.
- ``mobilenet_025.weights.h5``: MobileNet alpha 0.25 without its top, random weights (the
  course loads ImageNet ones from a local file the same way; the ratio is what counts).

    python benchmarks/bench_data.py DIR [--rows 10000] [--photos 400]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

PHOTO_CLASSES = {"people_and_pets": ("astronaut", "chelsea"), "objects": ("coffee", "rocket")}
MIN_WIDTH, MAX_WIDTH = 300, 2600
WEIGHTS_FILE = "mobilenet_025.weights.h5"


def write_digit_csv(path: Path, rows: int, seed: int = 0) -> Path:
    """A Kaggle-format CSV of ``rows`` digits with real handwriting structure."""
    from PIL import Image
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    digits = load_digits()
    picks = rng.integers(0, len(digits.target), rows)
    small = {
        i: np.asarray(
            Image.fromarray((digits.images[i] * (255 / 16)).astype("uint8")).resize((20, 20), Image.BILINEAR)
        )
        for i in np.unique(picks)
    }
    pixels = np.zeros((rows, 28, 28), dtype=np.float32)
    for row, index in enumerate(picks):
        dy, dx = rng.integers(1, 8, 2)  # 4 +- 3: MNIST-style centring, jittered
        pixels[row, dy : dy + 20, dx : dx + 20] = small[index]
    pixels += rng.normal(0, 8, pixels.shape)
    table = np.concatenate(
        [digits.target[picks, None], pixels.reshape(rows, -1).clip(0, 255).round()], axis=1
    )
    header = "label," + ",".join(f"pixel{i}" for i in range(784))
    np.savetxt(path, table.astype(np.int64), fmt="%d", delimiter=",", header=header, comments="")
    return path


def _photo(source: np.ndarray, rng: np.random.Generator):
    """One random crop of ``source``, scaled to a random width, flipped and re-lit, as a PIL image."""
    from PIL import Image

    height, width = source.shape[:2]
    crop_h, crop_w = (rng.uniform(0.5, 1.0, 2) * (height, width)).astype(int)
    top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
    crop = source[top : top + crop_h, left : left + crop_w].astype(np.float32)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = crop * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20)
    image = Image.fromarray(crop.clip(0, 255).astype(np.uint8))
    new_width = int(np.exp(rng.uniform(np.log(MIN_WIDTH), np.log(MAX_WIDTH))))
    image = image.resize((new_width, max(1, round(new_width * crop_h / crop_w))), Image.BICUBIC)
    grain = rng.normal(0, 4, (image.height, image.width, 1))  # sensor noise: real JPEG entropy
    return Image.fromarray((np.asarray(image, dtype=np.float32) + grain).clip(0, 255).astype(np.uint8))


def write_photo_folder(root: Path, count: int, val_fraction: float = 0.2, seed: int = 0) -> Path:
    """``root/{train,val}/<class>/*.jpg``: ``count`` photos, half per class."""
    import skimage.data

    rng = np.random.default_rng(seed)
    per_class = count // len(PHOTO_CLASSES)
    val_count = round(per_class * val_fraction)
    for label, sources in PHOTO_CLASSES.items():
        images = [getattr(skimage.data, name)() for name in sources]
        for i in range(per_class):
            split = "val" if i < val_count else "train"
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            _photo(images[i % len(images)], rng).save(folder / f"{label}_{i:04d}.jpg", quality=90)
    return root


def write_mobilenet_weights(path: Path, size: int = 224) -> Path:
    """MobileNet alpha 0.25 without its top, random weights, as a Keras 3 ``.weights.h5``."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNet(
        include_top=False, weights=None, alpha=0.25, input_shape=(size, size, 3), pooling="avg"
    )
    model.save_weights(path)
    return path


def prepare(folder: Path, rows: int, photos: int) -> dict[str, Path]:
    """Writes whatever of the three is missing in ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"csv": folder / "digits.csv", "photos": folder / "photos", "weights": folder / WEIGHTS_FILE}
    if not paths["csv"].exists():
        write_digit_csv(paths["csv"], rows)
    if not paths["photos"].exists():
        write_photo_folder(paths["photos"], photos)
    if not paths["weights"].exists():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        write_mobilenet_weights(paths["weights"])
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--photos", type=int, default=400)
    args = parser.parse_args()
    for name, path in prepare(args.folder, args.rows, args.photos).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
