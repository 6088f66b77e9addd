"""Eq. (2) in NumPy: its per-class term, its gradient through the softmax, and a toy experiment.

docs/entropy_weighting_loss.md derives ∂L/∂z_k = −Σ_i l_i (1 + log p_i) p_i (δ_ik − p_k) for
L = −Σ_i l_i p_i log p_i, p = softmax(z); tests/reproduce/losses/test_ewl_gradient.py checks it against autodiff.
The toy experiment trains a linear softmax model with each loss's gradient and scores it.
"""
from __future__ import annotations

import numpy as np

def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def ewl_term(p: np.ndarray) -> np.ndarray:
    """One positive class's Eq. (2) term, −p·log p (0 at p = 0 and 1, maximal 1/e at p = 1/e)."""
    p = np.asarray(p, dtype=np.float64)
    return -p * np.log(np.where(p > 0, p, 1.0))


def ewl_logit_gradient(labels: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """∂L/∂z_k = −Σ_i l_i (1 + log p_i) p_i (δ_ik − p_k) per image, L = Eq. (2), p = softmax(z)."""
    p = softmax(np.asarray(logits, dtype=np.float64))
    g = np.asarray(labels, dtype=np.float64) * (1.0 + np.log(p)) * p  # g_i = l_i (1+log p_i) p_i
    return -(g - p * g.sum(axis=-1, keepdims=True))


def _logit_gradient(loss: str, labels: np.ndarray, logits: np.ndarray) -> np.ndarray:
    if loss == "ewl":
        return ewl_logit_gradient(labels, logits)
    if loss == "ewl_neg":
        return -ewl_logit_gradient(labels, logits)
    if loss == "softmax_ce":  # ∂/∂z of −Σ t log softmax(z) = p·Σt − t
        t = labels / np.maximum(labels.sum(axis=-1, keepdims=True), 1.0)
        return softmax(logits) * t.sum(axis=-1, keepdims=True) - t
    raise ValueError(f"toy experiment supports ewl, ewl_neg, softmax_ce; got {loss!r}")


def toy_labels(rng, n: int, classes: int = 14) -> np.ndarray:
    """Multi-hot rows with 0/1/2 findings in ChestX-ray14's proportions (54/28/18%, real file)."""
    y = np.zeros((n, classes))
    k = rng.choice(3, size=n, p=(0.54, 0.28, 0.18))
    for row, count in enumerate(k):
        y[row, rng.choice(classes, size=count, replace=False)] = 1.0
    return y


def toy_experiment(loss: str, seed: int = 0, n: int = 2000, dim: int = 32,
                   steps: int = 300, lr: float = 1.0) -> dict:
    """A linear softmax model trained by full-batch gradient descent from zero weights (so every
    p starts at exactly 1/14) on linearly separable data x = M·l + noise; scored on fresh data.
    Returns mean test AUC and the mean probability of the true classes on the test set."""
    from reproduce.metrics import mean_auc, roc_auc_per_class

    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(14, dim))
    y_train, y_test = toy_labels(rng, n), toy_labels(rng, n)
    x_train = y_train @ mixing + 0.5 * rng.normal(size=(n, dim))
    x_test = y_test @ mixing + 0.5 * rng.normal(size=(n, dim))
    weights, bias = np.zeros((dim, 14)), np.zeros(14)
    for _ in range(steps):
        grad = _logit_gradient(loss, y_train, x_train @ weights + bias) / n
        weights -= lr * x_train.T @ grad
        bias -= lr * grad.sum(axis=0)
    p = softmax(x_test @ weights + bias)
    aucs = roc_auc_per_class(y_test, p, [f"c{j}" for j in range(14)])
    return {"loss": loss, "mean_auc": mean_auc(aucs), "min_auc": min(aucs.values()),
            "max_auc": max(aucs.values()), "mean_true_p": float(p[y_test == 1].mean())}
