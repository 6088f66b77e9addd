"""Calibration: does a score of 0.3 mean "positive 30% of the time"? Per run and class on the
test split (docs/beyond-auc.md):

- Brier score, the mean squared difference of score and 0/1 label (scikit-learn's
  `brier_score_loss`);
- expected calibration error (ECE; Naeini et al. 2015, Guo et al. 2017) over N_BINS equal-mass
  bins: Σ_b (n_b / N)·|observed frequency_b − mean score_b|, on exactly the bins of scikit-learn's
  `calibration_curve(strategy="quantile")`, whose points the reliability diagram draws;
- calibration in the large: mean score beside the prevalence;
- optionally a per-class recalibration fitted on the VALIDATION split (Platt scaling: logistic
  regression on the score's logit; or isotonic regression), applied to test, Brier and ECE after.
`head_of` tells a softmax head (every image's 14 scores sum to 1) from a sigmoid head. "All" pools
the 14 classes' (label, score) pairs. A class with fewer than `min_positives` positives gets no
number. Pure NumPy / pandas / scikit-learn; no TensorFlow, no printing.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss

from reproduce import metrics

# Our choice: 10 equal-mass bins. Equal-width bins (Guo et al.'s 15) leave almost every image of a
# rare finding in the first bin (scores near 0), so the ECE would measure one bin; equal-mass bins
# put N/10 images in each wherever the scores lie. 10 as Naeini et al. 2015; with the demo's 305
# test images about 30 per bin.
N_BINS = 10
POOLED = "All"
METHODS = ("none", "platt", "isotonic")
_EPS = 1e-7  # scores clipped to [ε, 1 − ε] before the logit (the losses' own clip, Config.epsilon)


def reliability_bins(y, s, n_bins: int = N_BINS) -> dict:
    """scikit-learn's quantile bins of the scores: {"prob_true", "prob_pred", "count"} per
    non-empty bin (prob_true, prob_pred = calibration_curve(y, s, n_bins, strategy="quantile"))."""
    s = np.asarray(s, dtype=np.float64)
    edges = np.percentile(s, np.linspace(0, 100, n_bins + 1))  # as calibration_curve
    ids = np.searchsorted(edges[1:-1], s)
    count = np.bincount(ids, minlength=n_bins)
    keep = count > 0
    true = np.bincount(ids, weights=np.asarray(y, dtype=np.float64), minlength=n_bins)[keep] / count[keep]
    pred = np.bincount(ids, weights=s, minlength=n_bins)[keep] / count[keep]
    return {"prob_true": true, "prob_pred": pred, "count": count[keep]}


def expected_calibration_error(y, s, n_bins: int = N_BINS) -> float:
    """Σ_b (n_b / N)·|prob_true_b − prob_pred_b| over the equal-mass bins."""
    bins = reliability_bins(y, s, n_bins)
    return float(np.sum(bins["count"] * np.abs(bins["prob_true"] - bins["prob_pred"])) / np.size(s))


def head_of(scores) -> str:
    """"softmax" when every image's scores sum to 1 (to 1e-4: float32 outputs), else "sigmoid"."""
    return "softmax" if np.allclose(np.asarray(scores).sum(axis=1), 1.0, atol=1e-4) else "sigmoid"


def _logit(s) -> np.ndarray:
    s = np.clip(np.asarray(s, dtype=np.float64), _EPS, 1 - _EPS)
    return (np.log(s) - np.log1p(-s))[:, None]


def fit_recalibration(y, s, method: str):
    """A function scores → recalibrated scores, fitted on VALIDATION (y, s) of one class.
    Platt: scikit-learn's LogisticRegression (its default L2, C = 1: our choice, it keeps a fit on
    few positives finite) on logit(score); isotonic: IsotonicRegression clipped to [0, 1]."""
    if method == "platt":
        model = LogisticRegression().fit(_logit(s), np.asarray(y))
        return lambda t: model.predict_proba(_logit(t))[:, 1]
    if method == "isotonic":
        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, y)
        return lambda t: model.predict(np.asarray(t, dtype=np.float64))
    raise ValueError(f"recalibration method {method!r}: expected one of {METHODS}")


def _enough(y, min_positives: int) -> bool:
    return min(int(np.sum(y)), int(np.size(y) - np.sum(y))) >= max(min_positives, 1)


def class_row(y, s, n_bins: int, min_positives: int) -> dict:
    """Brier, ECE, mean score and prevalence of one class (NaN when too few positives)."""
    nan = float("nan")
    row = {"positives": int(np.sum(y)), "images": int(np.size(y)), "prevalence": float(np.mean(y)),
           "mean_score": float(np.mean(s)), "too_few_positives": not _enough(y, min_positives)}
    if row["too_few_positives"]:
        return row | {"brier": nan, "ece": nan}
    return row | {"brier": float(brier_score_loss(y, s)), "ece": expected_calibration_error(y, s, n_bins)}


