"""`make bench-data`: how fast data_prep.build turns ChestX-ray14 PNGs into 224² TFRecords.

    python -m bench.data --data-dir DIR --out results/bench/data_prep.json [--images N] [--size 224]

On the images of DIR (NIH layout; 1024² PNGs for ChestX-ray14, §IV.A) it measures, in one run:
the build with 1 and 2 workers against a naive single-process PIL open/convert/resize loop over
the same files (images/s and their ratio); the per-image cost of each stage (read, PNG decode,
gray, resize, serialize); and tf.data read throughput of raw vs PNG records (which picks the
default --encoding). Prints the ratios and writes the JSON. Runtime: about 1 s per 10 images.
"""
from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import cli, quiet
from data_prep import images, shards
from data_prep.build import build_dataset, find_label_file, index_images

READ_RECORDS = 4096  # our choice: enough records per read timing to dwarf tf.data start-up
SHARDS_PER_BUILD = 16  # our choice: enough shards that 2 workers get balanced work at any N


def subset_dir(data_dir: Path, n: int, tmp: Path) -> list[Path]:
    """tmp = an NIH-layout copy of DIR's first n labelled, present images (symlinks + CSV lines)."""
    label_file = find_label_file(data_dir)
    opener = gzip.open if label_file.suffix == ".gz" else open
    with opener(label_file, "rt") as fh:
        header, *rows = fh.read().splitlines()
    found = index_images(data_dir)
    rows = [r for r in rows if r.split(",", 1)[0] in found][: n or None]
    (tmp / "images").mkdir(parents=True)
    paths = []
    for row in rows:
        name = row.split(",", 1)[0]
        os.symlink(found[name].resolve(), tmp / "images" / name)
        paths.append(tmp / "images" / name)
    (tmp / "Data_Entry_2017_v2020.csv").write_text("\n".join([header, *rows]) + "\n")
    return paths


def naive_loop(paths, size: int) -> float:
    """The baseline: one process, PIL open -> grayscale -> resize, one file after another."""
    from PIL import Image

    start = time.perf_counter()
    for path in paths:
        with Image.open(path) as img:
            np.asarray(img.convert("L").resize((size, size)))
    return time.perf_counter() - start


def stage_costs(paths, size: int, scratch: Path) -> dict:
    """Mean ms per image of each build stage, one thread (as in a build worker)."""
    import cv2
    import tensorflow as tf

    from data_prep.schema import encode_example

    cv2.setNumThreads(1)
    encode_example(np.zeros((size, size), np.uint8), np.zeros(14), "warm-up", 0)  # TF loaded, untimed
    totals = dict.fromkeys(["read", "png_decode", "gray", "resize", "serialize", "write"], 0.0)
    with tf.io.TFRecordWriter(str(scratch)) as writer:
        for path in paths:
            t = [time.perf_counter()]
            data = images.read_bytes(path)
            t.append(time.perf_counter())
            img = images.decode_image(data, str(path))
            t.append(time.perf_counter())
            gray = images.to_gray_uint8(img, str(path))
            t.append(time.perf_counter())
            small = images.resize_square(gray, size)
            t.append(time.perf_counter())
            record = encode_example(small, np.zeros(14), path.name, 0, "raw")
            t.append(time.perf_counter())
            writer.write(record)
            t.append(time.perf_counter())
            for key, a, b in zip(totals, t, t[1:]):
                totals[key] += b - a
    return {k: 1000 * v / len(paths) for k, v in totals.items()}


def timed_build(src: Path, out: Path, size: int, workers: int, encoding: str, per_shard: int) -> float:
    start = time.perf_counter()
    build_dataset(src, out, size=size, workers=workers, encoding=encoding, images_per_shard=per_shard)
    return time.perf_counter() - start


def steady_rate(out: Path) -> float | None:
    """Images/s between the first and the last shard completion (from the mtimes of the shard
    notes in OUT/.build/): the build's rate without worker start-up or the final manifest."""
    notes = sorted((p.stat().st_mtime_ns, json.loads(p.read_text())["records"])
                   for p in (out / shards.BUILD_DIR).glob("*.tfrecord.json"))
    if len(notes) < 2 or notes[-1][0] == notes[0][0]:
        return None
    return sum(n for _, n in notes[1:]) / ((notes[-1][0] - notes[0][0]) / 1e9)


def pool_startup(workers: int) -> float:
    """Seconds to spawn `workers` build workers (each loads TensorFlow) and run one no-op each."""
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(workers, initializer=shards._init_worker) as pool:
        pool.map(abs, range(workers))
    return time.perf_counter() - start


