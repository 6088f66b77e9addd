"""The tf.data input pipeline: TFRecord shards (+ manifest.json) → batches of uint8 images.

Records are parsed with `data_prep.schema.parse_example`, the one schema the writer also uses.
Training, per epoch, in order (§IV.B):
  read               the records `reproduce.epoch_order` gives the epoch: shard files in an order
                     shuffled per (seed, pass), read CYCLE at a time round robin; with
                     --steps-per-epoch, each epoch continues the stream where the last stopped
  decode_and_resize  uint8 [S, S, 1]; resized only when config.image_size ≠ the stored size
                     (config.cache: decoded once into memory, then read by record id: the same
                     records in the same order, only faster for small sets)
  shuffle            through config.shuffle_buffer records, seeded by (config.seed, epoch)
  augment            random horizontal flip, seeded by (seed, epoch, position)
                     (§IV.B "Random horizontal flipping was performed as data augmentation")
then whole batches and prefetch. Images leave the pipeline as uint8 gray: gray → RGB and the
backbone's ImageNet normalisation are the model's first layer (`models.BackboneInput`), so they run
on the accelerator and 50 KB per 224² image is moved instead of 602 KB of float32.

Training data is a function of (config.seed, epoch) only (`training_dataset`): a resumed run sees
exactly the batches the uninterrupted run saw from its resume epoch on, and opening the dataset
again (Keras peeks at one batch before a distributed fit) repeats it instead of moving on.
Training batches are whole: a partial last batch would be split unevenly over replicas and weigh
its images differently than one device does (our choice; without --steps-per-epoch the records
left over differ every pass, at most batch_size − 1 of ~78k).
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from data_prep.shards import count_records
from data_prep.schema import NUM_CLASSES, SHARD_GLOB, SPLITS, parse_example
from reproduce import epoch_order

MANIFEST = "manifest.json"
# Epoch e's seeds are (seed · EPOCH_STRIDE + e, position): distinct for every epoch below 2^20.
EPOCH_STRIDE = 1 << 20


class ManifestError(ValueError):
    """manifest.json (or a shard it lists) is missing or invalid; the message names the file."""


def read_manifest(data_dir) -> dict:
    """OUT/manifest.json as written by data_prep.build, after checking every listed shard exists."""
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        raise ManifestError(f"{path}: not found (build the shards with python -m data_prep.build)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise ManifestError(f"{path}: expected a JSON object")
    for key in ("size", "encoding", "splits"):
        if key not in manifest:
            raise ManifestError(f"{path}: missing key {key!r}")
    for split, info in manifest["splits"].items():
        for shard in info.get("shards", []):
            if not (Path(data_dir) / shard["file"]).is_file():
                raise ManifestError(f"{Path(data_dir) / shard['file']}: shard of split {split!r} "
                                    f"listed in {path} is missing")
    return manifest


def shard_entries(data_dir, split: str, manifest: dict) -> list[dict]:
    """The split's shards as listed in the manifest ({file: path, records}), in manifest order;
    a manifest without shard lists: the files matching SHARD_GLOB, sorted (records unknown)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    info = manifest["splits"].get(split)
    if info is None:
        raise ManifestError(f"{Path(data_dir) / MANIFEST}: no split {split!r}")
    if "shards" in info:
        entries = [{"file": str(Path(data_dir) / s["file"]), "records": int(s["records"])}
                   for s in info["shards"]]
    else:
        entries = [{"file": str(p), "records": None}
                   for p in sorted(Path(data_dir).glob(SHARD_GLOB.format(split=split)))]
    if not entries:
        raise ManifestError(f"{Path(data_dir) / MANIFEST}: split {split!r} has no shards")
    return entries


def shard_files(data_dir, split: str, manifest: dict) -> list[str]:
    return [e["file"] for e in shard_entries(data_dir, split, manifest)]


def split_size(manifest: dict, split: str) -> int:
    """Number of records of a split (for steps per epoch)."""
    info = manifest["splits"][split]
    if info.get("shards"):  # what was written (images skipped with --skip-bad are not in it)
        return sum(int(s["records"]) for s in info["shards"])
    return int(info["images"])


def decode_and_resize(serialized, encoding: str, stored_size: int, image_size: int) -> dict:
    """One record → {image uint8 [S, S, 1], labels float32 [14], image_index, patient_id}.

    Resized only when image_size ≠ stored_size (§IV.B "downscaled the images to 224×224"; the
    build already stores them at that size). Our choice of method: "area" when shrinking (it
    averages, no aliasing, like cv2.INTER_AREA in the build), bilinear when enlarging; rounded
    back to uint8 so that what is cached stays small.
    """
    ex = parse_example(serialized, encoding, stored_size)
    if image_size != stored_size:
        method = "area" if image_size < stored_size else "bilinear"
        image = tf.image.resize(ex["image"], [image_size, image_size], method=method)
        ex["image"] = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
    return ex


