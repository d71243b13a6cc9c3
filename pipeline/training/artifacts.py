"""What a training run logs besides its metrics: figures, the Kaggle submission, the model's example.

Takes built objects (a ``keras.Model``, an ``ImageData``, arrays); ``tracking`` does the writing.
"""

from __future__ import annotations

import numpy as np

from pipeline.data.sources import decode_image
from pipeline.tracking import record
from pipeline.training import figures


def log_figures(model, data, history: dict[str, list[float]], probabilities: np.ndarray) -> None:
    """Learning curves, the confusion matrix, and the first conv layer's filters and feature maps."""

    record.log_figure(figures.learning_curves(history), "figures/learning_curves.png")
    predicted = probabilities.argmax(axis=1)
    record.log_figure(
        figures.confusion_matrix(data.y_val, predicted, data.class_names), "figures/confusion_matrix.png"
    )
    conv = next((layer for layer in model.layers if "conv" in type(layer).__name__.lower()), None)
    if conv is not None and len(conv.get_weights()[0].shape) == 4:
        import keras

        image = first_val_image(data)
        probe = keras.Model(model.inputs[0], conv.output)  # one input, not a list of one
        maps = keras.ops.convert_to_numpy(probe(image[None], training=False))[0]  # eager: nothing to trace
        fig = figures.filters_and_feature_maps(conv.get_weights()[0], image, maps)
        record.log_figure(fig, "figures/filters_and_feature_maps.png")


def first_val_image(data) -> np.ndarray:
    """The first validation image as 0-255 pixels, decoded when the data set holds file paths."""
    if not data.from_files:
        return np.asarray(data.x_val[0], dtype="float32")

    return decode_image(data.x_val[0], data.image_size, data.channels).numpy()


def log_submission(model, x_test: np.ndarray) -> None:
    """Kaggle's ``ImageId,Label`` CSV for the unlabelled test images, as ``predictions/submission.csv``."""
    import pandas as pd

    labels = model.predict(x_test, verbose=0, batch_size=256).argmax(axis=1)
    frame = pd.DataFrame({"ImageId": np.arange(1, len(labels) + 1), "Label": labels})
    record.log_text(frame.to_csv(index=False), "predictions/submission.csv")
