"""The one definition of the 14 classes and of the TFRecord feature schema.

Both the writer (`data_prep.shards`) and the reader (`reproduce.data`) import this module, so a
record written by one is always parsed the same way by the other.
"""
from __future__ import annotations

import numpy as np

# Table I's row order (paper §IV.D), spelled as in Data_Entry_2017*.csv ("Pleural_Thickening").
CLASSES: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Effusion",
    "Emphysema",
    "Fibrosis",
    "Hernia",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pleural_Thickening",
    "Pneumonia",
    "Pneumothorax",
)
NUM_CLASSES = len(CLASSES)
NO_FINDING = "No Finding"  # §IV.A: the 15th label string; encoded as the all-zero vector.

# How the 8-bit grayscale image is stored in the "image" feature. "raw" = H*W bytes, row-major;
# "png" = a PNG file. The build records its choice in manifest.json ("encoding").
ENCODINGS = ("raw", "png")

SPLITS = ("train", "val", "test")
SHARD_TEMPLATE = "{split}-{index:05d}-of-{count:05d}.tfrecord"
SHARD_GLOB = "{split}-*-of-*.tfrecord"


def _feature_spec():
    import tensorflow as tf

    return {
        "image": tf.io.FixedLenFeature([], tf.string),
        "height": tf.io.FixedLenFeature([], tf.int64),
        "width": tf.io.FixedLenFeature([], tf.int64),
        "labels": tf.io.FixedLenFeature([NUM_CLASSES], tf.float32),
        "image_index": tf.io.FixedLenFeature([], tf.string),
        "patient_id": tf.io.FixedLenFeature([], tf.int64),
    }


def encode_example(
    image: np.ndarray, labels, image_index: str, patient_id: int, encoding: str = "raw"
) -> bytes:
    """Serialize one image (uint8, H×W) and its 14-dim label vector as a tf.train.Example."""
    import tensorflow as tf

    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"{image_index}: expected a 2-D uint8 image, got {image.dtype} {image.shape}")
    labels = np.asarray(labels, dtype=np.float32)
    if labels.shape != (NUM_CLASSES,):
        raise ValueError(f"{image_index}: expected {NUM_CLASSES} labels, got shape {labels.shape}")
    if encoding == "raw":
        payload = np.ascontiguousarray(image).tobytes()
    elif encoding == "png":
        import cv2

        ok, buf = cv2.imencode(".png", image)
        if not ok:
            raise ValueError(f"{image_index}: PNG encoding failed")
        payload = buf.tobytes()
    else:
        raise ValueError(f"unknown encoding {encoding!r}; expected one of {ENCODINGS}")

    def _bytes(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def _int(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))

    feature = {
        "image": _bytes(payload),
        "height": _int(image.shape[0]),
        "width": _int(image.shape[1]),
        "labels": tf.train.Feature(float_list=tf.train.FloatList(value=labels.tolist())),
        "image_index": _bytes(image_index.encode()),
        "patient_id": _int(patient_id),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    # deterministic=True: protobuf map order otherwise varies between processes, and a resumed or
    # 2-worker build must write byte-identical shards (tests/data_prep/test_build.py).
    return example.SerializeToString(deterministic=True)


def parse_example(serialized, encoding: str = "raw", size: int | None = None) -> dict:
    """TF-graph parse of one record: image uint8 [H, W, 1], labels float32 [14], ids.

    `size` (the manifest's stored size) gives the image a static shape, which Keras needs; works
    eagerly and inside `tf.data.Dataset.map`.
    """
    import tensorflow as tf

    ex = tf.io.parse_single_example(serialized, _feature_spec())
    if encoding == "raw":
        image = tf.io.decode_raw(ex["image"], tf.uint8)
        image = tf.reshape(image, tf.stack([ex["height"], ex["width"], 1]))
    elif encoding == "png":
        image = tf.io.decode_png(ex["image"], channels=1)
    else:
        raise ValueError(f"unknown encoding {encoding!r}; expected one of {ENCODINGS}")
    if size is not None:
        image = tf.ensure_shape(image, [size, size, 1])
    return {
        "image": image,
        "labels": ex["labels"],
        "image_index": ex["image_index"],
        "patient_id": ex["patient_id"],
    }
