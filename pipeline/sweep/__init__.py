"""Sweeps: the Hydra callback that opens a sweep's parent run and writes its verdict, each job's
place in the sweep (skip, resume, staleness), interrupts, adaptive seeding.

Never imports TensorFlow or Keras. May use: compare, tracking, config.
"""

from pipeline.sweep.callback import SweepCallback  # the `_target_` in conf/config.yaml

__all__ = ["SweepCallback"]
