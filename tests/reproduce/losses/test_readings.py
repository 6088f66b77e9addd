"""The non-default readings of Eq. (2): hand-computed values, gradient direction, registry,
serialisation round trips (get_config and a saved .keras model). Runtime: about 5 s."""
import numpy as np
import pytest
import tensorflow as tf
import keras
from keras import ops

from reproduce import losses
from reproduce.losses.paper import WeightedBinaryCrossentropy
from reproduce.config import PRESETS, Config
from reproduce.study.eq2_analysis import toy_experiment
from reproduce.losses.readings import (NegatedEntropyWeightingLoss, NormalizedSoftmaxCrossentropy,
                                       WeightedCEPlusEntropyWeighting)

READINGS = losses.reading_names()

Y = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]], np.float32)
P = np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]], np.float32)


def test_ewl_neg_hand_computed():
    # row 1: 0.2·ln0.2 + 0.5·ln0.5 = −0.321888 − 0.346574 = −0.668461; row 2 (no finding): 0.
    assert float(NegatedEntropyWeightingLoss()(Y, P)) == pytest.approx(-0.668461 / 2, abs=1e-5)


def test_softmax_ce_hand_computed_and_zero_row():
    # row 1: targets (½, 0, ½): −(½ln0.2 + ½ln0.5) = 1.151293; row 2: all-zero targets → 0.
    per_image = NormalizedSoftmaxCrossentropy().call(Y, P)
    np.testing.assert_allclose(per_image, [1.151293, 0.0], atol=1e-5)


def test_wce_ewl_hand_computed():
    # Sigmoid p = (0.8, 0.2), labels (1, 0). WCE batch factors [5]: β_P = β_N = 2/1 = 2,
    # WCE = −2ln0.8 − 2ln0.8 = 0.892574. Logits ±ln4 → softmax q0 = 16/17,
    # Eq.(2) = −(16/17)ln(16/17) = 0.0570585. λ = 1 → 0.9496325.
    loss = losses.build_loss(Config(loss="wce_ewl"))
    assert isinstance(loss, WeightedCEPlusEntropyWeighting)
    assert isinstance(loss.wce, WeightedBinaryCrossentropy)
    value = loss(np.array([[1.0, 0.0]], np.float32), np.array([[0.8, 0.2]], np.float32))
    assert float(value) == pytest.approx(0.9496325, abs=1e-5)


def logit_gradient(name, labels, logits):
    loss = losses.build_loss(Config(loss=name))
    act = ops.softmax if losses.head_activation(name) == "softmax" else ops.sigmoid
    z = tf.Variable(np.asarray(logits, np.float32))
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(loss.call(tf.constant(labels, tf.float32), act(z)))
    return tape.gradient(value, z).numpy()


@pytest.mark.parametrize("name", READINGS)
def test_every_reading_raises_a_true_class_at_initialisation(name):
    # 14 outputs at z = 0 (softmax 1/14, sigmoid 1/2), class 0 true: descent must raise z0,
    # i.e. ∂L/∂z0 < 0 — the property the literal "ewl" lacks (tests/reproduce/losses/test_ewl_gradient.py).
    labels = np.zeros((1, 14), np.float32)
    labels[0, 0] = 1.0
    assert logit_gradient(name, labels, np.zeros((1, 14)))[0, 0] < 0
    assert logit_gradient("ewl", labels, np.zeros((1, 14)))[0, 0] > 0


def test_registered_with_their_heads_and_none_is_default():
    assert set(READINGS) <= set(losses.names())
    heads = {name: losses.head_activation(name) for name in READINGS}
    assert heads == {"ewl_neg": "softmax", "softmax_ce": "softmax",
                     "wce_ewl": "sigmoid", "ewl_sigmoid": "sigmoid"}
    assert {make().loss for make in PRESETS.values()} == {"wce"}


@pytest.mark.parametrize("name", READINGS)
def test_get_config_round_trip(name):
    loss = losses.build_loss(Config(loss=name, epsilon=1e-6))
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    y, p = np.array([[1.0, 0.0, 1.0]], np.float32), np.array([[0.6, 0.3, 0.4]], np.float32)
    assert float(restored(y, p)) == pytest.approx(float(loss(y, p)), abs=1e-7)


def test_saved_model_keeps_nested_wce_ewl(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="sigmoid")])
    model.compile(loss=WeightedCEPlusEntropyWeighting(WeightedBinaryCrossentropy(), 0.5))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.loss, WeightedCEPlusEntropyWeighting)
    assert loaded.loss.ewl_weight == 0.5
    assert loaded.loss.get_config() == model.loss.get_config()


def test_toy_experiment_readings_beat_chance():
    # The sign-flipped reading on the linear toy of tests/reproduce/losses/test_ewl_gradient.py: true classes rise
    # towards 1/e (not 1), and the ranking is right.
    result = toy_experiment("ewl_neg")
    assert result["mean_auc"] > 0.8
    assert 1.0 / 14 < result["mean_true_p"] < 0.5
