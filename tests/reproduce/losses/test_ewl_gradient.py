"""Eq. (2) under the microscope: the derived logit gradient against autodiff on the
package's own EntropyWeightingLoss, hand-computed cases, and the toy experiment showing that
the literal loss lowers the true classes. Runtime: about 5 s."""
import math

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from reproduce.study.eq2_analysis import ewl_logit_gradient, ewl_term, softmax, toy_experiment
from reproduce.losses.paper import EntropyWeightingLoss


def autodiff_gradient(labels, logits):
    """∂/∂z of Σ_images Eq.(2)(softmax(z)) through the package's loss, by tf.GradientTape."""
    z = tf.Variable(np.asarray(logits, dtype=np.float64))
    with tf.GradientTape() as tape:
        per_image = EntropyWeightingLoss().call(tf.constant(labels, tf.float64), ops.softmax(z, axis=-1))
        total = tf.reduce_sum(per_image)
    return total.numpy(), tape.gradient(total, z).numpy()


def test_derived_gradient_equals_autodiff_on_random_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(16, 14))
    labels = (rng.random((16, 14)) < 0.2).astype(np.float64)
    labels[:3] = 0.0  # "No Finding" rows
    labels[3, :5] = 1.0  # many positives
    _, auto = autodiff_gradient(labels, logits)
    derived = ewl_logit_gradient(labels, logits)
    np.testing.assert_allclose(derived, auto, rtol=1e-6, atol=1e-9)
    significant = np.abs(auto) > 1e-6
    assert significant.sum() > 100
    assert (np.sign(derived[significant]) == np.sign(auto[significant])).all()


def test_hand_computed_three_classes_true_class_pushed_down():
    # z = 0 → p = 1/3 < 1/e, true class 0. L = −(1/3)log(1/3) = 0.366204.
    # g = (1 + log(1/3))/3 = −0.0328708; ∂L/∂z0 = −g(1 − 1/3) = +0.0219138 (descent LOWERS z0),
    # ∂L/∂z1 = ∂L/∂z2 = g/3 = −0.0109569 (descent RAISES the absent classes).
    loss, grad = autodiff_gradient(np.array([[1.0, 0.0, 0.0]]), np.zeros((1, 3)))
    assert loss == pytest.approx(0.366204, abs=1e-6)
    np.testing.assert_allclose(grad[0], [0.0219138, -0.0109569, -0.0109569], atol=1e-7)
    np.testing.assert_allclose(ewl_logit_gradient([[1.0, 0.0, 0.0]], np.zeros((1, 3)))[0],
                               [0.0219138, -0.0109569, -0.0109569], atol=1e-7)


def test_hand_computed_above_one_over_e_true_class_pushed_up():
    # Two classes, z = 0 → p = 1/2 > 1/e: g = 0.5(1 + log 0.5) = 0.153426,
    # ∂L/∂z0 = −g/2 = −0.076713 (descent RAISES the true class above 1/e).
    _, grad = autodiff_gradient(np.array([[1.0, 0.0]]), np.zeros((1, 2)))
    np.testing.assert_allclose(grad[0], [-0.076713, 0.076713], atol=1e-6)


def test_stationary_at_one_over_e():
    # One true class at exactly p = 1/e among 14: z0 = log(13/(e−1)), others 0 → zero gradient.
    logits = np.zeros((1, 14))
    logits[0, 0] = math.log(13.0 / (math.e - 1.0))
    labels = np.zeros((1, 14))
    labels[0, 0] = 1.0
    assert softmax(logits)[0, 0] == pytest.approx(1.0 / math.e)
    _, grad = autodiff_gradient(labels, logits)
    np.testing.assert_allclose(grad, 0.0, atol=1e-12)


def test_two_true_classes_sharing_mass_are_stationary():
    # Both classes true at p = 1/2 each: g0 = g1, so ∂L/∂z_k = −(g_k − p_k(g0+g1)) = 0.
    _, grad = autodiff_gradient(np.array([[1.0, 1.0]]), np.zeros((1, 2)))
    np.testing.assert_allclose(grad, 0.0, atol=1e-12)


def test_no_finding_row_gives_zero_loss_and_zero_gradient():
    logits = np.random.default_rng(1).normal(size=(2, 14))
    loss, grad = autodiff_gradient(np.zeros((2, 14)), logits)
    assert loss == 0.0
    assert not grad.any()
    # ...and through Keras' own reduction (mean over the batch) as training uses it.
    value = EntropyWeightingLoss()(np.zeros((2, 14), np.float32), softmax(logits).astype(np.float32))
    assert float(value) == 0.0


def test_per_class_term_shape():
    p = np.array([0.0, 1.0 / 14, 1.0 / math.e, 1.0])
    np.testing.assert_allclose(ewl_term(p), [0.0, math.log(14) / 14, 1.0 / math.e, 0.0], atol=1e-12)


def test_literal_loss_lowers_true_classes_and_inverts_auc():
    """Linear softmax model, separable data, every p starts at 1/14. Fails if the claim is wrong."""
    literal = toy_experiment("ewl")
    reference = toy_experiment("softmax_ce")
    assert literal["mean_true_p"] < 0.1 / 14  # driven far below its starting value 1/14
    assert literal["mean_auc"] < 0.5 and literal["max_auc"] < 0.5  # every class inverted
    assert reference["mean_auc"] > 0.8
    assert reference["mean_true_p"] > 1.0 / 14
