"""``RunConfig``, a validated run: one option of each config group plus the run-level settings.

Pydantic models, strict (unknown keys are errors) and frozen. ``pipeline.config.validate``
builds a ``RunConfig`` from the composed Hydra config. Imports neither TensorFlow nor MLflow.

Defaults have one source: the YAML files in ``conf/``. Hydra needs every key there (an override
can only change a key the composed config has), so the schemas declare types and constraints
only, never a default value, and the builders below the config take required arguments.

The groups' option schemas are in ``groups`` (re-exported here). Each group is a union
discriminated on ``name``: ``RunConfig.head`` is a ``DenseSoftmaxConfig`` or a ``SoftmaxConfig``,
so ``run.head.units`` exists exactly where it means something.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt

from pipeline.config.groups import (  # noqa: F401 (re-exported: schemas.X stays the way to name a schema)
    GROUPS,
    WEIGHTS_SUFFIXES,
    Accelerator,
    AcceleratorConfig,
    Activation,
    AdamConfig,
    AugmentationConfig,
    Backbone,
    ConstantScheduleConfig,
    CosineScheduleConfig,
    CsvDatasetConfig,
    Dataset,
    DatasetConfig,
    DenseSoftmaxConfig,
    DigitsConfig,
    Downsample,
    DropoutConfig,
    Fraction,
    Head,
    ImageFolderConfig,
    KerasDatasetConfig,
    MaxPoolConfig,
    MobileNetConfig,
    MultiGpuConfig,
    NoDownsampleConfig,
    NoRegularizationConfig,
    Optimizer,
    PlateauScheduleConfig,
    PretrainedConfig,
    Regularization,
    Schedule,
    Schema,
    ScratchCnnConfig,
    SgdConfig,
    Size,
    SoftmaxConfig,
    StepScheduleConfig,
    StrideConfig,
    option_names,
)


class CheckpointConfig(Schema):
    """A run's checkpoint at epoch ends (weights, optimizer, epoch, RNG, callbacks' state)."""

    dir: str  # one folder per run id under it; removed when the run ends FINISHED
    every_seconds: float = Field(ge=0)  # at an epoch's end if this long since the last one (0: every epoch)


class EarlyStoppingConfig(Schema):
    """Keras' ``EarlyStopping(restore_best_weights=True)``; off while ``patience`` is null."""

    monitor: Literal["val_accuracy", "val_loss"]  # a validation metric: the training ones only improve
    patience: PositiveInt | None  # epochs without improvement before stopping; null: off
    min_delta: float = Field(ge=0)  # a smaller change is no improvement


class TrainerConfig(Schema):
    epochs: PositiveInt
    batch_size: PositiveInt
    steps_per_epoch: PositiveInt | None
    validation_split: float = Field(gt=0.0, lt=1.0)
    split_seed: NonNegativeInt | None
    deterministic: bool  # TensorFlow op determinism: same seed, same metrics
    cache_features: bool  # frozen pretrained backbone, no augmentation: features computed once
    feature_cache_dir: str | None  # also keep them on disk here, shared across runs
    max_parameters: PositiveInt  # a scratch CNN estimated over this is refused before TensorFlow loads
    # evaluation (issue 27)
    evaluate: bool  # per-class metrics, table, ROC/PR curves once after the last epoch
    class_weight: Literal["balanced"] | None  # balanced: loss weighted by inverse class frequency
    resume: str | None  # a run id: continue that KILLED (or dead RUNNING) run from its last checkpoint
    checkpoint: CheckpointConfig
    early_stopping: EarlyStoppingConfig


class FineTuneConfig(Schema):
    """Two-stage fine-tuning of a pretrained backbone (Keras' transfer-learning guide)."""

    epochs: NonNegativeInt  # stage 2's epochs after trainer.epochs on the frozen backbone; 0: one stage
    layers: PositiveInt  # the backbone's last layers unfrozen in stage 2 (BatchNorm stays frozen)
    learning_rate_factor: float = Field(gt=0.0, le=1.0)  # stage 2's rate: optimizer.learning_rate x this


