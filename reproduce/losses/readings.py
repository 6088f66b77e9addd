"""Plausible readings of Eq. (2). None is a default: "ewl" stays the literal paper loss.

Eq. (2) as printed, L = −Σ_i l_i·p_i·log p_i with p = softmax(z), LOWERS a true class's
probability whenever it is below 1/e (docs/entropy_weighting_loss.md derives
∂L/∂z_k = −Σ_i l_i (1 + log p_i) p_i (δ_ik − p_k)); a 14-way softmax starts near 1/14 < 1/e.
The readings below are what the authors may have meant; each is a row of the loss table in
`reproduce.losses` (name, class, head activation):

| name          | head    | per image                                                      |
| ------------- | ------- | -------------------------------------------------------------- |
| `ewl_neg`     | softmax | +Σ_i l_i p_i log p_i (sign flipped)                            |
| `softmax_ce`  | softmax | −Σ_i (l_i / Σ_j l_j) log p_i (0 for an all-zero row)           |
| `wce_ewl`     | sigmoid | Eq. (1) weighted CE + λ·Eq. (2) on softmax of the same logits   |
| `ewl_sigmoid` | sigmoid | Eq. (2) as printed, on the sigmoid head of the Eq. (1) model    |

The NumPy analysis of Eq. (2) that docs/entropy_weighting_loss.md derives is in
`reproduce/study/eq2_analysis.py`.
"""
from __future__ import annotations

import keras
from keras import ops

from reproduce.losses.paper import ProbabilityLoss, WeightedBinaryCrossentropy

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
    `wce` is the package's WeightedBinaryCrossentropy (as the run's config builds it).
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

    @classmethod
    def from_run(cls, config, manifest: dict | None = None) -> "WeightedCEPlusEntropyWeighting":
        return cls(WeightedBinaryCrossentropy.from_run(config, manifest), WCE_EWL_LAMBDA,
                   epsilon=config.epsilon)

    def get_config(self):
        return {**super().get_config(), "wce": keras.saving.serialize_keras_object(self.wce),
                "ewl_weight": self.ewl_weight, "epsilon": self.epsilon}
