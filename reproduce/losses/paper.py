"""The two losses of Mo & Cai (2019) §III.B, as Keras losses (registered at definition).

Both losses take PROBABILITIES (the head's sigmoid or softmax output), as the paper writes them,
and use only `keras.ops`, so they run under any Keras backend and inside a compiled train step.

- `WeightedBinaryCrossentropy`: Eq. (1) with the positive/negative factors the paper mentions
  ("a positive factor can be multiplied with the first part"). The paper does not give the
  factors; our default is its reference [5] (Wang et al. 2017), per batch.
- `EntropyWeightingLoss`: Eq. (2), exactly as printed, on a softmax head (§III.B "Following the
  fully connected layer, softmax produced probability of each class").

`reproduce.losses` (the package) maps a loss name (`Config.loss`) to its class and head
activation; each class builds itself for a run with `from_run(config, manifest)`.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops



def global_sum(value):
    """`value` summed over all replicas of the running tf.distribute step (itself on one device).

    The one TensorFlow call of this module, as in Keras' own synchronized BatchNorm
    (keras/src/backend/tensorflow/nn.py, _compute_moments_sync): a per-replica share of the
    batch must not change what a loss computes from the whole batch."""
    if keras.backend.backend() != "tensorflow":
        return value
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def batch_factors(y_true):
    """Wang et al. 2017 (ref [5]) Eq. (1) factors from the GLOBAL batch's label matrix [B, C].

    β_P = (|P|+|N|)/|P|, β_N = (|P|+|N|)/|N|, with |P|, |N| the numbers of 1s and 0s in the whole
    matrix — of the whole batch of 32 (§IV.B), also when each of N replicas sees 32/N images
    (`global_sum`). Guard (our choice): a batch with no positives (or no negatives) would give
    β = ∞ and ∞·0 = NaN; we use max(|P|, 1) (resp. |N|), which is harmless because that factor
    then only multiplies terms that are all zero.
    """
    y_true = ops.cast(y_true, "float32")
    counts = global_sum(ops.stack([ops.cast(ops.size(y_true), "float32"), ops.sum(y_true)]))
    total, n_pos = counts[0], counts[1]
    n_neg = total - n_pos
    return total / ops.maximum(n_pos, 1.0), total / ops.maximum(n_neg, 1.0)


def dataset_factors(manifest: dict, classes=None) -> tuple[list[float], list[float]]:
    """Fixed per-class factors from the TRAINING split's counts in manifest.json (our option).

    For class c with pos_c positives among n training images: β_P,c = n/pos_c and
    β_N,c = n/(n−pos_c) — Wang et al.'s formula applied per class over the whole training split
    instead of per batch over all classes. Same guard as `batch_factors`: counts of 0 are read
    as 1 (a class with no training positives then gets β_P,c = n, finite).
    """
    from data_prep.schema import CLASSES

    classes = classes or manifest.get("classes") or CLASSES
    try:
        train = manifest["splits"]["train"]
        n = float(train["images"])
        positives = [float(train["positives"][c]) for c in classes]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"manifest has no training counts for dataset factors (missing {exc})") from None
    pos = [n / max(p, 1.0) for p in positives]
    neg = [n / max(n - p, 1.0) for p in positives]
    return pos, neg


@keras.saving.register_keras_serializable(package="reproduce")
class WeightedBinaryCrossentropy(keras.losses.Loss):
    """Eq. (1) with factors: per image Σ_c[−β_P·l_c·log p_c − β_N·(1−l_c)·log(1−p_c)].

    factors="batch" (default, Wang et al. [5]): β_P, β_N scalars recomputed from every global
    batch's labels (`batch_factors`). factors="dataset": `positive_weights` / `negative_weights` are
    per-class lists (`dataset_factors`). The batch loss is the mean of the per-image losses.
    Probabilities are clipped to [ε, 1−ε] before the log (our choice: a finite loss when a sigmoid
    saturates; the paper gives no guard).
    """

    def __init__(self, factors="batch", positive_weights=None, negative_weights=None,
                 epsilon=1e-7, reduction="sum_over_batch_size",
                 name="weighted_binary_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if factors not in ("batch", "dataset"):
            raise ValueError(f"factors must be 'batch' or 'dataset', got {factors!r}")
        if factors == "dataset" and (positive_weights is None or negative_weights is None):
            raise ValueError("factors='dataset' needs positive_weights and negative_weights")
        self.factors = factors
        # Plain lists of floats so get_config() is JSON-serialisable and round-trips exactly.
        self.positive_weights = None if positive_weights is None else [float(w) for w in positive_weights]
        self.negative_weights = None if negative_weights is None else [float(w) for w in negative_weights]
        self.epsilon = float(epsilon)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        p = ops.clip(y_pred, self.epsilon, 1.0 - self.epsilon)
        if self.factors == "batch":
            beta_p, beta_n = batch_factors(y_true)
            beta_p, beta_n = ops.cast(beta_p, p.dtype), ops.cast(beta_n, p.dtype)
        else:
            beta_p = ops.convert_to_tensor(np.asarray(self.positive_weights), dtype=p.dtype)
            beta_n = ops.convert_to_tensor(np.asarray(self.negative_weights), dtype=p.dtype)
        per_class = -beta_p * y_true * ops.log(p) - beta_n * (1.0 - y_true) * ops.log(1.0 - p)
        return ops.sum(per_class, axis=-1)  # Eq. (1): Σ over classes, one value per image

    @classmethod
    def from_run(cls, config, manifest: dict | None = None) -> "WeightedBinaryCrossentropy":
        """Eq. (1) as `config` asks: Wang et al.'s per-batch factors, or fixed per-class factors
        from the training split's counts in `manifest` (config.wce_factors = "dataset")."""
        if config.wce_factors == "dataset":
            if manifest is None:
                raise ValueError("wce_factors='dataset' needs the manifest (training-split counts)")
            pos, neg = dataset_factors(manifest)
            return cls("dataset", pos, neg, epsilon=config.epsilon)
        return cls("batch", epsilon=config.epsilon)

    def get_config(self):
        return {**super().get_config(), "factors": self.factors,
                "positive_weights": self.positive_weights,
                "negative_weights": self.negative_weights, "epsilon": self.epsilon}


