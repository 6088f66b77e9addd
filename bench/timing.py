"""What the training benchmarks share: the machine's facts, the model compiled as `reproduce.train`
compiles it, and Model.fit img/s timed without adding a host sync per step.

Timing is per epoch (`EpochTimer`): a callback with a batch-end hook makes Keras convert the logs
to Python after every step, i.e. wait for the device, which would hide exactly what
steps_per_execution and an asynchronous accelerator save. Epoch ends are a sync point anyway (the
epoch's logs are read), so one fit of 1 + R epochs of `steps` steps gives R clean timings: the
first epoch takes the graph tracing or XLA compilation, the iterator start-up and the shuffle
buffer filling, and is left out. With steps_per_epoch set, Keras keeps one iterator across the
epochs of a fit, so the timed epochs start with a warm pipeline.
"""
from __future__ import annotations

import os
import platform
import time

import keras
import tensorflow as tf

from common.provenance import cpu_facts
from reproduce.data import check_execution_chunks
from reproduce.losses import build_loss
from reproduce.models import build_model
from reproduce.engine.training import compile_for_training


def machine_facts() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(), **cpu_facts(),
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
            # Other jobs on the machine make every number noisy: the load when this was written.
            "load_average_1_5_15_min": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def compiled_model(config, manifest: dict, replicas: int = 1) -> keras.Model:
    """build_model + the loss, compiled by `reproduce.train.compile_for_training`, exactly as a
    run is (the caller enters a strategy scope and sets the precision policy first)."""
    return compile_for_training(build_model(config, replicas=replicas), config, build_loss(config, manifest))


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds of every epoch of one fit; epoch hooks only (see the module docstring)."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def fit_seconds(model, dataset, steps: int, timed_epochs: int = 1) -> list[float]:
    """Wall seconds of each epoch of one fit of 1 + `timed_epochs` epochs of `steps` steps (the
    first one untimed by the callers). `steps` must be a multiple of the model's
    steps_per_execution (Keras would otherwise run a whole last execution past the epoch's end)."""
    check_execution_chunks(steps, getattr(model, "steps_per_execution", 1) or 1)
    timer = EpochTimer()
    model.fit(dataset, epochs=1 + timed_epochs, steps_per_epoch=steps, verbose=0, shuffle=False,
              callbacks=[timer])
    return timer.seconds


def fit_rates(model, dataset, steps: int, batch_size: int, timed_epochs: int = 1) -> list[float]:
    """img/s of each of `timed_epochs` epochs, after one untimed epoch of the same fit."""
    return [steps * batch_size / s for s in fit_seconds(model, dataset, steps, timed_epochs)[1:]]
