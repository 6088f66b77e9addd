"""Do predicted scores reproduce the relations between labels? (the Eq. (2) study)

The paper claims the entropy weighting loss "digs relations between labels" (Abstract, §V) but
gives no measurement. Our choice of measurement: the Pearson correlation between the
off-diagonal entries of two 14×14 matrices,

- the phi coefficient between every pair of label columns of the REAL label file
  (phi = Pearson correlation of two 0/1 columns), and
- the Pearson correlation between every pair of predicted-score columns on the test set.

+1 means the model's scores co-vary exactly as the findings co-occur; 0 means no relation.
Pure NumPy, no TensorFlow: the caller reads files and draws figures.
"""
from __future__ import annotations

import numpy as np


def cooccurrence_counts(labels: np.ndarray) -> np.ndarray:
    """[C, C] counts of images positive for both classes; the diagonal is the class counts."""
    y = _as_2d(labels, "labels").astype(np.int64)
    return y.T @ y


def column_correlation(values: np.ndarray) -> np.ndarray:
    """[C, C] Pearson correlation between columns. A constant column has no correlation with
    anything, so its row and column are NaN (never 0, which would read as "unrelated")."""
    x = _as_2d(values, "values").astype(np.float64)
    centred = x - x.mean(axis=0)
    norms = np.sqrt((centred**2).sum(axis=0))
    constant = norms <= 1e-12 * max(1.0, float(np.abs(x).max(initial=0.0)))
    norms[constant] = 1.0
    corr = (centred.T @ centred) / np.outer(norms, norms)
    corr[constant, :] = np.nan
    corr[:, constant] = np.nan
    return np.clip(corr, -1.0, 1.0)


def phi_matrix(labels: np.ndarray) -> np.ndarray:
    """[C, C] phi coefficients of 0/1 label columns (= their Pearson correlation)."""
    y = _as_2d(labels, "labels")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0/1")
    return column_correlation(y)


def off_diagonal(matrix: np.ndarray) -> np.ndarray:
    """The strictly-upper-triangle entries (each class pair once), row by row."""
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {m.shape}")
    return m[np.triu_indices(m.shape[0], k=1)]


def relation_agreement(score_corr: np.ndarray, label_corr: np.ndarray) -> float:
    """Pearson r between the off-diagonal entries of the two matrices, over pairs where both are
    finite. NaN when fewer than 3 such pairs remain or either side is constant there."""
    a, b = off_diagonal(score_corr), off_diagonal(label_corr)
    if a.shape != b.shape:
        raise ValueError(f"matrices differ in size: {np.shape(score_corr)} vs {np.shape(label_corr)}")
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3:
        return float("nan")
    r = column_correlation(np.stack([a[keep], b[keep]], axis=1))[0, 1]
    return float(r)


def _as_2d(values, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise ValueError(f"{name} must be [N >= 2, C], got shape {arr.shape}")
    return arr