def read_throughput(out: Path, encoding: str, size: int) -> dict:
    """tf.data images/s reading OUT's shards: parse + decode, batched by 32 (§IV.B minibatch)."""
    import tensorflow as tf

    from data_prep.schema import parse_example

    files = sorted(str(p) for p in out.glob("*.tfrecord"))
    n = sum(1 for _ in tf.data.TFRecordDataset(files))
    ds = (tf.data.TFRecordDataset(files).repeat(-(-READ_RECORDS // n))
          .map(lambda r: parse_example(r, encoding, size)["image"], num_parallel_calls=tf.data.AUTOTUNE)
          .batch(32).prefetch(tf.data.AUTOTUNE))
    for _ in ds.take(1):  # warm-up: graph tracing, file open
        pass
    start, count = time.perf_counter(), 0
    for batch in ds:
        count += int(batch.shape[0])
    seconds = time.perf_counter() - start
    return {"images_per_s": count / seconds, "bytes_per_record": sum(os.path.getsize(f) for f in files) / n}


def run_bench(data_dir: Path, n: int, size: int, tmp: Path) -> dict:
    paths = subset_dir(data_dir, n, tmp / "src")
    n = len(paths)
    if n == 0:
        raise images.ImageError(f"{data_dir}: no labelled images found")
    for path in paths:  # page cache warm for every contender alike: we time decoding, not the disk
        path.read_bytes()
    per_shard = max(1, -(-n // SHARDS_PER_BUILD))
    naive_s = naive_loop(paths, size)
    stages = stage_costs(paths, size, tmp / "stages.tfrecord")
    w1_s = timed_build(tmp / "src", tmp / "w1", size, 1, "raw", per_shard)
    startup_s = pool_startup(2)
    w2_s = timed_build(tmp / "src", tmp / "w2", size, 2, "raw", per_shard)
    png_s = timed_build(tmp / "src", tmp / "png", size, 1, "png", per_shard)
    read = {enc: read_throughput(tmp / d, enc, size) for enc, d in (("raw", "w1"), ("png", "png"))}
    steady = {w: steady_rate(tmp / w) for w in ("w1", "w2")}
    return {
        "images": n, "input_shape": list(images.decode_image(paths[0].read_bytes(), "").shape),
        "size": size, "images_per_shard": per_shard, "cpu_count": os.cpu_count(),
        "naive_pil": {"seconds": naive_s, "images_per_s": n / naive_s},
        "build_1_worker": {"seconds": w1_s, "images_per_s": n / w1_s, "steady_images_per_s": steady["w1"]},
        "build_2_workers": {"seconds": w2_s, "images_per_s": n / w2_s, "pool_startup_s": startup_s,
                            "steady_images_per_s": steady["w2"]},
        "build_1_worker_png": {"seconds": png_s, "images_per_s": n / png_s},
        "speedup_1_worker_vs_naive": naive_s / w1_s,
        "speedup_1_worker_vs_naive_steady": steady["w1"] * naive_s / n if steady["w1"] else None,
        "scaling_2_vs_1_workers": w1_s / w2_s,
        "scaling_2_vs_1_workers_steady": (steady["w2"] / steady["w1"]) if all(steady.values()) else None,
        "stage_ms_per_image": stages,
        "png_decode_share": stages["png_decode"] / sum(stages.values()),
        "read": {**read, "raw_over_png": read["raw"]["images_per_s"] / read["png"]["images_per_s"]},
    }


def build_parser():
    parser = cli.make_parser("bench.data", __doc__)
    parser.add_argument("--data-dir", required=True, help="NIH layout: label CSV + images/")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--images", type=int, default=0, help="first N labelled images (0 = all)")
    parser.add_argument("--size", type=int, default=224, help='§IV.B "downscaled the images to 224×224"')
    return parser


def print_summary(result: dict, size: int) -> None:
    stages = ", ".join(f"{k} {v:.2f}" for k, v in result["stage_ms_per_image"].items())
    print(f"{result['images']} images {result['input_shape']} -> {size}²")
    print(f"build 1 worker {result['build_1_worker']['images_per_s']:.1f} img/s vs naive PIL "
          f"{result['naive_pil']['images_per_s']:.1f} img/s: {result['speedup_1_worker_vs_naive']:.2f}× "
          f"end to end, {result['speedup_1_worker_vs_naive_steady'] or float('nan'):.2f}× between "
          "first and last shard")
    steady = result["scaling_2_vs_1_workers_steady"]
    print(f"2 workers / 1 worker: {result['scaling_2_vs_1_workers']:.2f}× end to end, "
          f"{steady if steady is None else f'{steady:.2f}×'} between first and last shard "
          f"(worker start-up {result['build_2_workers']['pool_startup_s']:.1f} s)")
    print(f"ms per image: {stages}; PNG decode share {result['png_decode_share']:.0%}")
    print(f"tf.data read raw {result['read']['raw']['images_per_s']:.0f} img/s, png "
          f"{result['read']['png']['images_per_s']:.0f} img/s: "
          f"raw/png {result['read']['raw_over_png']:.2f}×")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        quiet.start_tensorflow()  # the build writes TFRecords
        with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
            result = run_bench(Path(args.data_dir), args.images, args.size, Path(tmp))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print_summary(result, args.size)
        print(f"wrote {args.out}")

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
