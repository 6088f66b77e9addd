"""Evaluation metrics (paper §IV.C: "AUC score is used for model performance measurement"), and
Cohen's kappa for the agreement of two binary labellings (NIH's text-mined labels vs radiologists).

Pure NumPy / scikit-learn: no TensorFlow import, no printing. Functions take arrays and return
dicts; callers print and write files.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn.metrics import roc_auc_score


class DegenerateClassWarning(UserWarning):
    """A class has only one label value in the evaluated set: its AUC is undefined (NaN)."""


def check_inputs(labels, scores, where: str = "metrics"):
    """(labels int64, scores float64) after refusing what would give a silently wrong number:
    labels other than 0/1 (a −1/+1 coding would count every −1 as a negative and the CI would
    look fine) and non-finite scores (a NaN would sort as the highest score)."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.size and not np.isin(labels, (0, 1)).all():
        bad = np.unique(labels[~np.isin(labels, (0, 1))])[:3]
        raise ValueError(f"{where}: labels must be 0 or 1, found {bad.tolist()}")
    if not np.isfinite(scores).all():
        raise ValueError(f"{where}: scores must be finite, found {int((~np.isfinite(scores)).sum())} "
                         "NaN/inf")
    return labels.astype(np.int64), scores


def roc_auc_per_class(labels: np.ndarray, scores: np.ndarray, class_names) -> dict[str, float]:
    """Per-class ROC AUC. A class whose labels are all 0 or all 1 gets NaN and a warning, never 0."""
    labels, scores = check_inputs(labels, scores, "roc_auc_per_class")
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


def roc_curve_per_class(labels: np.ndarray, scores: np.ndarray, class_names) -> dict[str, dict]:
    """Per-class ROC curve points for Figure 1: {name: {"fpr", "tpr", "auc"}}.

    A single-valued class gets NaN AUC, an empty curve and a DegenerateClassWarning."""
    from sklearn.metrics import roc_curve

    aucs = roc_auc_per_class(labels, scores, class_names)  # checks labels and scores
    labels = np.asarray(labels)
    curves = {}
    for j, name in enumerate(class_names):
        if np.isnan(aucs[name]):
            curves[name] = {"fpr": np.array([]), "tpr": np.array([]), "auc": aucs[name]}
            continue
        fpr, tpr, _ = roc_curve(labels[:, j], np.asarray(scores, dtype=np.float64)[:, j])
        curves[name] = {"fpr": fpr, "tpr": tpr, "auc": aucs[name]}
    return curves


# --- bootstrap CI over patients ------------------------------------------------------------------
# Our choice (the paper reports no uncertainty): percentile bootstrap, resampling PATIENTS with
# replacement and taking all their images, because images of one patient are correlated (§IV.A
# splits "by patient individually"); resampling images would understate the variance.


def _tie_groups(scores_sorted: np.ndarray) -> np.ndarray:
    """Group id per sorted score; equal scores share a group (ties count 0.5 in the AUC)."""
    return np.concatenate([[0], np.cumsum(np.diff(scores_sorted) != 0)])


def _weighted_auc(y_sorted: np.ndarray, groups: np.ndarray, weights: np.ndarray) -> float:
    """Mann–Whitney AUC with integer case weights (a bootstrap resample) over pre-sorted scores.

    AUC = Σ_pos w·(W_neg below + ½ W_neg tied) / (W_pos · W_neg); NaN if a class is single-valued."""
    w_pos = weights * y_sorted
    w_neg = weights - w_pos
    total_pos, total_neg = w_pos.sum(), w_neg.sum()
    if total_pos == 0 or total_neg == 0:
        return float("nan")
    neg_g = np.bincount(groups, weights=w_neg)
    pos_g = np.bincount(groups, weights=w_pos)
    below = np.cumsum(neg_g) - neg_g
    return float(np.dot(pos_g, below + 0.5 * neg_g) / (total_pos * total_neg))


