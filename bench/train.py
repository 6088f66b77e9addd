"""Training-speed benchmark (`make bench-train`): does the input pipeline keep the model fed?

    python -m bench.train --data OUT --images-dir PHANTOM_DIR --out results/bench/train.json

(1) Model.fit img/s reading TFRecords through the full reproduce.data pipeline, against Model.fit
    on the same images already in memory (this machine's ceiling for that model): ratio, goal
    >= 0.95. Measured in one process, alternating, warm-up (graph tracing) excluded.
(2) The input pipeline alone (no model) against a keras.utils.PyDataset that opens and resizes
    the original 1024² PNGs on every pass, the way the well-known Keras CheXNet re-implementation
    feeds its model: ratio, goal >= 20.
Defaults (densenet121 at 64², batch 32, 16 timed steps ×2) take about 3–4 minutes on 2 CPU
cores, half of it the one-off graph tracing of DenseNet121.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import keras
import numpy as np
import tensorflow as tf

from data_prep import cli
from data_prep.build import find_label_file
from data_prep.labels import label_matrix, read_label_file
from reproduce.config import demo
from reproduce.data import training_dataset
from reproduce.loss_registry import build_loss
from reproduce.models import build_model

GOALS = {"training_ratio": 0.95, "input_ratio": 20.0}  # our targets (the paper reports no speeds)


def machine_facts() -> dict:
    cpu = "unknown"
    if Path("/proc/cpuinfo").exists():
        names = [l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                 if l.startswith("model name")]
        cpu = names[0] if names else cpu
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS")}


class _StepTimer(keras.callbacks.Callback):
    """Times the steps after the first `skip` of one fit: leaves out iterator start-up (the
    shuffle buffer filling) and any remaining tracing."""

    def __init__(self, skip: int):
        super().__init__()
        self.skip, self.start, self.end = skip, None, None

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.skip - 1:
            self.start = time.perf_counter()

    def on_train_end(self, logs=None):
        self.end = time.perf_counter()


def _pipeline(data_dir, config, steps: int = 1 << 30):
    """The training input pipeline as `reproduce.train` builds it, one epoch that repeats the
    records for as many steps as a benchmark takes."""
    return training_dataset(data_dir, config.override(epochs=1), steps)


def _fit_rate(model, dataset, steps: int, batch_size: int, skip: int = 2) -> float:
    timer = _StepTimer(skip)
    model.fit(dataset, epochs=1, steps_per_epoch=skip + steps, verbose=0, shuffle=False,
              callbacks=[timer])
    return steps * batch_size / (timer.end - timer.start)


def training_ratio(data_dir, config, steps: int, warmup: int, repeats: int) -> dict:
    """Fit img/s: TFRecord pipeline vs the same steps*batch images as in-memory tensors."""
    pipeline = _pipeline(data_dir, config)
    images, labels = [], []
    for x, y in pipeline.take(steps):
        images.append(x.numpy())
        labels.append(y.numpy())
    memory = tf.data.Dataset.from_tensor_slices((np.concatenate(images), np.concatenate(labels)))
    memory = memory.batch(config.batch_size).cache().repeat().prefetch(tf.data.AUTOTUNE)
    model = build_model(config)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=build_loss(config),
                  jit_compile=config.jit_compile)
    for ds in (pipeline, memory):  # warm-up: tracing, oneDNN kernel choice, caches
        model.fit(ds, epochs=1, steps_per_epoch=warmup, verbose=0, shuffle=False)
    rates = {"pipeline": [], "memory": []}
    for _ in range(repeats):  # alternate, so that machine noise hits both alike
        rates["pipeline"].append(_fit_rate(model, pipeline, steps, config.batch_size))
        rates["memory"].append(_fit_rate(model, memory, steps, config.batch_size))
    pipe, mem = statistics.median(rates["pipeline"]), statistics.median(rates["memory"])
    return {"pipeline_img_s": pipe, "in_memory_img_s": mem, "ratio": pipe / mem,
            "runs": rates, "goal": GOALS["training_ratio"]}


class PngSequence(keras.utils.PyDataset):
    """Opens and resizes the original PNGs every time a batch is asked for (the baseline)."""

    def __init__(self, paths, labels, config):
        super().__init__()
        self.paths, self.labels, self.config = paths, labels, config

    def __len__(self):
        return len(self.paths) // self.config.batch_size

    def __getitem__(self, index):
        b, s = self.config.batch_size, self.config.image_size
        rows = range(index * b, (index + 1) * b)
        gray = [cv2.resize(cv2.imread(str(self.paths[i]), cv2.IMREAD_GRAYSCALE), (s, s),
                           interpolation=cv2.INTER_AREA) for i in rows]
        return np.stack(gray)[..., None], self.labels[list(rows)]


def _rate(batches, n: int, warmup: int, batch_size: int) -> float:
    it = iter(batches)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(n):
        next(it)
    return n * batch_size / (time.perf_counter() - start)


def input_ratio(data_dir, images_dir, config, n_batches: int, png_batches: int) -> dict:
    pipeline = _pipeline(data_dir, config)
    tf_rate = _rate(pipeline, n_batches, 2, config.batch_size)
    df = read_label_file(find_label_file(Path(images_dir)))
    need = (png_batches + 1) * config.batch_size
    paths = [Path(images_dir) / "images" / name for name in df["image_index"][:need]]
    if len(paths) < need or not all(p.is_file() for p in paths):
        raise FileNotFoundError(f"{images_dir}/images: need {need} PNGs listed in its label file")
    seq = PngSequence(paths, label_matrix(df.iloc[:need]).astype(np.float32), config)
    png_rate = _rate((seq[i] for i in range(len(seq))), png_batches, 1, config.batch_size)
    return {"tfrecord_pipeline_img_s": tf_rate, "png_pydataset_img_s": png_rate,
            "ratio": tf_rate / png_rate, "goal": GOALS["input_ratio"]}


def build_parser():
    p = cli.make_parser("bench.train", __doc__)
    p.add_argument("--data", required=True, help="TFRecord folder (data_prep.build)")
    p.add_argument("--images-dir", help="folder with images/ and the label file (part 2)")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--model", default="densenet121", help="backbone to time")
    p.add_argument("--image-size", type=int, default=64, help="input size (the demo's)")
    p.add_argument("--batch-size", type=int, default=32, help='§IV.B "32 minibatch size"')
    p.add_argument("--steps", type=int, default=16, help="timed fit steps per measurement")
    p.add_argument("--warmup", type=int, default=2, help="untimed fit steps (tracing)")
    p.add_argument("--repeats", type=int, default=2, help="alternating repeats of each measurement")
    p.add_argument("--input-batches", type=int, default=30, help="batches timed through tf.data")
    p.add_argument("--png-batches", type=int, default=3, help="batches timed through the PNG baseline")
    p.add_argument("--cache", action="store_true", help="cache decoded records (off: read every step)")
    p.add_argument("--jit-compile", action="store_true", help="XLA (GPU: usually faster)")
    p.add_argument("--mixed-precision", action="store_true", help="mixed_float16 (GPU)")
    p.add_argument("--skip-input", action="store_true", help="only part (1); no --images-dir needed")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.mixed_precision:  # before the model is built; Keras adds loss scaling itself
        keras.mixed_precision.set_global_policy("mixed_float16")

    def body():
        config = demo().override(model=args.model, image_size=args.image_size, batch_size=args.batch_size,
                                 steps_per_epoch=args.steps, cache=args.cache, run_eagerly=False,
                                 jit_compile=args.jit_compile)
        train = training_ratio(args.data, config, args.steps, args.warmup, args.repeats)
        inputs = None
        if not args.skip_input:
            if not args.images_dir:
                raise ValueError("--images-dir is required unless --skip-input")
            inputs = input_ratio(args.data, args.images_dir, config, args.input_batches, args.png_batches)
        result = {"machine": machine_facts(), "config": config.to_dict(),
                  "mixed_precision": args.mixed_precision, "training": train, "input": inputs}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"training {config.model} {config.image_size}² batch {config.batch_size}: pipeline "
              f"{train['pipeline_img_s']:.1f} img/s, in memory {train['in_memory_img_s']:.1f} img/s, "
              f"ratio {train['ratio']:.3f} (goal >= {GOALS['training_ratio']})")
        if inputs is not None:
            print(f"input only: TFRecords {inputs['tfrecord_pipeline_img_s']:.0f} img/s, PNG PyDataset "
                  f"{inputs['png_pydataset_img_s']:.1f} img/s, ratio {inputs['ratio']:.1f}x "
                  f"(goal >= {GOALS['input_ratio']:.0f}x)")
        print(f"wrote {args.out}")

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
