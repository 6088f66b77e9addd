"""The tf.data pipeline (§IV.B): uint8 images out, record order and ids in evaluation, flip only in
training, every epoch a function of (seed, epoch) only, whole batches, resize only when sizes
differ, and the element functions giving the same result eagerly and inside tf.data."""
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


def _write(folder, size=32, encoding="raw", counts=(5, 4), splits=("test", "train")):
    """A tiny TFRecord folder + manifest.json in the layout of docs/architecture.md; every split
    holds the same 9 records."""
    manifest = {"size": size, "encoding": encoding, "classes": list(CLASSES),
                "split": {"method": "paper", "seed": 0}, "splits": {}, "skipped": []}
    for split in splits:
        shards, k = [], 0
        for i, n in enumerate(counts):
            name = SHARD_TEMPLATE.format(split=split, index=i, count=len(counts))
            with tf.io.TFRecordWriter(str(folder / name)) as writer:
                for _ in range(n):
                    writer.write(encode_example(_image(k, size), _labels(k), f"{k:08d}_000.png",
                                                100 + k // 2, encoding))
                    k += 1
            shards.append({"file": name, "records": n, "sha256": "-"})
        manifest["splits"][split] = {"images": k, "patients": (k + 1) // 2,
                                     "positives": {c: 0 for c in CLASSES}, "shards": shards}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("shards"))


def _cfg(**kw):
    return smoke().override(**{"model": "tiny", "batch_size": 4, "val_batch_size": 4,
                               "steps_per_epoch": None, "epochs": 1, **kw})


def _raw(k, size=32):
    return _image(k, size)[..., None]


def test_read_manifest_errors(tmp_path):
    with pytest.raises(data.ManifestError, match="manifest.json: not found"):
        data.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(data.ManifestError, match="manifest.json: not valid JSON"):
        data.read_manifest(tmp_path)
    _write(tmp_path)
    (tmp_path / "test-00001-of-00002.tfrecord").unlink()
    with pytest.raises(data.ManifestError, match="test-00001-of-00002.tfrecord: shard of split"):
        data.read_manifest(tmp_path)


def test_eval_order_ids_and_last_partial_batch(shards):
    batches = list(data.make_eval_dataset(shards, "test", _cfg()))
    assert [len(b[0]) for b in batches] == [4, 4, 1]  # 9 records, the last one kept
    assert batches[0][0].dtype == tf.uint8 and batches[0][0].shape[1:] == (32, 32, 1)
    images = np.concatenate([b[0] for b in batches])
    ids = [s.decode() for b in batches for s in b[2].numpy()]
    assert ids == [f"{k:08d}_000.png" for k in range(N_TEST)]  # shard order, then record order
    assert np.concatenate([b[3] for b in batches]).tolist() == [100 + k // 2 for k in range(N_TEST)]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]),
                                  [_labels(k) for k in range(N_TEST)])
    # No flip, no shuffle in evaluation, even with horizontal_flip on.
    np.testing.assert_array_equal(images, [_raw(k) for k in range(N_TEST)])


def _epoch(shards, cfg, first_epoch=0):
    """The batches of epoch `first_epoch`: 9 records, batch 4 → 2 whole batches."""
    ds = data.training_dataset(shards, cfg.override(epochs=first_epoch + 1), 2, first_epoch)
    return [(x.numpy(), y.numpy()) for x, y in ds]


def _match(image, flipped_ok, n=N_TEST):
    """Index k of the record an output image came from, and whether it was flipped."""
    for k in range(n):
        if np.array_equal(image, _raw(k)):
            return k, False
        if flipped_ok and np.array_equal(image, _raw(k)[:, ::-1]):
            return k, True
    raise AssertionError("output image is no (flipped) input record")


def test_training_flips_shuffles_and_is_seeded(shards):
    cfg = _cfg(horizontal_flip=True, seed=3)
    first = _epoch(shards, cfg)
    matches = [_match(img, True) for x, _ in first for img in x]
    assert len(matches) == 8 and len({k for k, _ in matches}) == 8  # whole batches, no repeat
    assert any(f for _, f in matches) and not all(f for _, f in matches)
    assert [k for k, _ in matches] != list(range(N_TEST))  # shuffled
    labels = np.concatenate([y for _, y in first])
    np.testing.assert_array_equal(labels, [_labels(k) for k, _ in matches])  # pairs kept
    again = _epoch(shards, cfg)  # a fresh dataset with the same seed: the same batches
    for (xa, ya), (xb, yb) in zip(first, again):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    second = _epoch(shards, cfg, first_epoch=1)
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, second))  # a new epoch, new order
    other = _epoch(shards, _cfg(horizontal_flip=True, seed=4))
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, other))


def test_an_epoch_depends_on_seed_and_epoch_only(shards):
    """Epoch 2 of a run started at epoch 0 equals epoch 2 of a run resumed at epoch 2, and one
    dataset iterated twice (Keras opens a distributed dataset twice) gives the same batches."""
    cfg = _cfg(horizontal_flip=True, seed=3, epochs=3)
    ds = data.training_dataset(shards, cfg, 2)
    whole = [x.numpy() for x, _ in ds]
    again = [x.numpy() for x, _ in ds]
    resumed = [x.numpy() for x, _ in data.training_dataset(shards, cfg, 2, first_epoch=2)]
    assert len(whole) == 6 and all(np.array_equal(a, b) for a, b in zip(whole, again))
    assert all(np.array_equal(a, b) for a, b in zip(whole[4:], resumed)) and len(resumed) == 2


