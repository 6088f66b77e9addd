"""The tf.data input pipeline: TFRecord shards (+ manifest.json) → batches of uint8 images.

Records are parsed with `data_prep.schema.parse_example`, the one schema the writer also uses.
Per element, in order (§IV.B):
  decode_and_resize  uint8 [S, S, 1]; resized only when config.image_size ≠ the stored size
  (cache)            optional, of the uint8 images (config.cache), before shuffle and flip
  shuffle            training only, seeded by (config.seed, epoch)
  augment            random horizontal flip, training only, seeded by (seed, epoch, position)
                     (§IV.B "Random horizontal flipping was performed as data augmentation")
then batch and prefetch. Images leave the pipeline as uint8 gray: gray → RGB and the backbone's
ImageNet normalisation are the model's first layer (`models.BackboneInput`), so they run on the
accelerator and 50 KB per 224² image is moved instead of 602 KB of float32.

Training data is a function of (config.seed, epoch) only (`training_dataset`): a resumed run sees
exactly the batches the uninterrupted run saw from its resume epoch on, and opening the dataset
again (Keras peeks at one batch before a distributed fit) repeats it instead of moving on.
Training batches are whole (drop_remainder): a partial last batch would be split unevenly over
replicas and weigh its images differently than one device does (our choice; the images left out
differ every epoch, at most batch_size − 1 of ~78k).
"""
from __future__ import annotations

import json
from pathlib import Path

import tensorflow as tf

from data_prep.schema import NUM_CLASSES, SHARD_GLOB, SPLITS, parse_example

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


def training_dataset(data_dir, config, steps: int, first_epoch: int = 0, worker: int = 0,
                     workers: int = 1, batch_size: int | None = None):
    """(uint8 images [B, S, S, 1], labels float32 [B, 14]) for epochs first_epoch … config.epochs−1,
    `steps` whole batches each, one epoch after the other (Model.fit with steps_per_epoch=steps).

    Epoch e is shuffled and flipped with seeds made of (config.seed, e) only. tf.data combines an
    op seed with TensorFlow's global seed, which `train` sets from config.seed. `worker` of
    `workers`: read only that worker's shard files (`worker_shards`); `batch_size` (default
    config.batch_size) is the batch this dataset yields (a replica's share under multiworker)."""
    manifest = read_manifest(data_dir)
    entries = worker_shards(shard_entries(data_dir, "train", manifest), worker, workers)
    if not entries:
        raise ValueError(f"{Path(data_dir) / MANIFEST}: the training split has fewer shard files "
                         f"than the {workers} workers that read whole files; rebuild with a "
                         "smaller --images-per-shard")
    counts = [e["records"] for e in entries]
    pairs = _records([e["file"] for e in entries], manifest, config,
                     None if None in counts else sum(counts))
    pairs = pairs.map(lambda ex: (ex["image"], tf.ensure_shape(ex["labels"], [NUM_CLASSES])))
    if config.cache:
        pairs = pairs.cache()  # uint8 after resize, before shuffle/flip: each epoch still differs
    batch = batch_size or config.batch_size
    # One dataset per epoch, chained: tf.data seeds must be Python ints, so the epochs are
    # unrolled here rather than mapped from a tensor (50 small datasets for the paper preset).
    ds = None
    for epoch in range(first_epoch, config.epochs):
        one = _epoch(pairs, config, epoch, batch, steps)
        ds = one if ds is None else ds.concatenate(one)
    if ds is None:
        raise ValueError(f"no epoch left to train (first epoch {first_epoch + 1} > {config.epochs})")
    return ds.prefetch(tf.data.AUTOTUNE)


def _epoch(pairs, config, epoch, batch_size: int, steps: int):
    """Epoch `epoch`: shuffled and flipped with seeds that depend only on (config.seed, epoch),
    `steps` whole batches. Every iteration of it gives the same batches (the shuffle is not
    reshuffled per iteration: Keras opens a distributed dataset twice). With
    config.steps_per_epoch the records repeat before the shuffle, so an epoch may be longer or
    shorter than one pass; without it an epoch is one pass and no record is seen twice."""
    epoch_seed = config.seed * EPOCH_STRIDE + epoch
    ds = pairs.repeat() if config.steps_per_epoch else pairs
    ds = ds.shuffle(config.shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=False)
    if config.horizontal_flip:
        seed = tf.constant(epoch_seed, tf.int64)
        ds = ds.enumerate().map(lambda i, el: (augment(el[0], tf.stack([seed, i])), el[1]),
                                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).take(steps)


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
