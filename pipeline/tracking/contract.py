"""The MLflow contract: every name that crosses from the runs that write to what reads them.

Runs and sweeps (``tracking``, ``sweep``, ``runner``) write these tags and metrics; the comparison
(``compare``), the MLflow UI and the tests read them. A name used on both sides lives here, once.

The parent/child protocol:

- A sweep is one parent run tagged ``ROLE=ROLE_SWEEP`` and ``SWEEP_ID``, holding the sweep's
  definition (``SWEEP_PARAMS``) and its factors (``FACTORS``, a JSON list of override keys).
- Each job of the sweep is a child run: ``PARENT`` (MLflow's own nesting tag) names the parent,
  ``ROLE=ROLE_JOB``, ``SWEEP_ID``, ``VARIANT``, ``SEED``, ``CONFIG_HASH`` (the resolved config,
  seed included: what resume matches on) and one ``factor_tag(key)`` per factor.
- Jobs learn their parent from two environment variables (``ENV_PARENT_RUN_ID``,
  ``ENV_SWEEP_ID``), set through the job's own config (``hydra.job.env_set``), so a job on
  another machine nests under the parent as long as it reaches the same tracking server.
- Every run ends in one of ``TERMINAL``; ``ERROR`` holds a failure's first line.

Imports nothing heavy: config-time code and the comparison may use it.
"""

from __future__ import annotations

import re

# --- run statuses (MLflow's own names) --------------------------------------------------------
RUNNING = "RUNNING"
FINISHED = "FINISHED"
FAILED = "FAILED"
KILLED = "KILLED"
TERMINAL = (FINISHED, FAILED, KILLED)

# --- MLflow's own tags ------------------------------------------------------------------------
PARENT = "mlflow.parentRunId"
NOTE = "mlflow.note.content"  # a run's description in the UI
GIT_COMMIT = "mlflow.source.git.commit"
EXPERIMENT_KIND = "mlflow.experimentKind"  # which view the UI opens an experiment in
MODEL_TRAINING_KIND = "custom_model_development"
# A saved view of an experiment's runs (MLflow 3.17's UI): an experiment tag PREFIX + key holding
# {"name", "createdAt", "updatedAt", "state"}, opened by the experiment page's URL parameter.
SAVED_VIEW_PREFIX = "mlflow.sharedViewState."
SAVED_VIEW_PARAM = "viewStateShareKey"
# MLflow 3.17's and 3.18's UI pick the GenAI or model-training view from this URL parameter, else
# the sidebar's switch (the browser's localStorage ``mlflow.workflowType_v1``, GenAI by default),
# not from EXPERIMENT_KIND (read only with that navigation off, hard-coded on): links carry it.
UI_WORKFLOW_PARAM = "workflowType"
UI_WORKFLOW_TRAINING = "machine_learning"

# --- convlab's tags ---------------------------------------------------------------------------
ROLE = "convlab.role"
ROLE_SWEEP = "sweep"
ROLE_JOB = "job"
SWEEP_ID = "convlab.sweep_id"
EXPERIMENT = "convlab.experiment"  # the experiment preset a sweep ran (``experiment=NAME``)
FACTORS = "convlab.factors"
SWEEP_PARAMS = "convlab.sweep_params"
OVERRIDES = "convlab.overrides"
VARIANT = "convlab.variant"
SEED = "convlab.seed"
CONFIG_HASH = "convlab.config_hash"
ERROR = "convlab.error"
TOTAL_JOBS = "convlab.total_jobs"  # on a sweep's parent: how many jobs this pass launches
STARTED = "convlab.started"  # on a sweep's parent: when this pass (a run or a resume) started
HOST = "convlab.host"  # where a run's process lives: resume tells a dead run from a live one
PID = "convlab.pid"
PROCESS_START = "convlab.process_start"  # the process's start time, so a reused pid is not mistaken
SWEEP_PROCESS = "convlab.sweep_process"  # ``host:pid`` of the sweep process that launched the job
SCHEDULER_JOB = "convlab.scheduler_job"  # a cluster job's id (SLURM: ``<array>_<index>``)
LOADER = "convlab.loader"  # a data set input's source when it is not a file: the loader's name
FEATURE_CACHE = "convlab.feature_cache"
FEATURE_CACHE_KEY = "convlab.feature_cache_key"
GROUP_PREFIX = "convlab.group."
FACTOR_PREFIX = "convlab.factor."
ACCELERATOR_PREFIX = "convlab.accelerator."


def group_tag(group: str) -> str:
    return f"{GROUP_PREFIX}{group}"


def factor_tag(key: str) -> str:
    return f"{FACTOR_PREFIX}{key}"


