"""Backbones + head (§IV.D, §III.B): uint8 in, the input normalisation inside the model, forward
passes, head activation per loss, trainable layers, synchronized BatchNorm, offline ImageNet
failure, loading a weights file."""
import time

import keras
import numpy as np
import pytest

from reproduce import backbones, models
from reproduce.config import smoke
from reproduce.models import ImagenetWeightsUnavailable, build_model

X = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 1)).astype("uint8")


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg16", "resnet50", "densenet121"])
def test_real_backbones_build_and_run(name):
    model = build_model(smoke().override(model=name, loss="wce"))
    assert model.input_shape == (None, 32, 32, 1) and model.output_shape == (None, 14)
    assert model.inputs[0].dtype == "uint8"
    y = model.predict(X, verbose=0)
    assert y.dtype == np.float32 and np.all((y > 0) & (y < 1))
    # §V fine-tuning: every layer trainable; only BatchNorm running statistics are not trained.
    assert all(layer.trainable for layer in _all_layers(model))
    assert all("moving" in w.path for w in model.non_trainable_weights)


def test_head_activation_follows_loss():
    sig = build_model(smoke().override(model="tiny", loss="wce")).predict(X, verbose=0)
    soft = build_model(smoke().override(model="tiny", loss="ewl")).predict(X, verbose=0)
    # §III.B: softmax over the 14 classes (rows sum to 1) for Eq. (2); sigmoid for Eq. (1).
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(sig.sum(axis=1), 1.0)
    assert np.all((sig > 0) & (sig < 1))


def test_head_is_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_model(smoke().override(model="tiny", loss="ewl"))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("predictions").compute_dtype == "float32"
    assert model.predict(X, verbose=0).dtype == np.float32


def test_injected_backbone_and_seeded_head():
    def flat(shape):
        inputs = keras.Input(shape)
        return keras.Model(inputs, keras.layers.Conv2D(4, 1)(inputs))

    model = build_model(smoke().override(model="tiny"), backbone=flat)
    assert model.get_layer("predictions").kernel.shape == (4, 14)
    a = build_model(smoke().override(model="tiny", seed=1)).get_layer("predictions").kernel.numpy()
    b = build_model(smoke().override(model="tiny", seed=1)).get_layer("predictions").kernel.numpy()
    np.testing.assert_array_equal(a, b)


def test_imagenet_weights_are_fetched_for_the_backbone(monkeypatch):
    """--weights imagenet asks reproduce.weights for the file (download on first use), by name."""
    from reproduce import weights

    asked = []

    def fetch(model_name, **kwargs):
        asked.append(model_name)
        raise ImagenetWeightsUnavailable("stop here")

    monkeypatch.setattr(weights, "imagenet_weights", fetch)
    with pytest.raises(ImagenetWeightsUnavailable, match="stop here"):
        build_model(smoke().override(model="resnet50", weights="imagenet"))
    assert asked == ["resnet50"]


