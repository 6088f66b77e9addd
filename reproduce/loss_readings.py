"""Plausible readings of Eq. (2) (issue 5). None is a default: "ewl" stays the literal paper loss.

Eq. (2) as printed, L = −Σ_i l_i·p_i·log p_i with p = softmax(z), LOWERS a true class's
probability whenever it is below 1/e (docs/entropy_weighting_loss.md derives
∂L/∂z_k = −Σ_i l_i (1 + log p_i) p_i (δ_ik − p_k)); a 14-way softmax starts near 1/14 < 1/e.
The readings below are what the authors may have meant; each registers itself with
`reproduce.losses.register_loss` under the name given, with the head activation it needs:

| name          | head    | per image                                                      |
| ------------- | ------- | -------------------------------------------------------------- |
| `ewl_neg`     | softmax | +Σ_i l_i p_i log p_i (sign flipped)                            |
| `softmax_ce`  | softmax | −Σ_i (l_i / Σ_j l_j) log p_i (0 for an all-zero row)           |
| `wce_ewl`     | sigmoid | Eq. (1) weighted CE + λ·Eq. (2) on softmax of the same logits   |
| `ewl_sigmoid` | sigmoid | Eq. (2) as printed, on the sigmoid head of the Eq. (1) model    |

The NumPy half of this module (`softmax`, `ewl_term`, `ewl_logit_gradient`, `toy_experiment`)
is the analysis the doc and tests/test_ewl_gradient.py check against autodiff.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

from reproduce import losses
from reproduce.losses import ProbabilityLoss

READINGS = ("ewl_neg", "softmax_ce", "wce_ewl", "ewl_sigmoid")
WCE_EWL_LAMBDA = 1.0  # our choice: the plain sum; the paper gives no weight, and tuning λ on
#                       the synthetic test set would be selection on the test set.


@keras.saving.register_keras_serializable(package="reproduce")
class NegatedEntropyWeightingLoss(ProbabilityLoss):
    """Reading "ewl_neg" (softmax head): minimise +Σ_i l_i·p_i·log p_i, i.e. Eq. (2) sign flipped.

    Reasoning: a missing minus sign is the smallest edit that makes the true classes' terms
    useful at initialisation — the gradient raises p_i while p_i < 1/e. But p·log p is minimal
    AT p = 1/e, so this reading pushes a true class towards 1/e, not towards 1 (and lowers it
    again above 1/e): a ranking signal, not a calibrated probability. All-zero rows: zero loss.
    """

    def __init__(self, epsilon=1e-7, reduction="sum_over_batch_size",
                 name="negated_entropy_weighting_loss", dtype=None):
        super().__init__(epsilon=epsilon, reduction=reduction, name=name, dtype=dtype)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        return ops.sum(y_true * y_pred * self.clipped_log(y_pred), axis=-1)  # −(Eq. 2)


@keras.saving.register_keras_serializable(package="reproduce")
class NormalizedSoftmaxCrossentropy(ProbabilityLoss):
    """Reading "softmax_ce" (softmax head): −Σ_i t_i log p_i with t = l / Σ_j l_j.

    Reasoning: §III.B says a softmax follows the FC layer and the loss takes "the overall
    perspective of all pathological classes"; the standard loss with exactly that head on
    multi-hot targets is softmax cross-entropy with the targets normalised to sum 1 (Mahajan et
    al., ECCV 2018, for hashtag labels). It raises every true class for every p < 1.
    All-zero rows ("No Finding", 54% of ChestX-ray14): t = 0, so zero loss and zero gradient —
    our choice, the same treatment Eq. (2) gives them; a 15th "no finding" output would change
    the paper's 14-output head.
    """

    def __init__(self, epsilon=1e-7, reduction="sum_over_batch_size",
                 name="normalized_softmax_crossentropy", dtype=None):
        super().__init__(epsilon=epsilon, reduction=reduction, name=name, dtype=dtype)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        target = y_true / ops.maximum(ops.sum(y_true, axis=-1, keepdims=True), 1.0)
        return -ops.sum(target * self.clipped_log(y_pred), axis=-1)


@keras.saving.register_keras_serializable(package="reproduce")
class WeightedCEPlusEntropyWeighting(keras.losses.Loss):
    """Reading "wce_ewl" (sigmoid head): Eq. (1) weighted CE + λ·Eq. (2).

    Reasoning: §I lists "we experiment with two ways to calculate loss", and Eq. (2) is
    introduced as a modification of Eq. (1) that adds the label relations; a sum keeps Eq. (1)'s
    per-class signal and adds the cross-class term. Head decision (our choice): ONE sigmoid head,
    whose outputs are the scores (as for wce). Eq. (2) needs a softmax, so it is applied to the
    same logits, recovered from the sigmoid output as z = log p − log(1−p) (p clipped to
    [ε, 1−ε]); softmax(z) is then exactly the softmax head the paper describes. λ: WCE_EWL_LAMBDA.
    `wce` is the package's WeightedBinaryCrossentropy (built by `losses.build_loss`).
    """

    def __init__(self, wce, ewl_weight=WCE_EWL_LAMBDA, epsilon=1e-7,
                 reduction="sum_over_batch_size", name="wce_plus_entropy_weighting", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if isinstance(wce, dict):
            wce = keras.saving.deserialize_keras_object(wce)
        if not isinstance(wce, keras.losses.Loss):
            raise ValueError(f"wce must be a keras Loss, got {type(wce).__name__}")
        self.wce = wce
        self.ewl_weight = float(ewl_weight)
        self.epsilon = float(epsilon)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        p = ops.clip(y_pred, self.epsilon, 1.0 - self.epsilon)
        q = ops.softmax(ops.log(p) - ops.log(1.0 - p), axis=-1)
        log_q = ops.log(ops.clip(q, self.epsilon, 1.0 - self.epsilon))
        ewl = -ops.sum(y_true * q * log_q, axis=-1)
        return self.wce.call(y_true, y_pred) + self.ewl_weight * ewl

    def get_config(self):
        return {**super().get_config(), "wce": keras.saving.serialize_keras_object(self.wce),
                "ewl_weight": self.ewl_weight, "epsilon": self.epsilon}


# --- registration (losses.py imports this module lazily) -----------------------------------------
def _wce_ewl(config, manifest):
    wce = losses.build_loss(config.override(loss="wce"), manifest)
    return WeightedCEPlusEntropyWeighting(wce, WCE_EWL_LAMBDA, epsilon=config.epsilon)


def _ewl_sigmoid(config, manifest):
    # Reading "ewl_sigmoid": the literal Eq. (2) loss object, but on the sigmoid head of the Eq. (1)
    # model — what a Keras implementation gets if only the loss is swapped (§IV.B "implemented by
    # Keras"). Each class is then independent: a sigmoid starts at 0.5 > 1/e, so true classes are
    # pushed UP towards 1, and absent classes get no gradient at all.
    return losses.EntropyWeightingLoss(epsilon=config.epsilon)


losses.register_loss("ewl_neg", lambda c, m: NegatedEntropyWeightingLoss(c.epsilon), "softmax")
losses.register_loss("softmax_ce", lambda c, m: NormalizedSoftmaxCrossentropy(c.epsilon), "softmax")
losses.register_loss("wce_ewl", _wce_ewl, "sigmoid")
losses.register_loss("ewl_sigmoid", _ewl_sigmoid, "sigmoid")


# --- NumPy analysis of Eq. (2) -------------------------------------------------------------------
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
