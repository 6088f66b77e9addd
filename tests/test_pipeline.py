"""The tf.data pipeline (§IV.B): record order and ids in evaluation, flip only in training,
seeded determinism, resize only when sizes differ, per-family normalisation, and the element
functions giving the same result eagerly and inside tf.data."""
import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from data_prep.schema import CLASSES, SHARD_TEMPLATE, encode_example
from reproduce import data
from reproduce.config import smoke

N_TEST = 9  # two shards of 5 + 4 records


def _image(k, size):
    # Left→right ramp plus a per-record offset: every record distinct, and a flip is visible.
    ramp = np.tile(np.arange(size, dtype=np.int64) * 4, (size, 1))
    return ((ramp + 7 * k) % 256).astype(np.uint8)


def _labels(k):
    return (np.arange(14) % (k + 2) == 0).astype(np.float32)


def _write(folder, size=32, encoding="raw", counts=(5, 4), split="test"):
    """A tiny TFRecord folder + manifest.json in the layout of docs/architecture.md."""
    shards, k = [], 0
    for i, n in enumerate(counts):
        name = SHARD_TEMPLATE.format(split=split, index=i, count=len(counts))
        with tf.io.TFRecordWriter(str(folder / name)) as writer:
            for _ in range(n):
                writer.write(encode_example(_image(k, size), _labels(k), f"{k:08d}_000.png",
                                            100 + k // 2, encoding))
                k += 1
        shards.append({"file": name, "records": n, "sha256": "-"})
    manifest = {"size": size, "encoding": encoding, "classes": list(CLASSES),
                "split": {"method": "paper", "seed": 0},
                "splits": {split: {"images": k, "patients": (k + 1) // 2,
                                   "positives": {c: 0 for c in CLASSES}, "shards": shards}},
                "skipped": []}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("shards"))


def _cfg(**kw):
    # dataclasses.replace, not override(): override() ignores None, and steps_per_epoch=None
    # (no repeat) is what a one-epoch test needs.
    return dataclasses.replace(smoke(), **{"model": "tiny", "batch_size": 4,
                                           "steps_per_epoch": None, **kw})


def _raw(k, size=32):
    return data.to_model_input(_image(k, size)[..., None], "tiny").numpy()


def test_read_manifest_errors(tmp_path):
    with pytest.raises(data.ManifestError, match="manifest.json: not found"):
        data.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(data.ManifestError, match="manifest.json: not valid JSON"):
        data.read_manifest(tmp_path)
    _write(tmp_path)
    (tmp_path / "test-00001-of-00002.tfrecord").unlink()
    with pytest.raises(data.ManifestError, match="test-00001-of-00002.tfrecord"):
        data.read_manifest(tmp_path)


def test_eval_order_ids_and_last_partial_batch(shards):
    batches = list(data.make_eval_dataset(shards, "test", _cfg()))
    assert [len(b[0]) for b in batches] == [4, 4, 1]  # 9 records, the last one kept
    images = np.concatenate([b[0] for b in batches])
    ids = [s.decode() for b in batches for s in b[2].numpy()]
    assert ids == [f"{k:08d}_000.png" for k in range(N_TEST)]  # shard order, then record order
    assert np.concatenate([b[3] for b in batches]).tolist() == [100 + k // 2 for k in range(N_TEST)]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]),
                                  [_labels(k) for k in range(N_TEST)])
    # No flip, no shuffle in evaluation, even with horizontal_flip on.
    np.testing.assert_array_equal(images, [_raw(k) for k in range(N_TEST)])
    # make_dataset(training=False) (Keras validation data): same images, same order, no flip.
    val = data.make_dataset(shards, "test", _cfg(horizontal_flip=True), training=False)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in val]), images)


def _epoch(shards, cfg):
    ds = data.make_dataset(shards, "test", cfg, training=True)
    return [(x.numpy(), y.numpy()) for x, y in ds]


def _match(image, flipped_ok):
    """Index k of the record an output image came from, and whether it was flipped."""
    for k in range(N_TEST):
        if np.array_equal(image, _raw(k)):
            return k, False
        if flipped_ok and np.array_equal(image, _raw(k)[:, ::-1]):
            return k, True
    raise AssertionError("output image is no (flipped) input record")


