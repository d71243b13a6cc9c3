"""Device choice: a ``tf.distribute`` strategy, the float policy, and what was chosen."""

from __future__ import annotations

import logging

from pipeline.config.errors import ConfigError

log = logging.getLogger(__name__)


def configure(
    name: str,
    mixed_precision: bool,
    devices: list[str] | None,
    logical_cpus: int,
):
    """Picks where a run trains.

    Args:
        name: ``auto`` (the GPU when TensorFlow sees one, else the CPU), ``cpu``, ``gpu``, or
            ``multi_gpu`` (``MirroredStrategy`` over every visible GPU, or over ``devices``).
        mixed_precision: float16 compute on GPUs, bfloat16 on CPUs; the softmax stays float32.
        devices: explicit device names for ``multi_gpu``, e.g. ``["/gpu:0", "/gpu:1"]``.
        logical_cpus: split the CPU into this many logical devices first, so ``multi_gpu``
            with ``devices=["/cpu:0", "/cpu:1"]`` exercises distribution without GPUs.

    Returns:
        ``(strategy, description)``: the strategy to build and fit under, and a dict of what
        was chosen (device, replicas, policy) for the run's params.

    Raises:
        ConfigError: ``gpu`` or ``multi_gpu`` on a machine where TensorFlow sees no GPU.
    """
    import keras
    import tensorflow as tf

    if logical_cpus:
        _split_cpu(tf, logical_cpus)
    gpus = [f"/gpu:{i}" for i, _ in enumerate(tf.config.list_physical_devices("GPU"))]
    if name in ("gpu", "multi_gpu") and not gpus and not devices:
        raise ConfigError(
            f"accelerator={name}: TensorFlow sees no GPU on this machine "
            "(check nvidia-smi and install tensorflow[and-cuda]); use accelerator=auto or cpu"
        )
    if name == "multi_gpu":
        chosen = devices or gpus
        strategy = tf.distribute.MirroredStrategy(chosen)
    elif name == "cpu" and gpus:
        chosen, strategy = ["/cpu:0"], tf.distribute.OneDeviceStrategy("/cpu:0")
    else:  # auto, gpu, or cpu on a CPU-only machine: TensorFlow's default placement
        chosen, strategy = (gpus[:1] or ["/cpu:0"]), tf.distribute.get_strategy()
    on_gpu = any("gpu" in device.lower() for device in chosen)
    policy = ("mixed_float16" if on_gpu else "mixed_bfloat16") if mixed_precision else "float32"
    keras.mixed_precision.set_global_policy(policy)
    description = {
        "device": ",".join(chosen),
        "replicas": strategy.num_replicas_in_sync,
        "policy": policy,
        "visible_gpus": len(gpus),
    }
    log.info("accelerator=%s -> %s", name, description)
    return strategy, description


def _split_cpu(tf, count: int) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:  # TensorFlow already initialised in this process: keep what it has
        if len(tf.config.list_logical_devices("CPU")) < count:
            raise ConfigError(
                f"accelerator.logical_cpus={count}: TensorFlow was already initialised in this "
                "process; start a new process to split the CPU"
            ) from None
