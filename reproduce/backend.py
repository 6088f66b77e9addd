"""Which Keras 3 backend runs the model, and what each one can and cannot do here.

The model (reproduce.models) and every loss (reproduce.losses, reproduce.study.readings) use only
`keras.ops`, so they run on TensorFlow (the default) and on JAX (`KERAS_BACKEND=jax`, set before
Keras is imported). The input pipeline stays tf.data under every backend (Keras 3 iterates a
tf.data.Dataset as NumPy batches under JAX), so the same TFRecords and the same data order serve
both. What is TensorFlow-only is refused on JAX with one line naming the option, never ignored:
tf.distribute (--distribute mirrored/multiworker, --cpu-replicas) and Grad-CAM's GradientTape.
"""
from __future__ import annotations

import os


class UnsupportedOnBackend(RuntimeError):
    """An option this Keras backend cannot honour; one-line message naming it."""


def name() -> str:
    """The Keras backend in use ('tensorflow', 'jax', ...)."""
    import keras

    return keras.backend.backend()


def is_tensorflow() -> bool:
    return name() == "tensorflow"


def accelerator_present() -> bool:
    """A GPU that the backend's own runtime can use."""
    if is_tensorflow():
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if name() == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    return False


def check_supported(config) -> None:
    """UnsupportedOnBackend for a setting this backend cannot run (before anything starts)."""
    if is_tensorflow():
        return
    if config.distribute != "none":
        raise UnsupportedOnBackend(
            f"--distribute {config.distribute} uses tf.distribute and needs KERAS_BACKEND=tensorflow "
            f"(Keras backend here: {name()}); train on one device with --distribute none")
    if config.cpu_replicas:
        raise UnsupportedOnBackend(
            f"--cpu-replicas splits TensorFlow's CPU into logical devices and needs "
            f"KERAS_BACKEND=tensorflow (Keras backend here: {name()})")


def prepare(config) -> None:
    """Before the backend's runtime starts: under JAX, keep TensorFlow (which only reads the
    TFRecords) off the GPUs, so that it does not take their memory; and with
    config.deterministic ask XLA for deterministic GPU kernels (XLA on a CPU is deterministic)."""
    if is_tensorflow():
        return
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TensorFlow already started in this process: whatever was set stays
        pass
    flag = "--xla_gpu_deterministic_ops=true"
    if config.deterministic and flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
