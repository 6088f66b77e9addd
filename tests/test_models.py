"""Backbones + head (§IV.D, §III.B): forward passes, head activation per loss, trainable layers,
offline ImageNet failure, loading a weights file."""
import time

import keras
import numpy as np
import pytest

from reproduce import models
from reproduce.config import smoke
from reproduce.models import ImagenetWeightsUnavailable, build_model

X = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg16", "resnet50", "densenet121"])
def test_real_backbones_build_and_run(name):
    model = build_model(smoke().override(model=name, loss="wce"))
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 14)
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


def test_imagenet_offline_fails_fast_with_file_name(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(ImagenetWeightsUnavailable) as info:
        build_model(smoke().override(model="densenet121", weights="imagenet"))
    assert time.perf_counter() - start < 2.0
    message = str(info.value)
    assert "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "models") in message


def test_imagenet_cached_file_is_found(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    target = tmp_path / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    target.parent.mkdir()
    target.write_bytes(b"")
    assert models.imagenet_weights_path("resnet50") == target
    with pytest.raises(ValueError, match="tiny"):
        models.imagenet_weights_path("tiny")


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


@pytest.mark.slow
def test_imagenet_file_in_cache_is_loaded(monkeypatch, tmp_path):
    """A notop file in the legacy .h5 layout keras.applications downloads is loaded, offline."""
    import h5py
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    source = keras.applications.DenseNet121(include_top=False, weights=None, input_shape=(32, 32, 3))
    with h5py.File(tmp_path / "models" / "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
                   "w") as f:
        save_weights_to_hdf5_group(f, source)  # private, but the only writer of that layout
    model = build_model(smoke().override(model="densenet121", weights="imagenet"))
    for a, b in zip(source.weights, model.get_layer("densenet121").weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