def percentile_ci(values: np.ndarray, alpha: float) -> tuple[float, float, int]:
    """(low, high, how many finite values) of the percentile interval at level 1 − alpha; the
    non-finite values (a resample where the statistic is undefined) are left out."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan"), 0
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high), int(values.size)


def bootstrap_auc_ci(labels, scores, patient_ids, class_names, n_resamples: int = 1000,
                     seed: int = 0, alpha: float = 0.05) -> dict:
    """Percentile-bootstrap CIs of each class's AUC and of their mean (Table I's AVE), resampling
    patients with replacement (all images of a drawn patient, as many times as it is drawn).

    A resample in which a class is single-valued is skipped for that class; `n_resamples_used`
    says how many were used. The mean's resample is used only when every class that is defined on
    the full set is defined in it. Deterministic for a given `seed`.
    Returns {"per_class": {name: {auc, ci_low, ci_high, n_resamples_used}}, "mean": {...},
    "n_resamples", "seed", "alpha", "n_patients", "n_images", "method"}."""
    labels, scores = check_inputs(labels, scores, "bootstrap_auc_ci")
    point = roc_auc_per_class(labels, scores, class_names)  # validates shapes, warns on degenerate
    boot, n_patients = bootstrap_auc_resamples(labels, scores, patient_ids, class_names, point,
                                               n_resamples, seed)
    return _summarise_bootstrap(boot, point, class_names, alpha, seed, n_patients, labels.shape[0])


def bootstrap_auc_ci_runs(labels, scores_by_run, patient_ids, class_names, n_resamples: int = 1000,
                          seed: int = 0, alpha: float = 0.05) -> dict:
    """`bootstrap_auc_ci` of several runs scored on the same images (e.g. one run per training
    seed), and of their mean AUC per class. Every run is scored on the same patient resamples
    (they depend only on `seed` and the patients), so a resample's mean over runs is the
    seed-averaged AUC of that resampled test set: its CI is test-set sampling of the mean, and
    adds nothing for training randomness (the spread over runs says that).
    Returns {"runs": [bootstrap_auc_ci result per run], "mean_over_runs": the same layout, each
    auc the mean over runs (its "mean" = Table I's AVE of those means = the mean of the runs' AVEs)}."""
    if not len(scores_by_run):
        raise ValueError("bootstrap_auc_ci_runs: no runs")
    points, boots, runs = [], [], []
    for scores in scores_by_run:
        labels, scores = check_inputs(labels, scores, "bootstrap_auc_ci_runs")
        point = roc_auc_per_class(labels, scores, class_names)
        boot, n_patients = bootstrap_auc_resamples(labels, scores, patient_ids, class_names, point,
                                                   n_resamples, seed)
        points.append(point)
        boots.append(boot)
        runs.append(_summarise_bootstrap(boot, point, class_names, alpha, seed, n_patients, labels.shape[0]))
    # Same labels in every run: a class is undefined (NaN) in all runs or in none.
    mean_point = {name: float(np.mean([p[name] for p in points])) for name in class_names}
    mean = _summarise_bootstrap(np.mean(boots, axis=0), mean_point, class_names, alpha, seed,
                                n_patients, labels.shape[0])
    return {"runs": runs, "mean_over_runs": mean}


def patient_resamples(patient_ids, n_resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The patient draws of every bootstrap in this package: (counts [n_resamples, n_patients],
    how many times each patient is drawn in each resample; code [N], each image's patient column).
    An image's weight in resample b is counts[b, code]. Resample b draws n_patients patients with
    replacement from `np.random.default_rng(seed)`, in order, so a resample depends only on the
    seed and the sorted patient ids: two runs (or two metrics) on the same images are paired."""
    patients, code = np.unique(np.asarray(patient_ids), return_inverse=True)
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_resamples, patients.size), dtype=np.int64)
    for b in range(n_resamples):
        counts[b] = np.bincount(rng.integers(0, patients.size, patients.size), minlength=patients.size)
    return counts, code


