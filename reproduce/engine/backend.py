"""Which Keras 3 backend runs the model, and what each one can and cannot do here.

The model (reproduce.models) and every loss (reproduce/losses) use only
`keras.ops`, so they run on TensorFlow (the default) and on JAX (`KERAS_BACKEND=jax`, set before
Keras is imported). The input pipeline stays tf.data under every backend (Keras 3 iterates a
tf.data.Dataset as NumPy batches under JAX), so the same TFRecords and the same data order serve
both. What is TensorFlow-only is refused on JAX with one line naming the option, never ignored:
tf.distribute (--distribute mirrored/multiworker, --cpu-replicas) and Grad-CAM's GradientTape.
"""
from __future__ import annotations

import os
import sys


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


def gpu_count() -> int:
    """How many GPUs the backend's runtime sees (under CUDA_VISIBLE_DEVICES, if set)."""
    if is_tensorflow():
        import tensorflow as tf

        return len(tf.config.list_physical_devices("GPU"))
    if name() == "jax":
        import jax

        return sum(d.platform == "gpu" for d in jax.devices())
    return 0


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


def keep_tensorflow_off_gpus() -> None:
    """Under a Keras backend other than TensorFlow, TensorFlow only reads the TFRecords: hide the
    GPUs from it before its runtime starts, so that it takes none of the memory the backend
    needs. The one place this is done; `engine.training.train` (through `prepare`) and
    `engine.inference.load_checkpoint` call it first, and every program builds or loads its
    model through them (tests/reproduce/engine/test_backend.py). A
    TensorFlow already started with GPUs visible keeps them: one warning line says so."""
    global _GPUS_HIDDEN
    if _GPUS_HIDDEN or is_tensorflow() or "tensorflow" not in sys.modules:
        return  # nothing to hide from (the TensorFlow-free GPU benchmark never imports it)
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TensorFlow's runtime already started in this process
        if tf.config.get_visible_devices("GPU"):
            print(f"warning: TensorFlow started before the GPUs could be hidden from it; it may "
                  f"hold GPU memory that {name()} needs", file=sys.stderr)
    _GPUS_HIDDEN = True


_GPUS_HIDDEN = False


def prepare(config) -> None:
    """Before the backend's runtime starts: under JAX, keep TensorFlow off the GPUs
    (`keep_tensorflow_off_gpus`); and with config.deterministic ask XLA for deterministic GPU
    kernels (XLA on a CPU is deterministic)."""
    if is_tensorflow():
        return
    keep_tensorflow_off_gpus()
    flag = "--xla_gpu_deterministic_ops=true"
    if config.deterministic and flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
