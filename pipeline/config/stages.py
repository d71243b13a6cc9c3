"""Checks of a run's learning-rate schedule and its fine-tuning stages, before TensorFlow loads.

    from pipeline.config import stages
    stages.check(run)   # ConfigError: one line naming the key, the value and what is allowed

A cosine warmup as long as the training never decays; a second stage needs a pretrained
backbone that the first stage kept frozen.
"""

from __future__ import annotations

from pipeline.config.errors import ConfigError
from pipeline.config.schemas import CosineScheduleConfig, PretrainedConfig, RunConfig
from pipeline.config.sizes import SPECS


def check(run: RunConfig) -> None:
    """Refuses a schedule or a fine-tuning stage that cannot train as configured."""
    if run.task != "train":
        return
    _check_fine_tune(run)
    _check_warmup(run)


def stage_epochs(run: RunConfig) -> list[tuple[str, int]]:
    """Each stage's epochs key and count: ``trainer.epochs``, then ``fine_tune.epochs`` if any."""
    stages = [("trainer.epochs", run.trainer.epochs)]
    if run.fine_tune.epochs:
        stages.append(("fine_tune.epochs", run.fine_tune.epochs))
    return stages


def _check_warmup(run: RunConfig) -> None:
    schedule = run.schedule
    if not isinstance(schedule, CosineScheduleConfig):
        return
    for key, epochs in stage_epochs(run):  # the schedule restarts in each stage
        if schedule.warmup_epochs >= epochs:
            raise ConfigError(
                f"schedule.warmup_epochs={schedule.warmup_epochs}: the warmup must be shorter than the "
                f"training ({key}={epochs}), or the rate never decays; use warmup_epochs={epochs - 1} "
                "at most or train longer"
            )


def _check_fine_tune(run: RunConfig) -> None:
    epochs, backbone = run.fine_tune.epochs, run.backbone
    if not epochs:
        return
    if not isinstance(backbone, PretrainedConfig):
        raise ConfigError(
            f"fine_tune.epochs={epochs}: a fine-tuning stage unfreezes a pretrained backbone, and "
            f"backbone={backbone.name} trains whole from the first epoch; use fine_tune.epochs=0 or "
            f"a pretrained backbone ({', '.join(SPECS)})"
        )
    if backbone.trainable:
        raise ConfigError(
            f"backbone.trainable={backbone.trainable}: with fine_tune.epochs={epochs} the first stage trains "
            "the head on a frozen backbone (backbone.trainable=0) and fine_tune.layers says how many "
            "layers the second stage unfreezes"
        )