def bootstrap_auc_resamples(labels, scores, patient_ids, class_names, point, n_resamples, seed):
    """([n_resamples, n_classes] AUCs of the patient resamples (NaN: class undefined or not
    defined in `point`), n_patients). A class's resamples are scored RESAMPLE_CHUNK at a time
    (`_weighted_auc_rows`); the sums are of integer case weights, exact in float64, so the
    numbers are those of `_weighted_auc` one resample at a time, bit for bit."""
    patient_ids = np.asarray(patient_ids)
    if patient_ids.shape != (labels.shape[0],):
        raise ValueError(f"patient_ids {patient_ids.shape} must be [N={labels.shape[0]}]")
    counts, code = patient_resamples(patient_ids, n_resamples, seed)
    boot = np.full((n_resamples, len(class_names)), np.nan)
    for j, name in enumerate(class_names):
        if not np.isfinite(point[name]):
            continue
        order = np.argsort(scores[:, j], kind="stable")
        groups = _tie_groups(scores[order, j])
        starts = np.flatnonzero(np.r_[True, np.diff(groups) != 0])
        y_sorted, code_sorted = labels[order, j].astype(np.float64), code[order]
        for lo in range(0, n_resamples, RESAMPLE_CHUNK):
            weights = counts[lo:lo + RESAMPLE_CHUNK][:, code_sorted].astype(np.float64)
            boot[lo:lo + RESAMPLE_CHUNK, j] = _weighted_auc_rows(y_sorted, starts, weights)
    return boot, counts.shape[1]


RESAMPLE_CHUNK = 64  # resamples scored at once: 64 × N float64 per array (11 MB at 22k test images)