def test_training_flips_shuffles_and_is_seeded(shards):
    cfg = _cfg(horizontal_flip=True, seed=3)
    first = _epoch(shards, cfg)
    matches = [_match(img, True) for x, _ in first for img in x]
    assert sorted(k for k, _ in matches) == list(range(N_TEST))  # each record once per epoch
    assert any(f for _, f in matches) and not all(f for _, f in matches)
    assert [k for k, _ in matches] != list(range(N_TEST))  # shuffled
    labels = np.concatenate([y for _, y in first])
    np.testing.assert_array_equal(labels, [_labels(k) for k, _ in matches])  # pairs kept
    again = _epoch(shards, cfg)  # a fresh dataset with the same seed: the same batches
    for (xa, ya), (xb, yb) in zip(first, again):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    ds = data.make_dataset(shards, "test", cfg, training=True)
    epochs = [np.concatenate([x.numpy() for x, _ in ds]) for _ in range(2)]
    assert not np.array_equal(*epochs)  # reshuffled (and new flips) at every epoch
    other = _epoch(shards, _cfg(horizontal_flip=True, seed=4))
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, other))


def test_no_flip_when_disabled_and_cache_changes_nothing(shards):
    plain = _epoch(shards, _cfg(horizontal_flip=False, cache=False))
    assert not any(_match(img, False)[1] for x, _ in plain for img in x)
    cached = _epoch(shards, _cfg(horizontal_flip=False, cache=True))
    for (xa, _), (xb, _) in zip(plain, cached):
        np.testing.assert_array_equal(xa, xb)


def test_steps_per_epoch_repeats(shards):
    ds = data.make_dataset(shards, "test", _cfg(steps_per_epoch=2), training=True)
    batches = list(ds.take(6))  # 24 images from 9 records: only possible if it repeats
    assert all(x.shape == (4, 32, 32, 3) and y.shape == (4, 14) for x, y in batches)


def test_resize_only_when_sizes_differ(tmp_path, monkeypatch):
    serialized = encode_example(_image(1, 40), _labels(1), "a.png", 1)

    def no_resize(*args, **kwargs):
        raise AssertionError("resized although the sizes are equal")

    with monkeypatch.context() as m:
        m.setattr(tf.image, "resize", no_resize)
        data.decode_and_resize(serialized, "raw", 40, 40)
    same = data.decode_and_resize(serialized, "raw", 40, 40)["image"].numpy()
    np.testing.assert_array_equal(same[..., 0], _image(1, 40))  # untouched
    constant = encode_example(np.full((40, 40), 200, np.uint8), _labels(1), "b.png", 1)
    small = data.decode_and_resize(constant, "raw", 40, 32)["image"]
    assert small.dtype == tf.uint8 and small.shape == (32, 32, 1)
    assert np.all(small.numpy() == 200)  # area averaging of a constant image is that constant
    png = _write(tmp_path, size=40, encoding="png", counts=(3,))
    x = next(iter(data.make_eval_dataset(png, "test", _cfg())))[0]
    assert x.shape == (3, 32, 32, 3)


@pytest.mark.parametrize("family, expected", [
    ("tiny", [128 / 127.5 - 1] * 3),
    # caffe: RGB→BGR, minus the ImageNet BGR mean (103.939, 116.779, 123.68)
    ("vgg16", [24.061, 11.221, 4.32]),
    ("resnet50", [24.061, 11.221, 4.32]),
    # torch: (128/255 − mean)/std, mean (.485, .456, .406), std (.229, .224, .225)
    ("densenet121", [0.074065, 0.205183, 0.426494]),
])
def test_preprocess_per_family(family, expected):
    x = data.to_model_input(np.full((2, 2, 1), 128, np.uint8), family).numpy()
    assert x.shape == (2, 2, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0], expected, rtol=1e-4, atol=1e-5)


def test_element_functions_eager_equals_tf_data():
    records = [encode_example(_image(k, 40), _labels(k), f"{k}.png", k) for k in range(3)]
    seeds = [np.array([k, 7], np.int64) for k in range(3)]

    def element(serialized, seed):
        image = data.decode_and_resize(serialized, "raw", 40, 32)["image"]
        return data.to_model_input(data.augment(image, seed), "densenet121")

    eager = [element(tf.constant(r), tf.constant(s)).numpy() for r, s in zip(records, seeds)]
    ds = tf.data.Dataset.from_tensor_slices((records, np.stack(seeds))).map(element)
    for a, b in zip(eager, ds):
        np.testing.assert_array_equal(a, b.numpy())
    # augment is a pure function of its seed, flipping or not as a whole.
    image = tf.constant(_image(2, 32)[..., None])
    outs = {bool(np.array_equal(data.augment(image, [s, 0]).numpy(), image.numpy()[:, ::-1]))
            for s in range(8)}
    assert outs == {True, False}
