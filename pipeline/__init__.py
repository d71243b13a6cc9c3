"""convlab: the Kaggle deep-learning course's vision experiments, reproducible and tracked.

    python -m pipeline                       # train the course's CNN on bundled digits
    from pipeline import run; run(["optimizer=sgd", "trainer.epochs=1"])
    from pipeline import ConfigError, DataError   # what ``run`` raises for the user's own mistakes

Importing this package loads neither TensorFlow nor MLflow.
"""

import os

from pipeline.config.errors import ConfigError, ConvlabError, DataError

__all__ = ["ConfigError", "ConvlabError", "DataError", "run"]

# TensorFlow's C++ start-up chatter (oneDNN notes, CUDA probing) would bury convlab's own
# output; set before anything imports TensorFlow. A user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run(overrides=(), *, config_name: str = "config"):
    """Composes the config like the CLI, trains, logs to MLflow; returns a ``RunResult``.

    Args:
        overrides (list[str]): Hydra overrides, e.g. ``["optimizer=sgd", "trainer.epochs=1"]``.

    Raises:
        pipeline.errors.ConfigError: a bad override or config value (before TensorFlow loads).
        pipeline.errors.DataError: a missing or malformed data file.
    """
    from pipeline.app import run_overrides  # here: `import pipeline.config` never loads the run floor
    from pipeline.quiet import quiet_stderr  # (every `pipeline.*` import runs this file first)

    with quiet_stderr():  # TensorFlow's C++ start-up noise dropped, real errors kept
        return run_overrides(list(overrides), config_name)
