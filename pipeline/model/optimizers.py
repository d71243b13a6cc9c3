"""The course's optimizers, by name, with every knob the config sets."""

from __future__ import annotations

from typing import Any


def build(name: str, settings: dict[str, Any]):
    """``keras.optimizers.Adam`` or ``SGD`` with ``settings`` (learning_rate, momentum, ...)."""
    import keras

    return keras.optimizers.Adam(**settings) if name == "adam" else keras.optimizers.SGD(**settings)