class ProbabilityLoss(keras.losses.Loss):
    """Base of the losses on softmax probabilities: an `epsilon` that guards the log only.

    p is clipped to [ε, 1−ε] only inside the log (our choice), so a probability that underflows
    to 0 gives 0·log ε = 0 instead of 0·(−∞) = NaN, and the gradient through a p factor is kept."""

    def __init__(self, epsilon=1e-7, reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.epsilon = float(epsilon)

    @classmethod
    def from_run(cls, config, manifest: dict | None = None) -> "ProbabilityLoss":
        """The loss of a run: its config's epsilon (the manifest is not needed)."""
        return cls(epsilon=config.epsilon)

    def clipped_log(self, p):
        return ops.log(ops.clip(p, self.epsilon, 1.0 - self.epsilon))

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="reproduce")
class EntropyWeightingLoss(ProbabilityLoss):
    """Eq. (2) exactly as printed: per image −Σ_i l_i·p_i·log(p_i), p = softmax output.

    Not "fixed" on purpose (its behaviour is studied in docs/entropy_weighting_loss.md): −p·log p
    grows with p for p < 1/e, so the loss is not monotone in the true classes' p. The batch loss
    is the mean over images.
    """

    def __init__(self, epsilon=1e-7, reduction="sum_over_batch_size",
                 name="entropy_weighting_loss", dtype=None):
        super().__init__(epsilon=epsilon, reduction=reduction, name=name, dtype=dtype)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        return -ops.sum(y_true * y_pred * self.clipped_log(y_pred), axis=-1)  # Eq. (2), per image