def augment(image, seed):
    """Random horizontal flip of one image [H, W, C], decided by a stateless `seed` (shape [2]).

    §IV.B: flip is the only augmentation and is applied in training only. The same seed always
    gives the same decision (eagerly and in tf.data)."""
    return tf.image.stateless_random_flip_left_right(image, seed)


def _records(files: list[str], manifest: dict, config, count: int | None):
    """Decoded (and resized) records of `files`, in file then record order."""
    ds = tf.data.TFRecordDataset(files)
    if count is not None:
        # Stating the count lets Keras size epochs, and a shard shorter than the manifest says
        # fails here (train and evaluate also check every shard before the first step).
        ds = ds.apply(tf.data.experimental.assert_cardinality(count))
    size = int(manifest["size"])
    return ds.map(lambda s: decode_and_resize(s, manifest["encoding"], size, config.image_size),
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def worker_shards(entries: list[dict], worker: int, workers: int) -> list[dict]:
    """The shard files worker `worker` of `workers` reads: every workers-th, from its index
    (file-level sharding: no worker reads or decodes another's records)."""
    return entries[worker::workers]


def train_steps(manifest: dict, config, workers: int = 1) -> int:
    """Steps per epoch: config.steps_per_epoch, or whole global batches in one pass over the
    training split; with several workers, over the worker with the fewest records (every worker
    must take the same number of steps)."""
    if config.steps_per_epoch:
        return config.steps_per_epoch
    shards = manifest["splits"]["train"].get("shards")
    if not shards:  # a manifest without shard lists: one count for the whole split
        counts = [split_size(manifest, "train")]
    else:
        counts = [sum(int(s["records"]) for s in worker_shards(shards, w, workers)) for w in range(workers)]
    steps = min(counts) // (config.batch_size // workers)
    if steps < 1:
        raise ValueError(f"the training split ({min(counts)} images per worker) is smaller than "
                         f"one batch of {config.batch_size}")
    return steps


def check_execution_chunks(steps: int, per_execution: int) -> None:
    """ValueError unless `per_execution` (config.steps_per_execution) divides the `steps` of an
    epoch: Keras runs whole chunks of it, so a remainder would start every later epoch late, move
    validation and checkpoints, and cut the last epoch short. The message names the nearest
    values that work: divisors of `steps`, or multiples of `per_execution` for --steps-per-epoch."""
    if steps % per_execution == 0:
        return
    divisors = [d for d in range(1, steps + 1) if steps % d == 0]
    near = [max(d for d in divisors if d < per_execution),
            min((d for d in divisors if d > per_execution), default=None)]
    multiples = [steps - steps % per_execution, steps - steps % per_execution + per_execution]
    per_execution_text = " or ".join(str(d) for d in near if d is not None)
    steps_text = " or ".join(str(m) for m in multiples if m > 0)
    raise ValueError(f"--steps-per-execution {per_execution} does not divide the {steps} steps of "
                     f"an epoch (Keras runs whole chunks of {per_execution}: every later epoch "
                     f"would start late and the last be cut short); use --steps-per-execution "
                     f"{per_execution_text} (divisors of {steps}) or --steps-per-epoch {steps_text}")


def _record_counts(entries: list[dict]) -> list[int]:
    """Records per shard: the manifest's, or (a manifest without them) read from the framing."""
    return [e["records"] if e["records"] is not None else count_records(e["file"]) for e in entries]


def _pairs(ds, manifest: dict, config):
    """(uint8 image [S, S, 1], labels float32 [14]) of serialized records."""
    size = int(manifest["size"])

    def pair(serialized):
        ex = decode_and_resize(serialized, manifest["encoding"], size, config.image_size)
        return ex["image"], tf.ensure_shape(ex["labels"], [NUM_CLASSES])

    return ds.map(pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


class _FileReader:
    """An epoch's records read from the shard files, in `epoch_order`'s order."""

    def __init__(self, files, counts, manifest, config, records, continuous):
        self.files, self.counts, self.manifest, self.config = files, counts, manifest, config
        self.records, self.continuous = records, continuous

    def __call__(self, epoch: int):
        parts = []
        for order, start, stop in epoch_order.epoch_reads(self.counts, self.config.seed, epoch,
                                                          self.records, self.continuous):
            files = tf.data.Dataset.from_tensor_slices([self.files[s] for s in order])
            records = files.interleave(tf.data.TFRecordDataset, cycle_length=epoch_order.CYCLE,
                                       block_length=1, num_parallel_calls=epoch_order.CYCLE,
                                       deterministic=True)
            parts.append(records.skip(start).take(stop - start))  # serialized: skips cost no decode
        ds = functools.reduce(lambda a, b: a.concatenate(b), parts)
        # A shard shorter than the manifest says ends the epoch early: an error, not a short epoch.
        ds = ds.apply(tf.data.experimental.assert_cardinality(self.records))
        return _pairs(ds, self.manifest, self.config)


class _MemoryReader:
    """The same records in the same order from the decoded split held in memory (config.cache)."""

    def __init__(self, files, counts, manifest, config, records, continuous):
        images, labels = [], []
        for image, label in _pairs(tf.data.TFRecordDataset(files), manifest, config).batch(256):
            images.append(image.numpy())
            labels.append(label.numpy())
        self.images = tf.constant(np.concatenate(images))
        self.labels = tf.constant(np.concatenate(labels))
        self.counts, self.config, self.records, self.continuous = counts, config, records, continuous

    def __call__(self, epoch: int):
        ids = epoch_order.epoch_records(self.counts, self.config.seed, epoch, self.records,
                                        self.continuous)
        return tf.data.Dataset.from_tensor_slices(ids).map(
            lambda i: (tf.gather(self.images, i), tf.gather(self.labels, i)))


def training_dataset(data_dir, config, steps: int, first_epoch: int = 0, worker: int = 0,
                     workers: int = 1, batch_size: int | None = None):
    """(uint8 images [B, S, S, 1], labels float32 [B, 14]) for epochs first_epoch … config.epochs−1,
    `steps` whole batches each, one epoch after the other (Model.fit with steps_per_epoch=steps).

    Epoch e reads what `epoch_order` gives (seed, e), shuffled and flipped with seeds made of
    (config.seed, e) only. tf.data combines an op seed with TensorFlow's global seed, which
    `train` sets from config.seed. `worker` of `workers`: read only that worker's shard files
    (`worker_shards`); `batch_size` (default config.batch_size) is the batch this dataset yields
    (a replica's share under multiworker)."""
    manifest = read_manifest(data_dir)
    entries = worker_shards(shard_entries(data_dir, "train", manifest), worker, workers)
    if not entries:
        raise ValueError(f"{Path(data_dir) / MANIFEST}: the training split has fewer shard files "
                         f"than the {workers} workers that read whole files; rebuild with a "
                         "smaller --images-per-shard")
    batch = batch_size or config.batch_size
    counts = _record_counts(entries)
    continuous = config.steps_per_epoch is not None
    if not continuous and steps * batch > sum(counts):
        raise ValueError(f"{steps} steps of {batch} need {steps * batch} records; the training "
                         f"split has {sum(counts)} (set --steps-per-epoch to repeat it)")
    reader = (_MemoryReader if config.cache else _FileReader)(
        [e["file"] for e in entries], counts, manifest, config, steps * batch, continuous)
    # One dataset per epoch, chained: tf.data seeds must be Python ints, so the epochs are
    # unrolled here rather than mapped from a tensor (50 small datasets for the paper preset).
    epochs = [_epoch(reader(e), config, e, batch) for e in range(first_epoch, config.epochs)]
    if not epochs:
        raise ValueError(f"no epoch left to train (first epoch {first_epoch + 1} > {config.epochs})")
    return functools.reduce(lambda a, b: a.concatenate(b), epochs).prefetch(tf.data.AUTOTUNE)


def endless_training_dataset(data_dir, config):
    """The training pipeline's first epoch (one pass, whatever config.steps_per_epoch says),
    repeated without end: what the benchmarks time (the same reads, decode, shuffle and flip)."""
    one_pass = config.override(epochs=1, steps_per_epoch=None)
    steps = train_steps(read_manifest(data_dir), one_pass)
    return training_dataset(data_dir, one_pass, steps).repeat()


def _epoch(records, config, epoch, batch_size: int):
    """Epoch `epoch`: its records shuffled and flipped with seeds that depend only on
    (config.seed, epoch), in whole batches. Every iteration of it gives the same batches (the
    shuffle is not reshuffled per iteration: Keras opens a distributed dataset twice)."""
    epoch_seed = config.seed * EPOCH_STRIDE + epoch
    ds = records.shuffle(config.shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=False)
    if config.horizontal_flip:
        seed = tf.constant(epoch_seed, tf.int64)
        ds = ds.enumerate().map(lambda i, el: (augment(el[0], tf.stack([seed, i])), el[1]),
                                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True)


def make_eval_dataset(data_dir, split: str, config):
    """(uint8 images [B, S, S, 1], labels, image_index string [B], patient_id int64 [B]) batches
    of config.val_batch_size in record order: shards in manifest order, records in file order,
    no shuffle, no flip, the last partial batch kept, so row k of the predictions is record k."""
    manifest = read_manifest(data_dir)
    files = shard_files(data_dir, split, manifest)
    ds = _records(files, manifest, config, split_size(manifest, split))
    ds = ds.map(lambda ex: (ex["image"], ex["labels"], ex["image_index"], ex["patient_id"]),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(config.val_batch_size, drop_remainder=False).prefetch(tf.data.AUTOTUNE)