# --- metrics ----------------------------------------------------------------------------------
# per epoch, step = epoch (1 = after the first)
LOSS = "loss"
ACCURACY = "accuracy"
VAL_LOSS = "val_loss"
VAL_ACCURACY = "val_accuracy"
EPOCH_SECONDS = "epoch_seconds"
IMAGES_PER_SECOND = "images_per_second"
HEARTBEAT = "heartbeat"  # wall-clock time, every few seconds while the run lives: staleness (``heartbeat``)
LEARNING_RATE = "learning_rate"  # each epoch's rate (at its first step), whatever the schedule
STAGE = "stage"  # two-stage fine-tuning: 1 (head on the frozen backbone) or 2 (unfrozen), per epoch
# once per run
BEST_VAL_ACCURACY = "best_val_accuracy"
BEST_EPOCH = "best_epoch"
CHECKPOINT_SECONDS = "checkpoint_seconds"  # time spent writing checkpoints (this process)
STOPPED_EPOCH = "stopped_epoch"  # early stopping: the epoch it stopped after (0: it did not)
PARAMETER_COUNT = "parameter_count"
TRAINABLE_PARAMETER_COUNT = "trainable_parameter_count"
RUN_SECONDS = "run_seconds"
FEATURE_SECONDS = "feature_seconds"
SKIPPED_FILES = "dataset.skipped_files"
TEST_ACCURACY = "test_accuracy"  # a held-out test set (an image folder's test/), scored once at the end
TEST_LOSS = "test_loss"
# --- the per-class evaluation, once per run after the last epoch (``training.evaluate``) -------
VAL_PREFIX = "val_"  # the validation set
TEST_PREFIX = "test_"  # an image folder's test/
MACRO_F1 = "macro_f1"  # val_macro_f1, test_macro_f1
WEIGHTED_F1 = "weighted_f1"
VAL_MACRO_F1 = f"{VAL_PREFIX}{MACRO_F1}"
PER_CLASS = ("precision", "recall", "f1", "support")  # val_recall/<class>, ...
CLASS_COUNT = "class_count"  # class_count/<class>: training images per class
EVALUATION_SECONDS = "evaluation_seconds"  # the wall time the evaluation (and speed measures) added
EVALUATION_DIR = "evaluation"  # evaluation/val_per_class.json: the per-class table (mlflow.load_table)
# --- speed and memory, once per run (``training.speed``) ---------------------------------------
TRAIN_SECONDS_PER_EPOCH = "train_seconds_per_epoch"  # median training time of an epoch (the first left out)
MODEL_SIZE_MB = "model_size_mb"  # the weights' bytes
PEAK_MEMORY_MB = "peak_memory_mb"  # the process's peak resident memory
GPU_PEAK_MEMORY_MB = "gpu_peak_memory_mb"
INFERENCE_MS = "inference_ms_per_image"  # inference_ms_per_image/batch_1, .../batch_128
# task=predict
IMAGES = "images"
MEAN_TOP1_PROBABILITY = "mean_top1_probability"


def top_k_accuracy(k: int) -> str:
    return f"top{k}_accuracy"


def inference_ms(batch: int) -> str:
    return f"{INFERENCE_MS}/batch_{batch}"


def class_metric(prefix: str, stat: str, class_name: str) -> str:
    """``val_recall/<class>``: the class name made MLflow-legal (letters, digits, ``_ - . space``)."""
    return f"{prefix}{stat}/{metric_safe(class_name)}"


def metric_safe(name: str) -> str:
    """``name`` as part of an MLflow metric key: other characters become ``_``, and so do ``.``/``..``
    (a key must be its own normalised path)."""
    safe = re.sub(r"[^\w.\- ]", "_", str(name)).strip() or "_"
    return "_" if set(safe) == {"."} else safe


# --- errors (the ``convlab.error`` tag) that the sweep acts on --------------------------------
WORKER_KILLED = (
    "worker killed by"  # "worker killed by SIGKILL (out of memory?)": lost, not retried in its pass
)

# --- environment: how a job finds its sweep ---------------------------------------------------
ENV_PARENT_RUN_ID = "CONVLAB_PARENT_RUN_ID"
ENV_SWEEP_ID = "CONVLAB_SWEEP_ID"
ENV_SWEEP_PROCESS = "CONVLAB_SWEEP_PROCESS"  # ``host:pid`` of the sweep process: it may end the job's run
SWEEP_ENV = (ENV_PARENT_RUN_ID, ENV_SWEEP_ID, ENV_SWEEP_PROCESS)  # what a sweep hands its jobs

# --- dataset inputs: the context each data set is logged with ---------------------------------
TRAINING = "training"
VALIDATION = "validation"
PREDICTION = "prediction"  # task=predict with predict.model: the data set scored

# --- the Model Registry: a sweep's decided winner handed on (``registry``, ``sweep.register``) --
CHAMPION = "champion"  # the alias of the version a sweep (or ``python -m pipeline.register``) registered
SEEDS = "convlab.seeds"  # on a registered version: the seeds behind its verdict, comma-separated
DECIDED = "convlab.decided"  # on a registered version: "true", or "false" (sweep.register_undecided)
SOURCE_RUN = "convlab.run_id"  # on a registered version: the run whose model it is
CLASSES_METADATA = "classes"  # a logged model's metadata: class names, in the order of its outputs
PREDICT_MODEL = "convlab.predict.model"  # on a task=predict run: the model URI it scored with
PREDICT_MODEL_ID = "convlab.predict.model_id"  # ...and the logged model (m-...) that URI resolved to
MEAN_PROBABILITY = "mean_probability"  # task=predict with a model: the mean top-class probability

MAX_KEY = 250  # MLflow's key length limit
MAX_VALUE = 6000  # MLflow's param value length limit

# --- studies (hydra/sweeper=optuna): a search, then its winner confirmed over seeds -----------
STUDY = "convlab.study"  # the Optuna study's name, on its parent and on each trial's run
STUDY_STORAGE = "convlab.study_storage"  # on the parent: where the study lives (password redacted)
TRIAL = "convlab.trial"  # a trial's run: its number in the study
PRUNED_AT_EPOCH = "convlab.pruned_at_epoch"  # a pruned trial's run: the epoch it stopped after
CONFIRMED = "convlab.confirmed"  # on the parent: JSON list of the variants the confirm stage ran
BASELINE = "convlab.baseline"  # on the parent: the comparison's baseline (a study: its winner)
STUDY_NOTE = "convlab.study_note"  # on the parent: the study's verdict, above the comparison
ENV_STUDY = "CONVLAB_STUDY"  # a trial's job: the study's name, its storage and its trial number
ENV_STUDY_STORAGE = "CONVLAB_STUDY_STORAGE"  # also, exported by a user: where studies go (a team server)
ENV_TRIAL = "CONVLAB_TRIAL"
