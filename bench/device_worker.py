"""One measurement of the TensorFlow-free device benchmark, in its own process (started by
bench/device.py, not by hand).

    python -m bench.device_worker --rows FILE.jsonl --deadline UNIX_TIME [--probe]
        [--backbone B] [--loss L] [--precision P] [--image-size S] [--batch-size B] ...

KERAS_BACKEND=jax only. The model of `reproduce.models.build_model` and the loss of
`reproduce.losses.build_loss`, compiled as `reproduce.train` compiles them, trained by
Model.fit on synthetic uint8 images and multi-hot labels held in memory (NumPy, seed 0). Appends
one JSON row per measurement to --rows as soon as it is measured, so a crash or an out-of-memory
stop keeps what came before:
  machine     the JAX devices, versions, CPU (--probe: this row only)
  train       build seconds; the first step apart (one Model.fit of one batch: optimizer
              variables, tracing, XLA compilation, the step); then img/s of --epochs timed
              epochs of --steps steps of one more fit, after one untimed epoch
  validation  Model.predict at --val-batch-size: first pass apart (compiling), then img/s
Nothing here imports TensorFlow: reproduce.train, reproduce.data and reproduce.evaluate do.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from common import cli
from common.provenance import cpu_facts

PRECISIONS = {"bf16": "mixed_bfloat16", "fp32": "float32", "fp16": "mixed_float16"}  # Keras dtype policies
POSITIVE_RATE = 0.05  # our choice, about ChestX-ray14's share of positive labels; speed ignores it
NEEDS_VALIDATION_S = 10  # our estimate of a predict compile + passes; not started with less left


class Rows:
    """Appends JSON rows, each with the task's identity, to a file (and echoes them)."""

    def __init__(self, path, deadline: float, where: dict):
        self.path, self.deadline, self.where = Path(path), deadline, where

    def left(self) -> float:
        return self.deadline - time.time()

    def write(self, **row) -> dict:
        row = {**self.where, **row}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
        return row


def is_out_of_memory(err: BaseException) -> bool:
    text = str(err).lower()
    return "resource_exhausted" in text or "resource exhausted" in text or "out of memory" in text


def machine_facts() -> dict:
    import jax
    import keras

    devices = jax.devices()
    try:
        stats = devices[0].memory_stats() or {}
    except (AttributeError, RuntimeError, NotImplementedError):  # CPU devices may have none
        stats = {}
    return {"device_kind": devices[0].device_kind, "platform": devices[0].platform,
            "device_count": len(devices), "memory_bytes_limit": stats.get("bytes_limit"),
            "jax": jax.__version__, "keras": keras.__version__, "keras_backend": keras.backend.backend(),
            "python": platform.python_version(), "platform_os": platform.platform(), **cpu_facts(),
            # JAX takes 75% of GPU memory unless told otherwise: what decides the largest batch.
            **{k: os.environ.get(k) for k in ("XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_PREALLOCATE",
                                              "XLA_FLAGS")}}


def synthetic(n: int, size: int, seed: int = 0):
    """n uint8 gray images [n, size, size, 1] (as the TFRecords give them) and multi-hot labels."""
    from data_prep.schema import NUM_CLASSES

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 1), dtype=np.uint8)
    return images, (rng.random((n, NUM_CLASSES)) < POSITIVE_RATE).astype("float32")


def compile_as_train(model, config, loss):
    """reproduce.train.compile_for_training's model.compile, argument for argument: that module
    imports TensorFlow (tf.data, tf.distribute), which the device does not have.
    tests/bench/test_device.py checks that the two compile alike."""
    import keras

    optimizer = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}[config.optimizer]
    model.compile(optimizer=optimizer(config.learning_rate), loss=loss, run_eagerly=config.run_eagerly,
                  jit_compile={"auto": "auto", "on": True, "off": False}[config.jit_compile],
                  steps_per_execution=config.steps_per_execution)
    model.optimizer.build(model.trainable_variables)  # as compile_for_training: one trace, not two
    return model


def built_model(args):
    """The paper preset at this task's shapes (weights none: offline, and the speed is the same)."""
    import jax
    import keras

    from reproduce.config import paper
    from reproduce.losses import build_loss
    from reproduce.models import build_model

    keras.mixed_precision.set_global_policy(PRECISIONS[args.precision])
    config = paper().override(model=args.backbone, loss=args.loss, weights="none", image_size=args.image_size,
                              batch_size=args.batch_size, val_batch_size=args.val_batch_size)
    model = compile_as_train(build_model(config), config, build_loss(config, None))
    # From here on nothing is written to the shared compilation cache (see bench/device.py): the
    # training and predict steps of this task are compiled, and timed, in full.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1e9)
    return model


