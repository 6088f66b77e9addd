"""Evaluation metrics (paper §IV.C: "AUC score is used for model performance measurement").

Pure NumPy / scikit-learn: no TensorFlow import, no printing. Functions take arrays and return
dicts; callers print and write files.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import roc_auc_score


class DegenerateClassWarning(UserWarning):
    """A class has only one label value in the evaluated set: its AUC is undefined (NaN)."""


def roc_auc_per_class(labels: np.ndarray, scores: np.ndarray, class_names) -> dict[str, float]:
    """Per-class ROC AUC. A class whose labels are all 0 or all 1 gets NaN and a warning, never 0."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 2 or labels.shape[1] != len(class_names):
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} must both be [N, {len(class_names)}]")
    result = {}
    for j, name in enumerate(class_names):
        y = labels[:, j]
        if y.min(initial=1) == y.max(initial=0):
            warnings.warn(f"{name}: only one label value in the evaluated set; AUC is NaN",
                          DegenerateClassWarning, stacklevel=2)
            result[name] = float("nan")
        else:
            result[name] = float(roc_auc_score(y, scores[:, j]))
    return result


def mean_auc(aucs: dict[str, float]) -> float:
    """Table I's AVE: the unweighted mean over classes (NaN classes left out; NaN if all are)."""
    values = np.array(list(aucs.values()), dtype=np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