def evaluate_run(test, val=None, class_names=(), method: str = "none", n_bins: int = N_BINS,
                 min_positives: int = 10) -> dict:
    """test, val: (labels [N, C], scores [N, C]); val only for a recalibration. Returns
    {"head", "classes": {name: row}, "pooled": row, "curves": {name | All: bins},
     "recalibrated": {name: {"brier", "ece"}} (empty for method "none")}."""
    labels, scores = metrics.check_inputs(*test, "calibration")
    out = {"head": head_of(scores), "classes": {}, "curves": {}, "recalibrated": {}}
    for j, name in enumerate(class_names):
        y, s = labels[:, j], scores[:, j]
        out["classes"][name] = class_row(y, s, n_bins, min_positives)
        if not out["classes"][name]["too_few_positives"]:
            out["curves"][name] = reliability_bins(y, s, n_bins)
    out["pooled"] = class_row(labels.ravel(), scores.ravel(), n_bins, min_positives)
    out["curves"][POOLED] = reliability_bins(labels.ravel(), scores.ravel(), n_bins)
    if method != "none":
        out["recalibrated"] = _recalibrate(labels, scores, val, class_names, method, n_bins, min_positives)
    return out


def _recalibrate(labels, scores, val, class_names, method, n_bins, min_positives) -> dict:
    """Per class fitted on validation, scored on test; NaN where either split has too few."""
    val_labels, val_scores = metrics.check_inputs(*val, "calibration (validation)")
    out = {}
    for j, name in enumerate(class_names):
        if not (_enough(val_labels[:, j], min_positives) and _enough(labels[:, j], min_positives)):
            out[name] = {"brier": float("nan"), "ece": float("nan")}
            continue
        recalibrated = fit_recalibration(val_labels[:, j], val_scores[:, j], method)(scores[:, j])
        out[name] = {"brier": float(brier_score_loss(labels[:, j], recalibrated)),
                     "ece": expected_calibration_error(labels[:, j], recalibrated, n_bins)}
    return out


# --- the table (calibration.csv / .md) ----------------------------------------------------------------
def frame(results: dict, class_names, method: str) -> pd.DataFrame:
    """One row per (run, class, then All): head, positives, prevalence, mean score, Brier, ECE,
    and with a recalibration its Brier and ECE on test (`<method>_brier`, `<method>_ece`)."""
    rows = []
    for run, r in results.items():
        for name in (*class_names, POOLED):
            cell = r["pooled"] if name == POOLED else r["classes"][name]
            row = {"run": run, "class": name, "head": r["head"], **cell}
            if method != "none":
                after = r["recalibrated"].get(name, {"brier": float("nan"), "ece": float("nan")})
                row |= {f"{method}_brier": after["brier"], f"{method}_ece": after["ece"]}
            rows.append(row)
    order = ["run", "class", "head", "positives", "images", "prevalence", "mean_score", "brier", "ece"]
    table = pd.DataFrame(rows)
    return table[order + [c for c in table.columns if c not in order]]


def markdown(table: pd.DataFrame, title: str, method: str, n_bins: int, min_positives: int) -> str:
    """calibration.md: one row per class, per run 'Brier / ECE (mean score)' side by side."""
    runs = list(dict.fromkeys(table["run"]))
    heads = table.drop_duplicates("run").set_index("run")["head"]
    after = f"; after {method} recalibration fitted on validation: Brier / ECE" if method != "none" else ""
    lines = [f"# Calibration — {title}", "",
             f"Cells: Brier / ECE ({n_bins} equal-mass bins) (mean score){after}. `n<{min_positives}`: "
             f"fewer than {min_positives} positives. Definitions and why a softmax head cannot be "
             "calibrated per finding: docs/beyond-auc.md.", "",
             "| Pathology | prevalence | " + " | ".join(f"{r} ({heads[r]})" for r in runs) + " |",
             "|---|---|" + "---|" * len(runs)]
    for name, group in table.groupby("class", sort=False):
        cells = []
        for _, r in group.iterrows():
            if r["too_few_positives"]:
                cells.append(f"n<{min_positives}")
                continue
            text = f"{r['brier']:.4f} / {r['ece']:.4f} ({r['mean_score']:.3f})"
            if method != "none" and name != POOLED:  # recalibrated per class: no pooled value
                text += (f"; {r[f'{method}_brier']:.4f} / {r[f'{method}_ece']:.4f}"
                         if np.isfinite(r[f"{method}_brier"]) else f"; n<{min_positives}")
            cells.append(text)
        lines.append(f"| {name} | {group.iloc[0]['prevalence']:.4f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