def epoch_seconds(model, images, labels, batch_size: int, epochs: int) -> tuple[list[float], float]:
    """Wall seconds of each epoch of one Model.fit, and the last epoch's loss. Epoch hooks only,
    so Keras adds no host sync per step; reading the loss at an epoch's end waits for its last
    step, so the clock stops when the device is done."""
    import keras

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds, self.loss = [], float("nan")

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.loss = float(logs["loss"])
            self.seconds.append(time.perf_counter() - self.start)

    timer = Timer()
    model.fit(images, labels, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0, callbacks=[timer])
    return timer.seconds, timer.loss


def train(args, rows: Rows):
    """Build, the first step alone (one fit of one batch), then 1 + --epochs epochs of one fit."""
    start = time.perf_counter()
    model = built_model(args)
    build_s = time.perf_counter() - start
    images, labels = synthetic(args.steps * args.batch_size, args.image_size)
    start = time.perf_counter()  # the whole call: optimizer variables, tracing, XLA, one step
    epoch_seconds(model, images[:args.batch_size], labels[:args.batch_size], args.batch_size, 1)
    first = time.perf_counter() - start
    seconds, loss = epoch_seconds(model, images, labels, args.batch_size, 1 + args.epochs)
    rates = [len(images) / s for s in seconds[1:]]
    rows.write(part="train", img_s=statistics.median(rates), runs=rates, first_step_s=first,
               warm_epoch_s=seconds[0], build_s=build_s, steps=args.steps, epochs=args.epochs,
               policy=PRECISIONS[args.precision], loss_last=loss)
    return model


def validation(model, args, rows: Rows) -> None:
    """Model.predict of --val-batches batches: one batch first (compiling), then two timed passes."""
    images, _ = synthetic(args.val_batches * args.val_batch_size, args.image_size, seed=1)
    start = time.perf_counter()
    model.predict(images[:args.val_batch_size], batch_size=args.val_batch_size, verbose=0)
    first = time.perf_counter() - start
    rates = []
    for _ in range(2):
        start = time.perf_counter()
        model.predict(images, batch_size=args.val_batch_size, verbose=0)  # NumPy out: the device is done
        rates.append(len(images) / (time.perf_counter() - start))
    rows.write(part="validation", img_s=statistics.median(rates), runs=rates, first_pass_s=first,
               val_batch_size=args.val_batch_size, images=len(images))


def measure(args, rows: Rows) -> None:
    try:
        model = train(args, rows)
    except Exception as err:  # noqa: BLE001 — an out-of-memory or XLA failure is a row, not a crash
        rows.write(part="train", error=cli.one_line(err)[:400], out_of_memory=is_out_of_memory(err))
        return
    if not args.val_batches:
        return
    if rows.left() < NEEDS_VALIDATION_S:
        rows.write(part="validation", skipped=f"time budget: {rows.left():.0f} s left")
        return
    try:
        validation(model, args, rows)
    except Exception as err:  # noqa: BLE001
        rows.write(part="validation", error=cli.one_line(err)[:400], out_of_memory=is_out_of_memory(err))


def build_parser():
    p = cli.make_parser("bench.device_worker", __doc__)
    p.add_argument("--rows", required=True, help="JSON-lines file the rows are appended to")
    p.add_argument("--deadline", type=float, required=True, help="Unix time to be done by")
    p.add_argument("--probe", action="store_true", help="write the machine row only")
    p.add_argument("--cache", help="JAX compilation cache folder shared by the tasks (model building only)")
    p.add_argument("--backbone", default="densenet121", help="the model (reproduce/backbones.py)")
    p.add_argument("--loss", default="wce", help="the loss (reproduce/losses)")
    p.add_argument("--precision", default="fp32", choices=tuple(PRECISIONS), help="Keras dtype policy")
    p.add_argument("--image-size", type=int, default=224, help="image side in pixels")
    p.add_argument("--batch-size", type=int, default=32, help="training batch")
    p.add_argument("--steps", type=int, default=20, help="training steps per timed epoch")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs (after one untimed)")
    p.add_argument("--val-batch-size", type=int, default=128, help="images per predict batch")
    p.add_argument("--val-batches", type=int, default=16, help="predict batches per pass (0: no validation)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if os.environ.get("KERAS_BACKEND") != "jax":
        print(f"error: KERAS_BACKEND=jax is required (got {os.environ.get('KERAS_BACKEND')!r})", file=sys.stderr)
        return 1
    if args.cache:  # set before the first compilation, so that model building reads and writes it
        import jax

        jax.config.update("jax_compilation_cache_dir", args.cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    where = {} if args.probe else {"backbone": args.backbone, "loss": args.loss, "precision": args.precision,
                                   "batch_size": args.batch_size}
    rows = Rows(args.rows, args.deadline, where)
    if args.probe:
        rows.write(part="machine", machine=machine_facts())
        return 0
    measure(args, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
