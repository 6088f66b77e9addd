"""One task of the GPU benchmark, in its own process (started by bench/gpu.py, not by hand).

    python -m bench.gpu_worker {input,single,mirrored} --data SHARDS --rows FILE.jsonl
        --deadline UNIX_TIME [--backbone B] [--mode M] [--tiny]

Appends one JSON row per measurement to --rows as soon as it is measured, so what was measured
survives a crash, an out-of-memory stop or the parent's time limit. A measurement that would not
finish before --deadline is skipped (a row saying so); one that fails writes its error.
  input     the training input pipeline alone (reproduce.data, paper preset, no model)
  single    --backbone B: Model.fit img/s in each MODE, then validation img/s in the best one
  mirrored  --backbone B --mode M: --distribute mirrored over every visible GPU, XLA off (Keras'
            "auto" turns it off under tf.distribute), global batch 32, then doubling the batch
            per replica until it does not fit (or the cap)
"""
from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path

from common import quiet

quiet.start_tensorflow()  # a program: TensorFlow's start-up lines stay off the terminal

import keras
import tensorflow as tf

from bench.pipeline import time_batches
from common import cli
from bench.timing import compiled_model, fit_seconds, machine_facts
from reproduce.engine import distribute
from reproduce.config import paper
from reproduce.data import endless_training_dataset, make_eval_dataset, read_manifest, split_size
from reproduce.engine.inference import compiled_forward, predict_split

# mode -> (mixed precision, jit_compile)
MODES = {"fp32": (False, "off"), "mixed": (True, "off"), "mixed_xla": (True, "on")}
# Our estimates of the seconds a measurement needs on an H100-class GPU (tracing or XLA
# compilation included): one is started only with at least this much time left.
NEEDS = {"fp32": 40, "mixed": 40, "mixed_xla": 90, "validation": 30, "mirrored": 60, "input": 10}
PER_REPLICA_CAP = 512  # our choice: largest per-replica batch tried (224², 80+ GB GPUs)


def bench_config(args, model: str = "tiny"):
    """The paper preset at its shapes (224², batch 32; --tiny: 32², batch 8, the tiny CNN)."""
    config = paper().override(weights="none", epochs=1, steps_per_epoch=args.steps)
    if args.tiny:
        return config.override(model="tiny", image_size=32, batch_size=8, val_batch_size=32,
                               shuffle_buffer=64)
    return config.override(model=model)


class Rows:
    """The JSON-lines file of this task's measurements, and the deadline they must meet."""

    def __init__(self, path, deadline: float, base: dict):
        self.path, self.deadline, self.base = Path(path), deadline, base

    def left(self) -> float:
        return self.deadline - time.time()

    def write(self, **row) -> dict:
        row = {**self.base, **row}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
        return row

    def skip_if_late(self, need: str, **where) -> bool:
        if self.left() >= NEEDS[need]:
            return False
        self.write(**where, skipped=f"time budget: {self.left():.0f} s left, ~{NEEDS[need]} s needed")
        return True


def is_out_of_memory(err: Exception) -> bool:
    text = str(err).lower()
    return isinstance(err, tf.errors.ResourceExhaustedError) or "out of memory" in text or \
        "resource_exhausted" in text or "resource exhausted" in text


def one_line(err: Exception) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"


def train_rate(config, manifest, data, steps: int, epochs: int, replicas: int = 1) -> tuple[keras.Model, dict]:
    """A model compiled as reproduce.train compiles it, and its fit img/s (first epoch untimed)."""
    start = time.perf_counter()
    model = compiled_model(config, manifest, replicas=replicas)
    seconds = fit_seconds(model, data, steps, timed_epochs=epochs)
    rates = [steps * config.batch_size / s for s in seconds[1:]]
    return model, {"img_s": statistics.median(rates), "runs": rates, "first_epoch_s": seconds[0],
                   "build_s": time.perf_counter() - start - sum(seconds), "batch_size": config.batch_size,
                   "steps": steps}


def validation_rate(model, config, data_dir, jit: bool, min_images: int) -> dict:
    """img/s of the validation path of reproduce.train: make_eval_dataset batches of
    config.val_batch_size through evaluate.compiled_forward (one pass first: tracing, and an
    XLA compilation per batch shape), over the training split's records (a small phantom's
    validation split holds too few), repeated to at least `min_images`."""
    forward = compiled_forward(model, jit_compile=jit)
    records = split_size(read_manifest(data_dir), "train")
    passes = max(1, math.ceil(min_images / records))
    start = time.perf_counter()
    predict_split(make_eval_dataset(data_dir, "train", config), forward)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    labels, _, _, _ = predict_split(make_eval_dataset(data_dir, "train", config).repeat(passes), forward)
    return {"img_s": len(labels) / (time.perf_counter() - start), "images": len(labels),
            "val_batch_size": config.val_batch_size, "first_pass_s": compile_s, "xla": jit}


