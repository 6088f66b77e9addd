"""Eq. (1) and Eq. (2) (§III.B) against hand-computed values on 2×3 arrays, the weighting really
changing loss and gradients, serialisation round trips, and the loss registry."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from reproduce import losses
from reproduce.config import smoke
from reproduce.losses.paper import EntropyWeightingLoss, WeightedBinaryCrossentropy, batch_factors, dataset_factors

# Two images, three classes. 2 ones and 4 zeros → Wang et al.: β_P = 6/2 = 3, β_N = 6/4 = 1.5.
Y = np.array([[1, 0, 0], [0, 1, 0]], dtype="float32")
P = np.array([[0.8, 0.3, 0.1], [0.4, 0.6, 0.5]], dtype="float32")


def test_wce_batch_factors_match_wang_et_al():
    beta_p, beta_n = batch_factors(Y)
    assert float(beta_p) == pytest.approx(3.0) and float(beta_n) == pytest.approx(1.5)
    # Guard: no positives → β_P = 6/max(0,1) = 6 (finite), β_N = 6/6 = 1.
    beta_p, beta_n = batch_factors(np.zeros((2, 3), "float32"))
    assert float(beta_p) == pytest.approx(6.0) and float(beta_n) == pytest.approx(1.0)


def test_wce_batch_value_by_hand():
    # image 1: 3·(−ln .8) + 1.5·(−ln .7) + 1.5·(−ln .9) = 0.669431 + 0.535012 + 0.158041 = 1.362484
    # image 2: 1.5·(−ln .6) + 3·(−ln .6) + 1.5·(−ln .5) = 0.766238 + 1.532477 + 1.039721 = 3.338436
    # mean over images = 2.350460
    assert float(WeightedBinaryCrossentropy()(Y, P)) == pytest.approx(2.350460, abs=1e-5)


def test_wce_all_zero_batch_is_finite():
    # No positives: only −β_N·ln(1−p) terms, β_N = 1: (−ln .2 −ln .7 −ln .9 −ln .6 −ln .4 −ln .5)/2
    value = float(WeightedBinaryCrossentropy()(np.zeros((2, 3), "float32"), P))
    assert value == pytest.approx((1.609438 + 0.356675 + 0.105361 + 0.510826 + 0.916291 + 0.693147) / 2,
                                  abs=1e-5)


def _manifest3():
    return {"classes": ["A", "B", "C"],
            "splits": {"train": {"images": 10, "positives": {"A": 2, "B": 5, "C": 0}}}}


def test_dataset_factors_from_manifest():
    pos, neg = dataset_factors(_manifest3())
    # β_P,c = 10/pos_c (C: guard, 10/1); β_N,c = 10/(10 − pos_c)
    assert pos == pytest.approx([5.0, 2.0, 10.0])
    assert neg == pytest.approx([1.25, 2.0, 1.0])
    with pytest.raises(ValueError, match="training counts"):
        dataset_factors({"splits": {}})


def test_wce_dataset_value_by_hand():
    cfg = smoke().override(model="tiny", loss="wce", wce_factors="dataset")
    loss = losses.build_loss(cfg, _manifest3())
    # image 1: 5·0.223144 + 2·0.356675 + 1·0.105361 = 1.934429
    # image 2: 1.25·0.510826 + 2·0.510826 + 1·0.693147 = 2.353330;  mean = 2.143880
    assert float(loss(Y, P)) == pytest.approx(2.143880, abs=1e-5)


def test_wce_weighting_really_changes_loss_and_gradients():
    """Peers passed class weights that Keras silently ignored; ours must change loss and grads."""
    ones = WeightedBinaryCrossentropy("dataset", [1.0] * 3, [1.0] * 3)
    bce = keras.losses.BinaryCrossentropy()  # mean over classes; Eq. (1) sums them
    assert float(ones(Y, P)) == pytest.approx(3 * float(bce(Y, P)), abs=1e-5)
    p = tf.Variable(P)
    with tf.GradientTape(persistent=True) as tape:
        weighted = WeightedBinaryCrossentropy()(Y, p)
        plain = ones(Y, p)
    assert float(weighted) == pytest.approx(2.350460, abs=1e-5)
    assert float(plain) == pytest.approx(1.199990, abs=1e-5)  # (0.685180 + 1.714799)/2
    ratio = tape.gradient(weighted, p).numpy() / tape.gradient(plain, p).numpy()
    # Each element's gradient is scaled by its own factor: β_P = 3 on 1s, β_N = 1.5 on 0s.
    np.testing.assert_allclose(ratio, np.where(Y == 1, 3.0, 1.5), rtol=1e-5)


def test_ewl_value_by_hand():
    y = np.array([[1, 0, 0], [0, 1, 1]], "float32")
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], "float32")
    # image 1: −0.7·ln .7 = 0.249672;  image 2: −0.3·ln .3 − 0.6·ln .6 = 0.361192 + 0.306495
    # mean = (0.249672 + 0.667687)/2 = 0.458680
    assert float(EntropyWeightingLoss()(y, p)) == pytest.approx(0.458680, abs=1e-5)


def test_ewl_gradient_is_eq2_as_printed():
    # d/dp_i of −Σ l_i p_i ln p_i = −l_i (ln p_i + 1): positive for p_i < 1/e (not "fixed").
    y = np.array([[1, 0, 1]], "float32")
    p = tf.Variable([[0.2, 0.3, 0.5]])
    with tf.GradientTape() as tape:
        value = EntropyWeightingLoss()(y, p)
    expected = [[-(np.log(0.2) + 1), 0.0, -(np.log(0.5) + 1)]]  # [0.609438, 0, −0.306853]
    np.testing.assert_allclose(tape.gradient(value, p).numpy(), expected, rtol=1e-5)


def test_ewl_zero_probability_is_finite():
    y = np.array([[0, 1, 0]], "float32")
    p = tf.Variable([[1.0, 0.0, 0.0]])
    with tf.GradientTape() as tape:
        value = EntropyWeightingLoss()(y, p)
    grad = tape.gradient(value, p).numpy()
    assert float(value) == 0.0 and np.all(np.isfinite(grad))


@pytest.mark.parametrize("loss", [
    WeightedBinaryCrossentropy(),
    WeightedBinaryCrossentropy("dataset", [5, 2, 10], [1.25, 2, 1], epsilon=1e-6, name="w"),
    EntropyWeightingLoss(epsilon=1e-5),
])
def test_get_config_round_trip(loss):
    config = loss.get_config()
    assert type(loss).from_config(config).get_config() == config
    for key in ("factors", "positive_weights", "negative_weights", "epsilon"):
        if key in config:
            assert getattr(loss, key) == config[key]
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss) and restored.get_config() == config
    assert float(restored(Y, P)) == pytest.approx(float(loss(Y, P)))


@pytest.mark.parametrize("name", ["wce", "ewl"])
def test_model_with_loss_saves_and_loads_safely(tmp_path, name):
    from reproduce.models import build_model

    cfg = smoke().override(model="tiny", loss=name)
    model = build_model(cfg)
    model.compile(optimizer="adam", loss=losses.build_loss(cfg))
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 1)).astype("uint8")
    y = np.array([[1] + [0] * 13, [0, 1] + [0] * 12], "float32")
    model.train_on_batch(x, y)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert type(loaded.loss) is type(model.loss)
    assert loaded.loss.get_config() == model.loss.get_config()


def test_the_table_of_losses():
    """One row per loss: the paper's two first, each with its head; the class built for a run."""
    assert losses.names()[:2] == ("wce", "ewl")
    assert losses.head_activation("wce") == "sigmoid" and losses.head_activation("ewl") == "softmax"
    assert isinstance(losses.build_loss(smoke().override(loss="ewl")), EntropyWeightingLoss)
    assert isinstance(losses.build_loss(smoke().override(loss="wce")), WeightedBinaryCrossentropy)
    assert losses.build_loss(smoke().override(loss="ewl", epsilon=0.5)).epsilon == 0.5
    with pytest.raises(ValueError, match="unknown loss 'nope'; expected one of wce, ewl"):
        losses.head_activation("nope")
    with pytest.raises(ValueError, match="needs the manifest"):
        losses.build_loss(smoke().override(wce_factors="dataset"))
    assert {e.head for e in losses.LOSSES.values()} <= set(losses.HEADS)


def test_the_table_holds_every_reading_of_eq2_and_needs_no_keras():
    import subprocess
    import sys

    assert losses.reading_names() == ("ewl_neg", "softmax_ce", "wce_ewl", "ewl_sigmoid")
    code = ("import sys; from reproduce import losses, config; print(losses.names() == "
            "config.choices()['loss'], 'keras' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["True", "False"], done.stderr[-1500:]
