"""The reference for bench_overhead.py: the course's digit CNN in plain Keras, no tracking.

Same data as convlab's default run (scikit-learn's digits upscaled to 28x28, the same
stratified 80/20 split), same model, optimizer, epochs and batch size; nothing logged.

    python benchmarks/plain_keras.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

keras.utils.set_random_seed(0)
digits = load_digits()
x = tf.image.resize(digits.images[..., None].astype("float32") * (255 / 16), (28, 28), antialias=True).numpy()
y = digits.target
x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)

model = keras.Sequential(
    [
        keras.Input((28, 28, 1)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(20, kernel_size=(3, 3), activation="relu"),
        keras.layers.Conv2D(20, kernel_size=(3, 3), activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
history = model.fit(x_train, y_train, batch_size=128, epochs=5, validation_data=(x_val, y_val), verbose=0)
print(f"val_accuracy={history.history['val_accuracy'][-1]:.4f}", np.mean(history.history["loss"]) > 0)