def _weighted_auc_rows(y_sorted: np.ndarray, starts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`_weighted_auc` of every row of `weights` [B, N] (scores pre-sorted; `starts`: the first
    index of each group of tied scores); NaN where a row has no positive or no negative weight."""
    w_pos = weights * y_sorted
    pos_g = np.add.reduceat(w_pos, starts, axis=1)
    neg_g = np.add.reduceat(weights - w_pos, starts, axis=1)
    below = np.cumsum(neg_g, axis=1) - neg_g
    total = pos_g.sum(axis=1) * neg_g.sum(axis=1)
    concordant = np.sum(pos_g * (below + 0.5 * neg_g), axis=1)
    return np.divide(concordant, total, out=np.full(total.shape, np.nan), where=total > 0)


def _summarise_bootstrap(boot, point, class_names, alpha, seed, n_patients, n_images) -> dict:
    per_class = {}
    for j, name in enumerate(class_names):
        low, high, used = percentile_ci(boot[:, j], alpha)
        per_class[name] = {"auc": point[name], "ci_low": low, "ci_high": high, "n_resamples_used": used}
    defined = np.array([np.isfinite(point[n]) for n in class_names])
    means = np.full(boot.shape[0], np.nan)
    if defined.any():
        complete = np.isfinite(boot[:, defined]).all(axis=1)
        means[complete] = boot[complete][:, defined].mean(axis=1)
    low, high, used = percentile_ci(means, alpha)
    return {
        "per_class": per_class,
        "mean": {"auc": mean_auc(point), "ci_low": low, "ci_high": high, "n_resamples_used": used},
        "n_resamples": int(boot.shape[0]), "seed": seed, "alpha": alpha,
        "n_patients": int(n_patients), "n_images": int(n_images),
        "method": "percentile bootstrap over patients",
    }


# --- DeLong test ---------------------------------------------------------------------------------
# Our choice (the paper gives no significance test): DeLong, DeLong & Clarke-Pearson (1988),
# paired test of two correlated AUCs on the same images, computed with the midrank algorithm of
# Sun & Xu (2014), IEEE Signal Process. Lett. 21(11), O(N log N) instead of O(m·n).


def _midrank(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given the mean of their ranks (Sun & Xu 2014, Algorithm 1)."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    groups = _tie_groups(xs)
    first = np.searchsorted(groups, groups, side="left")
    last = np.searchsorted(groups, groups, side="right")
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = 0.5 * (first + 1 + last)  # mean of the 1-based ranks first+1 … last
    return ranks


def _delong_components(y: np.ndarray, scores: np.ndarray):
    """AUCs [k] and structural components V10 [k, m] (positives), V01 [k, n] (negatives) for k
    score vectors [k, N]: V10_i = P(score_i > negative) + ½P(tie), V01_j likewise for negatives."""
    pos, neg = scores[:, y == 1], scores[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    tx = np.array([_midrank(s) for s in pos])
    ty = np.array([_midrank(s) for s in neg])
    tz = np.array([_midrank(s) for s in np.concatenate([pos, neg], axis=1)])
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return aucs, v10, v01


def delong_test(labels, scores_a, scores_b) -> dict:
    """DeLong paired test of AUC(a) vs AUC(b) on the same images (one class).

    Returns {auc_a, auc_b, difference (a − b), variance, se, z, p_value (two-sided), n_positive,
    n_negative}. Single-valued labels → NaN everywhere and a DegenerateClassWarning. Identical
    scores give difference 0, variance 0, z 0, p 1. Fewer than 2 positives or negatives → NaN
    variance (the 1/(m−1) covariance is undefined)."""
    y = check_inputs(labels, scores_a, "delong_test")[0].ravel()
    b = check_inputs(labels, scores_b, "delong_test")[1].ravel()
    a = np.asarray(scores_a, dtype=np.float64).ravel()
    if not (y.shape == a.shape == b.shape):
        raise ValueError(f"labels {y.shape}, scores_a {a.shape}, scores_b {b.shape} must match")
    m, n = int((y == 1).sum()), int((y == 0).sum())
    nan = float("nan")
    out = {"auc_a": nan, "auc_b": nan, "difference": nan, "variance": nan, "se": nan, "z": nan,
           "p_value": nan, "n_positive": m, "n_negative": n}
    if m == 0 or n == 0:
        warnings.warn("only one label value in the evaluated set; DeLong test is NaN",
                      DegenerateClassWarning, stacklevel=2)
        return out
    aucs, v10, v01 = _delong_components(y, np.stack([a, b]))
    diff = float(aucs[0] - aucs[1])
    out.update(auc_a=float(aucs[0]), auc_b=float(aucs[1]), difference=diff)
    if m < 2 or n < 2:
        return out
    cov = np.cov(v10) / m + np.cov(v01) / n  # DeLong 1988 Eq. (3)-(4): S = S10/m + S01/n
    var = float(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0))  # clip −1e-17 round-off
    se = float(np.sqrt(var))
    if se == 0.0:
        z = 0.0 if diff == 0.0 else float(np.copysign(np.inf, diff))
    else:
        z = diff / se
    out.update(variance=var, se=se, z=z, p_value=float(math.erfc(abs(z) / math.sqrt(2))))
    return out


def delong_per_class(labels, scores_a, scores_b, class_names) -> dict[str, dict]:
    """`delong_test` for each column; {name: result dict}."""
    labels, scores_a = check_inputs(labels, scores_a, "delong_per_class")
    scores_b = check_inputs(labels, scores_b, "delong_per_class")[1]
    shape = (labels.shape[0], len(class_names))
    if labels.shape != shape or scores_a.shape != shape or scores_b.shape != shape:
        raise ValueError(f"labels {labels.shape}, scores {scores_a.shape}, {scores_b.shape} must be {shape}")
    result = {}
    for j, name in enumerate(class_names):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result[name] = delong_test(labels[:, j], scores_a[:, j], scores_b[:, j])
        if caught:  # re-issue with the class name so the caller knows which one
            warnings.warn(f"{name}: only one label value in the evaluated set; DeLong test is NaN",
                          DegenerateClassWarning, stacklevel=2)
    return result


# --- agreement of two labellings -----------------------------------------------------------------
# Our choice (not in the paper; reproduce.report.expert): Cohen (1960) kappa, the chance-corrected
# agreement of NIH's text-mined labels with the radiologists' on the same images. NumPy, not
# sklearn's cohen_kappa_score, so an undefined kappa is NaN instead of a warning and a 0/0.


def cohen_kappa(a, b) -> float:
    """κ = (p_o − p_e) / (1 − p_e) of two 0/1 vectors: p_o the observed agreement, p_e the
    agreement expected from the two marginals. NaN when p_e = 1 (both constant and equal)."""
    a = check_inputs(a, np.zeros(np.shape(a)), "cohen_kappa")[0].ravel()
    b = check_inputs(b, np.zeros(np.shape(b)), "cohen_kappa")[0].ravel()
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"cohen_kappa: two non-empty vectors of one length needed, got {a.shape}, {b.shape}")
    observed = float(np.mean(a == b))
    pa, pb = a.mean(), b.mean()
    expected = float(pa * pb + (1 - pa) * (1 - pb))
    return float("nan") if expected == 1.0 else (observed - expected) / (1.0 - expected)