def single(args, rows: Rows) -> None:
    """Each MODE in turn (fp32, mixed, mixed + XLA), then validation in the fastest."""
    config = bench_config(args, args.backbone)
    distribute.configure_devices(config)
    manifest = read_manifest(args.data)
    data = endless_training_dataset(args.data, config)
    rows.write(machine=machine_facts())
    models, rates = {}, {}
    for mode, (mixed, jit) in MODES.items():
        if rows.skip_if_late(mode, mode=mode):
            continue
        keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
        try:
            models[mode], row = train_rate(config.override(mixed_precision=mixed, jit_compile=jit),
                                           manifest, data, args.steps, args.epochs)
            rates[mode] = row["img_s"]
            rows.write(mode=mode, mixed_precision=mixed, jit_compile=jit, **row)
        except Exception as err:  # noqa: BLE001 — an XLA or memory failure costs this mode only
            rows.write(mode=mode, error=one_line(err), out_of_memory=is_out_of_memory(err))
        finally:
            keras.mixed_precision.set_global_policy("float32")
    if not rates:
        return
    best = max(rates, key=rates.get)
    rows.write(best_mode=best)
    if rows.skip_if_late("validation", mode="validation"):
        return
    try:
        row = validation_rate(models[best], config, args.data, MODES[best][1] == "on",
                              min_images=64 if args.tiny else 4096)
        rows.write(mode="validation", of_mode=best, **row)
    except Exception as err:  # noqa: BLE001
        rows.write(mode="validation", of_mode=best, error=one_line(err))


def mirrored(args, rows: Rows) -> None:
    """--distribute mirrored in --mode without XLA: global batch 32, then larger batches."""
    mixed = MODES[args.mode][0]
    config = bench_config(args, args.backbone).override(
        distribute="mirrored", mixed_precision=mixed, jit_compile="off",
        cpu_replicas=2 if args.tiny else 0)  # --tiny: two logical CPUs stand in for two GPUs
    distribute.configure_devices(config)
    strategy = distribute.make_strategy("mirrored")
    replicas = strategy.num_replicas_in_sync
    manifest = read_manifest(args.data)
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    cap = 2 * config.batch_size if args.tiny else PER_REPLICA_CAP
    batches = [config.batch_size] + [replicas * b for b in _doubling(config.batch_size, cap)
                                     if replicas * b > config.batch_size]
    with strategy.scope():
        for batch in batches:
            where = {"mode": "mirrored", "of_mode": args.mode, "replicas": replicas, "batch_size": batch}
            if batch % replicas:
                rows.write(**where, skipped=f"batch {batch} is not divisible by {replicas} replicas")
                continue
            if rows.skip_if_late("mirrored", **where):
                return
            sized = config.override(batch_size=batch)
            try:
                _, row = train_rate(sized, manifest, endless_training_dataset(args.data, sized),
                                    args.steps, args.epochs, replicas=replicas)
                rows.write(**{**where, **row})
            except Exception as err:  # noqa: BLE001 — out of memory ends the search
                rows.write(**where, error=one_line(err), out_of_memory=is_out_of_memory(err))
                return


def _doubling(start: int, cap: int) -> list[int]:
    """start·2, start·4, … up to cap (per-replica batch sizes to try)."""
    sizes, b = [], start * 2
    while b <= cap:
        sizes.append(b)
        b *= 2
    return sizes


def input_only(args, rows: Rows) -> None:
    """The training pipeline alone at the paper preset's settings (no cache, shuffle, flip)."""
    config = bench_config(args, "densenet121")
    it = iter(endless_training_dataset(args.data, config))
    for _ in range(5):  # the shuffle buffer, thread pools, autotuning
        next(it)
    batches = 20 if args.tiny else 300
    rows.write(mode="input", batches=batches, batch_size=config.batch_size,
               image_size=config.image_size, **time_batches(it, batches, config.batch_size))


def build_parser():
    p = cli.make_parser("bench.gpu_worker", __doc__)
    p.add_argument("task", choices=("input", "single", "mirrored"), help="what to measure")
    p.add_argument("--data", required=True, metavar="SHARDS", help="TFRecord folder (data_prep.build)")
    p.add_argument("--rows", required=True, help="JSON-lines file the rows are appended to")
    p.add_argument("--deadline", type=float, required=True, help="Unix time to be done by")
    p.add_argument("--backbone", default="densenet121", help="single/mirrored: the model")
    p.add_argument("--mode", default="mixed", choices=tuple(MODES), help="mirrored: precision of")
    p.add_argument("--steps", type=int, default=25, help="fit steps per epoch")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs after the untimed first")
    p.add_argument("--tiny", action="store_true", help="CPU dry run: tiny CNN, 32², batch 8")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    rows = Rows(args.rows, args.deadline, {"task": args.task, "backbone": args.backbone})
    {"input": input_only, "single": single, "mirrored": mirrored}[args.task](args, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