def test_imagenet_with_an_empty_cache_downloads_and_fails_in_one_line(monkeypatch, tmp_path,
                                                                      weights_server):
    """The train path (build_model) with an empty Keras cache asks the server (here a local mirror
    that lacks the file), and the failure names the URL, the file and the ways out, in seconds."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("REPRODUCE_WEIGHTS_MIRROR", weights_server.url)
    start = time.perf_counter()
    with pytest.raises(ImagenetWeightsUnavailable) as info:
        build_model(smoke().override(model="densenet121", weights="imagenet"))
    assert time.perf_counter() - start < 10.0
    name = "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert weights_server.requests == [f"/{name}"]
    message = str(info.value)
    assert "\n" not in message and "offline" not in message
    for part in (weights_server.url + name, "HTTP 404", str(tmp_path / "models"), "make weights",
                 "--weights PATH"):
        assert part in message


def test_weights_file_path_loads(tmp_path):
    source = build_model(smoke().override(model="tiny"))
    path = tmp_path / "tiny_notop.weights.h5"
    source.get_layer("tiny").save_weights(path)
    loaded = build_model(smoke().override(model="tiny", weights=str(path)))
    fresh = build_model(smoke().override(model="tiny", seed=5))
    for a, b in zip(source.get_layer("tiny").weights, loaded.get_layer("tiny").weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # Guard against a vacuous pass: an unloaded backbone differs.
    assert not np.array_equal(source.get_layer("tiny").weights[0].numpy(),
                              fresh.get_layer("tiny").weights[0].numpy())
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        build_model(smoke().override(model="tiny", weights=str(tmp_path / "missing.h5")))


def test_preprocess_fn_unknown_model():
    with pytest.raises(ValueError, match="unknown model"):
        models.preprocess_fn("alexnet")
    with pytest.raises(ValueError, match="unknown model"):
        models.BackboneInput("alexnet")


@pytest.mark.parametrize("family, expected", [
    ("tiny", [128 / 127.5 - 1] * 3),
    # caffe: RGB→BGR, minus the ImageNet BGR mean (103.939, 116.779, 123.68)
    ("vgg16", [24.061, 11.221, 4.32]),
    ("resnet50", [24.061, 11.221, 4.32]),
    # torch: (128/255 − mean)/std, mean (.485, .456, .406), std (.229, .224, .225)
    ("densenet121", [0.074065, 0.205183, 0.426494]),
])
def test_backbone_input_hand_values(family, expected):
    x = models.BackboneInput(family)(np.full((1, 2, 2, 1), 128, np.uint8))
    assert tuple(x.shape) == (1, 2, 2, 3) and x.dtype == "float32"
    np.testing.assert_allclose(np.asarray(x)[0, 0, 0], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", ["vgg16", "resnet50", "densenet121", "tiny"])
def test_backbone_input_equals_the_family_preprocess_input(family):
    """The layer in the model does what keras.applications.<family>.preprocess_input did on the
    CPU before (gray copied to RGB, float32): equal to float32 round-off."""
    images = np.random.default_rng(1).integers(0, 256, (3, 8, 8, 1)).astype("uint8")
    old = models.preprocess_fn(family)(np.repeat(images.astype("float32"), 3, axis=-1))
    np.testing.assert_allclose(np.asarray(models.BackboneInput(family)(images)), old, rtol=1e-6, atol=1e-6)


def test_predictions_unchanged_by_moving_the_normalisation_into_the_model():
    """Scores of a model on uint8 images = the same weights fed the old CPU-normalised floats."""
    model = build_model(smoke().override(model="densenet121", loss="wce"))
    inner = keras.Model(model.get_layer("backbone_input").output, model.output)
    old = inner.predict(models.preprocess_fn("densenet121")(np.repeat(X.astype("float32"), 3, -1)), verbose=0)
    np.testing.assert_allclose(model.predict(X, verbose=0), old, rtol=1e-5, atol=1e-6)


def test_synchronized_batchnorm_keeps_weights_and_is_saved(tmp_path):
    plain = build_model(smoke().override(model="densenet121", loss="wce"))
    keras.utils.set_random_seed(0)
    a = build_model(smoke().override(model="densenet121", loss="wce", seed=0))
    keras.utils.set_random_seed(0)
    synced = build_model(smoke().override(model="densenet121", loss="wce", seed=0), replicas=2)
    bns = [layer for layer in _all_layers(synced) if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 121 and all(layer.synchronized for layer in bns)
    assert not any(layer.synchronized for layer in _all_layers(plain)
                   if isinstance(layer, keras.layers.BatchNormalization))
    for x, y in zip(a.get_weights(), synced.get_weights()):  # clone keeps every weight
        np.testing.assert_array_equal(x, y)
    synced.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True, compile=False)
    assert all(layer.synchronized for layer in _all_layers(loaded)
               if isinstance(layer, keras.layers.BatchNormalization))
    assert not build_model(smoke().override(model="densenet121", sync_batchnorm=False), replicas=2) \
        .get_layer("densenet121").get_layer("conv1_bn").synchronized


def test_batchnorm_momentum_is_set_saved_and_changes_only_the_moving_statistics(tmp_path):
    """--batchnorm-momentum: every BatchNorm gets it, it survives a save (also synchronized), and
    training with 0.9 instead of 0.99 gives the same trained weights and other moving statistics
    (training normalises with the batch's own statistics)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 32, 32, 1), dtype=np.uint8)
    labels = (rng.random((16, 14)) < 0.3).astype("float32")

    def trained(momentum):
        keras.utils.set_random_seed(0)
        model = build_model(smoke().override(model="tiny-bn", batchnorm_momentum=momentum))
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy", run_eagerly=True)
        model.fit(images, labels, batch_size=8, epochs=1, shuffle=False, verbose=0)
        bns = [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
        assert bns and all(layer.momentum == momentum for layer in bns)
        moving = [w.numpy() for layer in bns for w in (layer.moving_mean, layer.moving_variance)]
        return model, [w.numpy() for w in model.trainable_weights], moving

    default, weights_99, moving_99 = trained(0.99)
    model, weights_90, moving_90 = trained(0.9)
    for x, y in zip(weights_99, weights_90, strict=True):
        np.testing.assert_array_equal(x, y)
    assert all(not np.allclose(x, y) for x, y in zip(moving_99, moving_90))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True, compile=False)
    assert {layer.momentum for layer in _all_layers(loaded)
            if isinstance(layer, keras.layers.BatchNormalization)} == {0.9}
    synced = build_model(smoke().override(model="densenet121", batchnorm_momentum=0.9), replicas=2)
    assert {(layer.momentum, layer.synchronized) for layer in _all_layers(synced)
            if isinstance(layer, keras.layers.BatchNormalization)} == {(0.9, True)}
    with pytest.raises(ValueError, match="batchnorm_momentum"):
        smoke().override(batchnorm_momentum=1.0)


@pytest.mark.slow
def test_imagenet_file_is_downloaded_and_loaded(monkeypatch, tmp_path, weights_server):
    """A notop file in the legacy .h5 layout keras.applications downloads, served by a local
    mirror with its MD5 in the table: an empty Keras cache gets it, and the backbone loads it."""
    import dataclasses
    import hashlib

    import h5py
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    from reproduce import weights

    name = "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"
    source = keras.applications.DenseNet121(include_top=False, weights=None, input_shape=(32, 32, 3))
    with h5py.File(tmp_path / name, "w") as f:
        save_weights_to_hdf5_group(f, source)  # private, but the only writer of that layout
    served = (tmp_path / name).read_bytes()
    weights_server.files[name] = served
    record = backbones.BACKBONES["densenet121"]
    monkeypatch.setitem(backbones.BACKBONES, "densenet121", dataclasses.replace(record, weights=dataclasses.replace(
        record.weights, file_hash=hashlib.md5(served).hexdigest())))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("REPRODUCE_WEIGHTS_MIRROR", weights_server.url)
    model = build_model(smoke().override(model="densenet121", weights="imagenet"))
    assert weights_server.requests == [f"/{name}"]
    assert (tmp_path / "keras" / "models" / name).read_bytes() == served
    for a, b in zip(source.weights, model.get_layer("densenet121").weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
