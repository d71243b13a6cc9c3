"""Sweeps: the Hydra callback that opens a sweep's parent run and writes its verdict, each job's
place in the sweep (skip, resume, staleness), interrupts, adaptive seeding.

Never imports TensorFlow or Keras. May use: compare, tracking, config.
"""


def __getattr__(name: str):
    """``pipeline.sweep.SweepCallback``, the ``_target_`` older configs name, without loading the
    callback (and the store) for every ``pipeline.sweep.interrupts`` import."""
    if name == "SweepCallback":
        from pipeline.sweep.callback import SweepCallback  # lazily: see the docstring

        return SweepCallback
    raise AttributeError(f"module 'pipeline.sweep' has no attribute {name!r}")
