"""The input pipeline before and after the normalisation moved into the model, side by side: CPU per image, img/s, bytes per image.

before: what `reproduce.data` used to emit — every image normalised on the CPU as the
        pipeline's last per-image map (uint8 gray → float32, gray → RGB, the family's
        keras.applications preprocess_input), then batched: float32 [B, S, S, 3] to the model.
after:  `reproduce.data.endless_training_dataset` as it is: uint8 [B, S, S, 1]; gray → RGB and the
        normalisation are the model's first layer (`models.BackboneInput`), on the accelerator.

"before" is built from today's pipeline (unbatch → the old map → batch again) so that both read,
decode, shuffle and flip identically; the extra unbatch moves uint8 images only (50 KB each).
CPU time is this process's (`time.process_time`: every tf.data thread included) over the same
number of batches, measured alternately on two live iterators so that machine noise hits both.
"""
from __future__ import annotations

import statistics
import time

import tensorflow as tf

from reproduce.data import endless_training_dataset
from reproduce.models import preprocess_fn

GOAL_CPU_RATIO = 4.0  # our goal: at least 4x less CPU per image than the CPU-normalised pipeline at 224²


def cpu_normalise(image, family: str):
    """The old per-image step: uint8 gray [S, S, 1] → float32 [S, S, 3] for the backbone."""
    x = tf.image.grayscale_to_rgb(tf.cast(image, tf.float32))
    return tf.cast(preprocess_fn(family)(x), tf.float32)


def pipelines(data_dir, config) -> dict:
    """{"before": dataset, "after": dataset}, each the first training pass repeated without end."""
    after = endless_training_dataset(data_dir, config)
    before = after.unbatch().map(lambda x, y: (cpu_normalise(x, config.model), y),
                                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    before = before.batch(config.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return {"before": before, "after": after}


def time_batches(iterator, batches: int, batch_size: int) -> dict:
    """CPU ms per image (this process, every thread), img/s, and the images' bytes, dtype and
    batch shape over the next `batches` batches of `iterator` ((images, labels) pairs)."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(batches):
        images, _ = next(iterator)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    n = batches * batch_size
    return {"cpu_ms_per_image": 1000 * cpu / n, "img_s": n / wall,
            "bytes_per_image": images.shape.num_elements() * images.dtype.size // batch_size,
            "dtype": images.dtype.name, "shape": images.shape.as_list()}


def normalisation_ratio(data_dir, config, batches: int, repeats: int, warmup: int = 3) -> dict:
    """CPU ms per image, img/s and bytes per image of both pipelines; medians over `repeats`
    alternating segments of `batches` batches, after `warmup` batches of each."""
    iterators = {name: iter(ds) for name, ds in pipelines(data_dir, config).items()}
    for it in iterators.values():
        for _ in range(warmup):  # shuffle buffer, thread pools, autotuning
            next(it)
    runs = {name: [] for name in iterators}
    for _ in range(repeats):
        for name, it in iterators.items():
            runs[name].append(time_batches(it, batches, config.batch_size))
    result = {}
    for name, segments in runs.items():
        last = segments[-1]
        result[name] = {"cpu_ms_per_image": statistics.median(s["cpu_ms_per_image"] for s in segments),
                        "img_s": statistics.median(s["img_s"] for s in segments),
                        "bytes_per_image": last["bytes_per_image"], "dtype": last["dtype"],
                        "batch_shape": last["shape"],
                        "runs_cpu_ms_per_image": [s["cpu_ms_per_image"] for s in segments]}
    before, after = result["before"], result["after"]
    return {**result, "cpu_ratio": before["cpu_ms_per_image"] / after["cpu_ms_per_image"],
            "img_s_ratio": after["img_s"] / before["img_s"],
            "bytes_ratio": before["bytes_per_image"] / after["bytes_per_image"],
            "goal_cpu_ratio": GOAL_CPU_RATIO, "model": config.model, "image_size": config.image_size,
            "batch_size": config.batch_size, "batches": batches, "repeats": repeats}
