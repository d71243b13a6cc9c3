"""The reference for bench_course.py: the Kaggle course's own code, ported to Keras 3.

Lesson 7 (from scratch): ``pd.read_csv``, ``data_prep``, a ``Sequential`` CNN
(Conv2D(20) x2, Flatten, Dense(128), softmax), adam, ``fit(x, y, batch_size=128,
validation_split=0.2)``. Lessons 4-5 (transfer): ``Sequential([MobileNet(include_top=False,
pooling='avg', weights=FILE), Dense(2, softmax)])``, frozen, sgd, and
``ImageDataGenerator(preprocessing_function=preprocess_input[, horizontal_flip, 10% shifts])
.flow_from_directory`` for train/ and val/, then ``fit``. Only the Keras 2 names changed
(``fit_generator`` -> ``fit``, ``input_shape`` -> ``Input``); Keras 3's defaults (e.g.
``jit_compile="auto"``) apply as they would to anyone running the course today.

    python benchmarks/course_code.py digits train.csv [--epochs 2]
    python benchmarks/course_code.py transfer DIR weights.h5 [--epochs 10] [--augment] [--batch-size 12]

Prints one JSON line: the final and best ``val_accuracy``.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def digits(path: str, epochs: int) -> dict:
    import pandas as pd
    from tensorflow import keras
    from tensorflow.keras.layers import Conv2D, Dense, Flatten
    from tensorflow.keras.models import Sequential

    img_rows, img_cols, num_classes = 28, 28, 10

    def data_prep(raw):
        out_y = keras.utils.to_categorical(raw.label, num_classes)
        num_images = raw.shape[0]
        x_as_array = raw.values[:, 1:]
        x_shaped_array = x_as_array.reshape(num_images, img_rows, img_cols, 1)
        out_x = x_shaped_array / 255
        return out_x, out_y

    keras.utils.set_random_seed(0)
    x, y = data_prep(pd.read_csv(path))
    model = Sequential()
    model.add(keras.Input((img_rows, img_cols, 1)))
    model.add(Conv2D(20, kernel_size=(3, 3), activation="relu"))
    model.add(Conv2D(20, kernel_size=(3, 3), activation="relu"))
    model.add(Flatten())
    model.add(Dense(128, activation="relu"))
    model.add(Dense(num_classes, activation="softmax"))
    model.compile(loss=keras.losses.categorical_crossentropy, optimizer="adam", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=128, epochs=epochs, validation_split=0.2, verbose=0)
    return history.history


def transfer(folder: str, weights: str, epochs: int, augment: bool, batch_size: int) -> dict:
    from tensorflow import keras
    from tensorflow.keras.applications import MobileNet
    from tensorflow.keras.applications.mobilenet import preprocess_input
    from tensorflow.keras.layers import Dense
    from tensorflow.keras.models import Sequential
    from tensorflow.keras.preprocessing.image import ImageDataGenerator

    num_classes, image_size = 2, 224
    keras.utils.set_random_seed(0)
    my_new_model = Sequential()
    my_new_model.add(MobileNet(include_top=False, pooling="avg", weights=weights, alpha=0.25))
    my_new_model.add(Dense(num_classes, activation="softmax"))
    my_new_model.layers[0].trainable = False
    my_new_model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])

    shifts = {"horizontal_flip": True, "width_shift_range": 0.1, "height_shift_range": 0.1}
    data_generator_with_aug = ImageDataGenerator(
        preprocessing_function=preprocess_input, **(shifts if augment else {})
    )
    data_generator_no_aug = ImageDataGenerator(preprocessing_function=preprocess_input)
    train_generator = data_generator_with_aug.flow_from_directory(
        directory=f"{folder}/train",
        target_size=(image_size, image_size),
        batch_size=batch_size,
        class_mode="categorical",
    )
    validation_generator = data_generator_no_aug.flow_from_directory(
        directory=f"{folder}/val", target_size=(image_size, image_size), class_mode="categorical"
    )
    history = my_new_model.fit(
        train_generator, epochs=epochs, validation_data=validation_generator, verbose=0
    )
    return history.history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="lesson", required=True)
    scratch = sub.add_parser("digits")
    scratch.add_argument("csv")
    scratch.add_argument("--epochs", type=int, default=2)
    lesson = sub.add_parser("transfer")
    lesson.add_argument("folder")
    lesson.add_argument("weights")
    lesson.add_argument("--epochs", type=int, default=10)
    lesson.add_argument("--augment", action="store_true")
    lesson.add_argument("--batch-size", type=int, default=12)
    args = parser.parse_args()
    if args.lesson == "digits":
        history = digits(args.csv, args.epochs)
    else:
        history = transfer(args.folder, args.weights, args.epochs, args.augment, args.batch_size)
    print(
        json.dumps(
            {"val_accuracy": history["val_accuracy"][-1], "best_val_accuracy": max(history["val_accuracy"])}
        )
    )


if __name__ == "__main__":
    main()