def test_no_flip_when_disabled_and_cache_changes_nothing(shards):
    plain = _epoch(shards, _cfg(horizontal_flip=False, cache=False))
    assert not any(_match(img, False)[1] for x, _ in plain for img in x)
    cached = _epoch(shards, _cfg(horizontal_flip=False, cache=True))
    for (xa, _), (xb, _) in zip(plain, cached):
        np.testing.assert_array_equal(xa, xb)


def test_steps_per_epoch_repeats(shards):
    cfg = _cfg(steps_per_epoch=6)
    batches = list(data.training_dataset(shards, cfg, 6))  # 24 images from 9 records: it repeats
    assert len(batches) == 6 and all(x.shape == (4, 32, 32, 1) and y.shape == (4, 14) for x, y in batches)
    assert data.train_steps(data.read_manifest(shards), cfg) == 6
    assert data.train_steps(data.read_manifest(shards), _cfg()) == 2  # 9 // 4 whole batches


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory):
    """60 training records in 6 shards of 10 (ids 0 … 59)."""
    return _write(tmp_path_factory.mktemp("many"), counts=(10,) * 6, splits=("train",))


def _record_ids(shards, cfg, steps, first_epoch=0):
    """The record (k) of every training image, epoch by epoch (flip off)."""
    ds = data.training_dataset(shards, cfg, steps, first_epoch)
    return [_match(img, False, n=60)[0] for x, _ in ds for img in x.numpy()]


@pytest.mark.parametrize("cache", [False, True])
def test_short_epochs_continue_where_the_last_stopped(many_shards, cache):
    """--steps-per-epoch: epoch e starts where e − 1 stopped, so ⌈60 / 8⌉ = 8 epochs of 2 × 4
    read every record once before any repeats (before: each epoch started again at the front of
    the stream, 6 epochs of 2 × 8 saw 30 distinct of 96 on the test phantom)."""
    cfg = _cfg(steps_per_epoch=2, epochs=8, horizontal_flip=False, cache=cache)
    seen = _record_ids(many_shards, cfg, 2)
    assert len(seen) == 64 and len(set(seen[:56])) == 56 and set(seen) == set(range(60))
    resumed = _record_ids(many_shards, cfg, 2, first_epoch=5)  # a resume at epoch 6: same data
    assert resumed == seen[40:]


@pytest.fixture(scope="module")
def uneven_shards(tmp_path_factory):
    """60 training records in 11 shards of uneven sizes: interleave slots run out at odd times."""
    return _write(tmp_path_factory.mktemp("uneven"), counts=(9, 2, 7, 1, 8, 3, 6, 12, 5, 4, 3),
                  splits=("train",))


def test_cache_changes_speed_not_data(uneven_shards):
    """The files read by tf.data's (parallel) interleave and the decoded split read by the
    record ids of reproduce.epoch_order give the same batches: the two agree on the order."""
    for steps_per_epoch, steps in ((None, 15), (3, 3)):
        cfg = _cfg(steps_per_epoch=steps_per_epoch, epochs=3, horizontal_flip=True, seed=2)
        files = [x.numpy() for x, _ in data.training_dataset(uneven_shards, cfg, steps)]
        memory = [x.numpy() for x, _ in data.training_dataset(uneven_shards, cfg.override(cache=True), steps)]
        assert len(files) == len(memory) == 3 * steps
        assert all(np.array_equal(a, b) for a, b in zip(files, memory))


def test_every_epoch_reads_the_shards_in_another_order(many_shards):
    """The shard files' order is shuffled per (seed, epoch) (a small buffer keeps the shard of
    the first records visible): the first records of the epochs come from different shards."""
    cfg = _cfg(epochs=4, horizontal_flip=False, shuffle_buffer=1)
    seen = _record_ids(many_shards, cfg, 15)
    epochs = [seen[e * 60:(e + 1) * 60] for e in range(4)]
    assert all(sorted(e) == list(range(60)) for e in epochs)
    assert len({tuple(k // 10 for k in e[:8]) for e in epochs}) == 4  # shards read first differ


def test_endless_dataset_repeats_one_pass(many_shards):
    batches = data.endless_training_dataset(many_shards, _cfg(steps_per_epoch=2)).take(40)
    assert sum(1 for _ in batches) == 40  # 15 batches per pass, repeated


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
    assert x.shape == (3, 32, 32, 1)


def test_element_functions_eager_equals_tf_data():
    records = [encode_example(_image(k, 40), _labels(k), f"{k}.png", k) for k in range(3)]
    seeds = [np.array([k, 7], np.int64) for k in range(3)]

    def element(serialized, seed):
        image = data.decode_and_resize(serialized, "raw", 40, 32)["image"]
        return data.augment(image, seed)

    eager = [element(tf.constant(r), tf.constant(s)).numpy() for r, s in zip(records, seeds)]
    ds = tf.data.Dataset.from_tensor_slices((records, np.stack(seeds))).map(element)
    for a, b in zip(eager, ds):
        np.testing.assert_array_equal(a, b.numpy())
    # augment is a pure function of its seed, flipping or not as a whole.
    image = tf.constant(_image(2, 32)[..., None])
    outs = {bool(np.array_equal(data.augment(image, [s, 0]).numpy(), image.numpy()[:, ::-1]))
            for s in range(8)}
    assert outs == {True, False}
