"""What a training run logs besides its metrics: figures, the Kaggle submission, the model's example.

Takes built objects (a ``keras.Model``, an ``ImageData``, arrays); ``tracking`` does the writing.
"""

from __future__ import annotations

import numpy as np

from pipeline.data import sources
from pipeline.data.sources import decode_image
from pipeline.tracking import contract, record
from pipeline.training import callbacks, figures


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


def log_test_set(model, data, batch_size: int) -> tuple[dict[str, float], np.ndarray]:
    """A held-out test set (an image folder's ``test/<class>/``), scored once after training:
    ``test_accuracy``, ``test_loss`` and ``figures/test_confusion_matrix.png``. Never used to
    choose a model or an epoch: that is what validation is for. Returns the metrics and the
    test images' probabilities."""
    probabilities = _test_probabilities(model, data, data.y_test, batch_size)
    picked = probabilities[np.arange(len(data.y_test)), data.y_test]
    metrics = {
        contract.TEST_ACCURACY: float(np.mean(probabilities.argmax(axis=1) == data.y_test)),
        contract.TEST_LOSS: float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0)))),
    }
    record.log_metrics(metrics)
    figure = figures.confusion_matrix(data.y_test, probabilities.argmax(axis=1), data.class_names)
    record.log_figure(figure, "figures/test_confusion_matrix.png")
    return metrics, probabilities


def log_test_predictions(model, data, batch_size: int) -> None:
    """Unlabelled images (an image folder's ``test/*.jpg``): ``predictions/predictions.csv``,
    one row per file with the predicted class and its probability."""
    import pandas as pd

    probabilities = _test_probabilities(model, data, np.zeros(len(data.x_test), "int64"), batch_size)
    best = probabilities.argmax(axis=1)
    frame = pd.DataFrame(
        {
            "file": list(data.x_test),
            "label": [data.class_names[i] for i in best],
            "probability": probabilities.max(axis=1).round(4),
        }
    )
    record.log_text(frame.to_csv(index=False), "predictions/predictions.csv")


def _test_probabilities(model, data, labels: np.ndarray, batch_size: int) -> np.ndarray:
    images = sources.image_dataset(data, data.x_test, labels).batch(batch_size)
    return callbacks.predict_eagerly(model, images)
