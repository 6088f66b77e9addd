"""The tf.data input pipeline: TFRecord shards (+ manifest.json) → model-ready batches.

Records are parsed with `data_prep.schema.parse_example`, the one schema the writer also uses.
Per element, in order (§IV.B):
  decode_and_resize  uint8 [S, S, 1]; resized only when config.image_size ≠ the stored size
  (cache)            optional, of the uint8 images (config.cache), before shuffle and flip
  shuffle            seeded (config.shuffle_buffer, config.seed); training only
  augment            seeded random horizontal flip, training only (§IV.B "Random horizontal
                     flipping was performed as data augmentation")
  to_model_input     grayscale → 3 channels, float32, the backbone's own ImageNet normalisation
                     (§IV.B "normalized with the same mean, standard deviation")
then batch(config.batch_size) and prefetch. The element functions are public so that tests can
check they give the same result eagerly and inside tf.data.
"""
from __future__ import annotations

import json
from pathlib import Path

import tensorflow as tf

from data_prep.schema import NUM_CLASSES, SHARD_GLOB, SPLITS, parse_example
from reproduce.models import preprocess_fn

MANIFEST = "manifest.json"


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
                raise ManifestError(f"{path}: shard {shard['file']} of split {split!r} is missing")
    return manifest


def shard_files(data_dir, split: str, manifest: dict) -> list[str]:
    """The split's shard paths in manifest order (= file name order), else SHARD_GLOB sorted."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    info = manifest["splits"].get(split)
    if info is None:
        raise ManifestError(f"{Path(data_dir) / MANIFEST}: no split {split!r}")
    if "shards" in info:
        files = [str(Path(data_dir) / s["file"]) for s in info["shards"]]
    else:
        files = sorted(str(p) for p in Path(data_dir).glob(SHARD_GLOB.format(split=split)))
    if not files:
        raise ManifestError(f"{Path(data_dir) / MANIFEST}: split {split!r} has no shards")
    return files


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


def to_model_input(images, model_name: str):
    """uint8 grayscale [..., H, W, 1] → float32 [..., H, W, 3], normalised for the backbone.

    The three channels are copies of the gray one (the ImageNet weights expect RGB); then the
    family's `preprocess_input` (`models.preprocess_fn`). Input is converted to a new tensor
    first: Keras' preprocess_input edits NumPy float arrays in place."""
    x = tf.cast(tf.convert_to_tensor(images), tf.float32)
    x = tf.image.grayscale_to_rgb(x)
    return tf.cast(preprocess_fn(model_name)(x), tf.float32)


def _records(data_dir, split, config, parallel_reads):
    """Decoded (and resized) records of a split, in shard then record order if sequential."""
    manifest = read_manifest(data_dir)
    files = shard_files(data_dir, split, manifest)
    size = int(manifest["size"])
    ds = tf.data.TFRecordDataset(files, num_parallel_reads=parallel_reads)
    # The manifest knows the record count: stating it lets Keras size epochs without a "ran out
    # of data" warning, and a truncated or swapped shard fails loudly instead of silently.
    ds = ds.apply(tf.data.experimental.assert_cardinality(split_size(manifest, split)))
    return ds.map(lambda s: decode_and_resize(s, manifest["encoding"], size, config.image_size),
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def make_dataset(data_dir, split: str, config, training: bool, family: str | None = None):
    """(images float32 [B, S, S, 3], labels float32 [B, 14]) batches for Model.fit / evaluate.

    training=True: seeded shuffle, seeded flip (if config.horizontal_flip), and repeat() when config.steps_per_epoch is set
    (then epochs are config.steps_per_epoch batches long). `family` overrides config.model for
    the normalisation only. The last partial batch is kept (our choice: no image is dropped).
    """
    family = family or config.model
    # Sequential reads keep record order for evaluation; parallel reads are faster for training
    # and still deterministic (tf.data interleave is deterministic by default).
    ds = _records(data_dir, split, config, tf.data.AUTOTUNE if training else None)
    ds = ds.map(lambda ex: (ex["image"], ex["labels"]))
    if config.cache:
        ds = ds.cache()  # uint8 after resize, before shuffle/flip: each epoch still differs
    if training:
        ds = ds.shuffle(config.shuffle_buffer, seed=config.seed, reshuffle_each_iteration=True)
        if config.steps_per_epoch:
            ds = ds.repeat()
    if training and config.horizontal_flip:
        # One stateless seed per element from a seeded stream that differs at each iteration,
        # so flips are reproducible for a seed but not the same every epoch.
        flips = tf.data.Dataset.random(seed=config.seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((ds, flips)).map(
            lambda el, r: (augment(el[0], tf.stack([r, tf.constant(config.seed, tf.int64)])), el[1]),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.map(lambda image, labels: (to_model_input(image, family),
                                       tf.ensure_shape(labels, [NUM_CLASSES])),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(config.batch_size).prefetch(tf.data.AUTOTUNE)


def make_eval_dataset(data_dir, split: str, config, family: str | None = None):
    """(images, labels, image_index string [B], patient_id int64 [B]) batches in record order.

    Shards in manifest order, records in file order, no shuffle, no flip, no repeat, and the
    last partial batch kept, so row k of the predictions is record k of the split.
    """
    family = family or config.model
    ds = _records(data_dir, split, config, None)
    ds = ds.map(lambda ex: (to_model_input(ex["image"], family), ex["labels"],
                            ex["image_index"], ex["patient_id"]),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(config.batch_size, drop_remainder=False).prefetch(tf.data.AUTOTUNE)