class PredictConfig(Schema):
    top_k: PositiveInt  # task=predict: ImageNet labels shown per image
    model: str | None  # a model URI to score dataset.path with; None: the backbone's ImageNet classifier
    output: str | None  # the CSV written with ``model``; None: submission.csv or predictions.csv


class SweepConfig(Schema):
    """How a multirun sweep runs (see ``pipeline.sweep``); ignored by single runs."""

    resume: str | None  # a sweep id, a parent run id, or "last"
    fail_fast: bool  # after a job fails, the jobs not yet started are skipped
    stale_after: float = Field(gt=0)  # seconds without a heartbeat: a RUNNING run elsewhere is dead
    max_seeds: PositiveInt | None  # adaptive seeding: add seeds to undecided variants up to this
    # sweep.register: the decided winner's model registered under this name (``register`` would
    # shadow pydantic's BaseModel.register)
    register_as: str | None = Field(alias="register", min_length=1)
    register_undecided: bool  # no decided winner: register the best mean anyway, marked undecided
    # the metric of the sweep's verdict and a search's objective (higher is better for each)
    metric: Literal["val_accuracy", "best_val_accuracy", "val_macro_f1", "val_weighted_f1"]


class TrackingConfig(Schema):
    uri: str
    experiment_name: str = Field(min_length=1)
    run_name: str | None
    log_model: bool
    system_metrics: bool  # MLflow's system metrics (CPU, memory, disk, network, GPU) on the run
    outage_seconds: float = Field(ge=0)  # a server that stops answering mid-run: how long to wait


class RunConfig(Schema):
    """A validated run: one schema instance per group plus the run-level settings."""

    dataset: Dataset
    backbone: Backbone
    head: Head
    downsample: Downsample
    regularization: Regularization
    augmentation: AugmentationConfig
    optimizer: Optimizer
    accelerator: Accelerator
    schedule: Schedule
    trainer: TrainerConfig
    fine_tune: FineTuneConfig
    tracking: TrackingConfig
    predict: PredictConfig
    sweep: SweepConfig
    seed: NonNegativeInt
    task: Literal["train", "predict"]

    @property
    def pretrained(self) -> bool:
        """A ``keras.applications`` backbone (not the scratch CNN)."""
        return isinstance(self.backbone, PretrainedConfig)

    @property
    def model_input_size(self) -> tuple[int, int]:
        """The image size the model sees: a pretrained backbone's ``input_size``, else the dataset's."""
        backbone = self.backbone
        size = backbone.input_size if isinstance(backbone, PretrainedConfig) else None
        return tuple(size or self.dataset.image_size)

    @property
    def caches_features(self) -> bool:
        """A frozen pretrained backbone without augmentation gives the same features every epoch."""
        backbone = self.backbone
        frozen = isinstance(backbone, PretrainedConfig) and backbone.trainable == 0
        return self.trainer.cache_features and frozen and not self.augmentation.enabled

    @property
    def split_seed(self) -> int:
        """The validation split's seed: ``trainer.split_seed``, or the run's seed when that is null."""
        return self.seed if self.trainer.split_seed is None else self.trainer.split_seed

    @property
    def conv_strides(self) -> int:
        """The scratch CNN's conv strides: ``downsample=stride``'s, else 1."""
        return self.downsample.strides if isinstance(self.downsample, StrideConfig) else 1

    @property
    def pool_size(self) -> int | None:
        """MaxPooling2D after each conv with ``downsample=maxpool``, else None."""
        return self.downsample.pool_size if isinstance(self.downsample, MaxPoolConfig) else None

    @property
    def dropout_rate(self) -> float:
        return self.regularization.rate if isinstance(self.regularization, DropoutConfig) else 0.0
