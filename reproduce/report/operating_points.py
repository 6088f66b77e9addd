"""Operating points: which threshold turns a score into "flag this image", chosen on the validation
split and applied unchanged to the test split; and the area under the precision-recall curve.

Per class and run (docs/beyond-auc.md):
- `choose_thresholds` sees validation labels and scores only. Rules (our names): `youden`, the
  threshold that maximises Youden's J = sensitivity + specificity − 1 (Youden 1950) over
  scikit-learn's `roc_curve` thresholds; `sens90`, `sens95`, the highest threshold whose validation
  sensitivity is at least 0.90 / 0.95 (rule-out); `max_f1`, the threshold that maximises F1 over
  `precision_recall_curve`'s thresholds. An image is flagged when its score >= the threshold
  (scikit-learn's convention); among equally good thresholds the highest (fewest flagged), our choice.
- `apply_thresholds`: on test, sensitivity, specificity, PPV, NPV, F1 and images flagged per 1,000,
  each with a percentile CI over the patient resamples of `metrics.patient_resamples` (the draws
  of Table I's CIs), and AUPRC (`average_precision_score`) with its CI beside the prevalence, its
  chance level (Saito & Rehmsmeier 2015).
- A class with fewer than `min_positives` positives where a number is computed (validation for a
  threshold, test for the rest) gets no number, only the flag `too_few_positives`.
Pure NumPy / pandas / scikit-learn; no TensorFlow, no printing.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

from reproduce import metrics

# rule → the validation sensitivity it must reach (None: the rule maximises a criterion instead).
RULES = {"youden": None, "sens90": 0.90, "sens95": 0.95, "max_f1": None}
STATS = ("sensitivity", "specificity", "ppv", "npv", "f1", "flagged_per_1000")


def _ratio(num, den) -> np.ndarray:
    """num / den elementwise, NaN where den == 0 (no 0/0 warning)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den > 0)


def _first_max(values) -> int:
    """Index of the first value within 1e-12 of the maximum: 0.6 − 0.2 and 0.8 − 0.4 are one tie."""
    return int(np.argmax(values >= np.max(values) - 1e-12))


def youden_threshold(y, s) -> float:
    """The validation score that maximises sensitivity + specificity − 1."""
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    j = tpr[1:] - fpr[1:]  # [0] is roc_curve's +inf: nothing flagged
    return float(thresholds[1:][_first_max(j)])  # descending thresholds: first max = highest


def sensitivity_threshold(y, s, target: float) -> float:
    """The highest validation score at which sensitivity >= target."""
    _, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    return float(thresholds[np.argmax(tpr >= target - 1e-12)])  # tpr reaches 1 at the lowest score


def max_f1_threshold(y, s) -> float:
    """The validation score that maximises F1 = 2·precision·recall / (precision + recall)."""
    precision, recall, thresholds = precision_recall_curve(y, s)
    f1 = _ratio(2 * precision[:-1] * recall[:-1], precision[:-1] + recall[:-1])
    f1 = np.nan_to_num(f1, nan=0.0)
    return float(thresholds[len(f1) - 1 - _first_max(f1[::-1])])  # ascending: last max = highest


def choose_thresholds(labels, scores, class_names, min_positives: int) -> dict[str, dict]:
    """{class: {rule: threshold}} from VALIDATION labels [N, C] and scores [N, C] only; NaN for a
    class with fewer than min_positives positives or negatives there."""
    labels, scores = metrics.check_inputs(labels, scores, "choose_thresholds")
    chosen = {}
    for j, name in enumerate(class_names):
        y, s = labels[:, j], scores[:, j]
        if min(y.sum(), (1 - y).sum()) < max(min_positives, 1):
            chosen[name] = {rule: float("nan") for rule in RULES}
            continue
        chosen[name] = {rule: (youden_threshold(y, s) if rule == "youden" else
                               max_f1_threshold(y, s) if rule == "max_f1" else
                               sensitivity_threshold(y, s, target))
                        for rule, target in RULES.items()}
    return chosen


def confusion_counts(y, s, threshold: float) -> np.ndarray:
    """[N, 4] 0/1 indicators (tp, fp, fn, tn) of each image flagged when s >= threshold."""
    y = np.asarray(y).astype(bool)
    flagged = np.asarray(s, dtype=np.float64) >= threshold
    return np.stack([y & flagged, ~y & flagged, y & ~flagged, ~y & ~flagged], axis=-1).astype(np.float64)


def rates(counts) -> dict[str, np.ndarray]:
    """The STATS from summed (tp, fp, fn, tn) [..., 4]; NaN where a denominator is 0."""
    tp, fp, fn, tn = np.moveaxis(np.asarray(counts, dtype=np.float64), -1, 0)
    return {"sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp),
            "ppv": _ratio(tp, tp + fp), "npv": _ratio(tn, tn + fn), "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "flagged_per_1000": 1000 * _ratio(tp + fp, tp + fp + fn + tn)}


def weighted_average_precision(y, s, weights) -> float:
    """Average precision Σ (R_k − R_{k−1}) P_k over the distinct scores, highest first, with
    integer case weights (a bootstrap resample); = scikit-learn's with sample_weight. NaN without
    positives."""
    order, ends = _descending(s)
    return _sorted_average_precision(np.asarray(y, dtype=np.float64)[order], ends,
                                     np.asarray(weights, dtype=np.float64)[order])


def _descending(s) -> tuple[np.ndarray, np.ndarray]:
    """(order of the scores, highest first; the last position of each group of tied scores)."""
    s = np.asarray(s, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    return order, np.r_[np.flatnonzero(np.diff(s[order])), s.size - 1]


def _sorted_average_precision(y_sorted, ends, w_sorted) -> float:
    tp, flagged = np.cumsum(w_sorted * y_sorted)[ends], np.cumsum(w_sorted)[ends]
    if tp[-1] == 0:
        return float("nan")
    recall_step = np.diff(np.r_[0.0, tp]) / tp[-1]
    return float(np.sum(recall_step * np.nan_to_num(_ratio(tp, flagged))))


def _patient_sums(values, code, n_patients) -> np.ndarray:
    """[n_patients, K]: each patient's sum of the images' values [N, K]."""
    return np.stack([np.bincount(code, weights=v, minlength=n_patients) for v in values.T], axis=1)


def _ci(values, alpha) -> dict:
    low, high, _ = metrics.percentile_ci(np.asarray(values, dtype=np.float64), alpha)
    return {"ci_low": low, "ci_high": high}


def apply_thresholds(thresholds: dict, labels, scores, patient_ids, class_names, n_resamples: int,
                     seed: int, min_positives: int, alpha: float = 0.05) -> dict:
    """On TEST: per class {"positives", "images", "prevalence", "auprc": {value, ci_low, ci_high},
    "rules": {rule: {"threshold", stat: {value, ci_low, ci_high}, ...}}, "too_few_positives"}."""
    labels, scores = metrics.check_inputs(labels, scores, "apply_thresholds")
    counts, code = metrics.patient_resamples(patient_ids, n_resamples, seed)
    out = {}
    for j, name in enumerate(class_names):
        y, s = labels[:, j], scores[:, j]
        few = min(y.sum(), (1 - y).sum()) < max(min_positives, 1)
        cell = {"positives": int(y.sum()), "images": int(y.size), "prevalence": float(y.mean()),
                "too_few_positives": bool(few), "rules": {}}
        cell["auprc"] = _auprc(y, s, counts, code, alpha, few)
        for rule in RULES:
            cell["rules"][rule] = _rule_cell(y, s, thresholds[name][rule], counts, code, alpha, few)
        out[name] = cell
    return out


def _auprc(y, s, counts, code, alpha, few) -> dict:
    if few:
        return {"value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    order, ends = _descending(s)  # sorted once; each resample only reweights
    y_sorted, code_sorted = np.asarray(y, dtype=np.float64)[order], code[order]
    boot = [_sorted_average_precision(y_sorted, ends, c[code_sorted].astype(np.float64)) for c in counts]
    return {"value": float(average_precision_score(y, s)), **_ci(boot, alpha)}


def _rule_cell(y, s, threshold, counts, code, alpha, few) -> dict:
    cell = {"threshold": threshold}
    if few or not np.isfinite(threshold):
        return cell | {k: {"value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
                       for k in STATS}
    indicators = confusion_counts(y, s, threshold)
    point = rates(indicators.sum(axis=0))
    boot = rates(counts @ _patient_sums(indicators, code, counts.shape[1]))  # [B, 4] → STATS
    return cell | {k: {"value": float(point[k]), **_ci(boot[k], alpha)} for k in STATS}


def evaluate_runs(val: dict, test: dict, class_names, n_resamples: int, seed: int,
                  min_positives: int) -> dict:
    """{run: {"thresholds": choose_thresholds(validation), "test": apply_thresholds(test)}};
    `val`, `test`: {run: (labels, scores, patient_ids)}. Every run is scored on the same patient
    resamples (same seed, same test images)."""
    results = {}
    for run, (val_labels, val_scores, _) in val.items():
        thresholds = choose_thresholds(val_labels, val_scores, class_names, min_positives)
        labels, scores, patients = test[run]
        results[run] = {"thresholds": thresholds,
                        "val_positives": {c: int(np.sum(np.asarray(val_labels)[:, j]))
                                          for j, c in enumerate(class_names)},
                        "test": apply_thresholds(thresholds, labels, scores, patients, class_names,
                                                 n_resamples, seed, min_positives)}
    return results


# --- the table (operating_points.csv / .md) --------------------------------------------------------
def frame(results: dict, class_names) -> pd.DataFrame:
    """One row per (run, class, rule): the validation threshold and the test STATS with their CIs,
    AUPRC with its CI and the prevalence (repeated on the class's rule rows), the flag."""
    rows = []
    for run, r in results.items():
        for name in class_names:
            cell = r["test"][name]
            for rule, target in RULES.items():
                got = cell["rules"][rule]
                row = {"run": run, "class": name, "rule": rule, "target_sensitivity": target,
                       "threshold": got["threshold"], "val_positives": r["val_positives"][name],
                       "test_positives": cell["positives"], "test_images": cell["images"],
                       "prevalence": cell["prevalence"], "auprc": cell["auprc"]["value"],
                       "auprc_ci_low": cell["auprc"]["ci_low"], "auprc_ci_high": cell["auprc"]["ci_high"]}
                for stat in STATS:
                    row |= {stat: got[stat]["value"], f"{stat}_ci_low": got[stat]["ci_low"],
                            f"{stat}_ci_high": got[stat]["ci_high"]}
                row["too_few_positives"] = bool(cell["too_few_positives"] or not np.isfinite(got["threshold"]))
                rows.append(row)
    return pd.DataFrame(rows)


def _num(value, digits: int = 3) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.{digits}f}"


def _with_ci(row, stat: str, digits: int = 3) -> str:
    return (f"{_num(row[stat], digits)} [{_num(row[f'{stat}_ci_low'], digits)}, "
            f"{_num(row[f'{stat}_ci_high'], digits)}]")


RULE_TITLES = {"youden": "Youden's J (max sensitivity + specificity − 1) on validation",
               "sens90": "sensitivity >= 0.90 on validation (rule-out)",
               "sens95": "sensitivity >= 0.95 on validation (rule-out)",
               "max_f1": "maximum F1 on validation"}


def markdown(table, title: str, min_positives: int) -> str:
    """operating_points.md: AUPRC beside prevalence, then one table per rule."""
    few = f"n<{min_positives}"
    first = table[table["rule"] == "youden"]
    runs = list(dict.fromkeys(table["run"]))
    lines = [f"# Operating points — {title}", "",
             "Thresholds chosen on the validation split, applied unchanged to the test split. "
             "Cells: test value [95% patient-bootstrap CI]; "
             f"`{few}`: fewer than {min_positives} positives (or negatives) where the number would "
             "be computed, so none is shown. Definitions: docs/beyond-auc.md.", "",
             "## AUPRC (average precision) beside the prevalence, its chance level", "",
             "| Pathology | test positives | prevalence | " + " | ".join(runs) + " |",
             "|---|---|---|" + "---|" * len(runs)]
    for name, group in first.groupby("class", sort=False):
        cells = [few if r["too_few_positives"] and not np.isfinite(r["auprc"]) else _with_ci(r, "auprc")
                 for _, r in group.iterrows()]
        g = group.iloc[0]
        lines.append(f"| {name} | {g['test_positives']} | {g['prevalence']:.4f} | " + " | ".join(cells) + " |")
    for rule, title_ in RULE_TITLES.items():
        lines += ["", f"## `{rule}`: {title_}", "",
                  "| Pathology | run | threshold | sensitivity | specificity | PPV | NPV | F1 "
                  "| flagged per 1,000 |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for _, r in table[table["rule"] == rule].iterrows():
            if r["too_few_positives"]:
                threshold = f"{r['threshold']:.4g}" if np.isfinite(r["threshold"]) else few
                lines.append(f"| {r['class']} | {r['run']} | {threshold} |" + f" {few} |" * 6)
                continue
            stats = " | ".join(_with_ci(r, s, 1 if s == "flagged_per_1000" else 3) for s in STATS)
            lines.append(f"| {r['class']} | {r['run']} | {r['threshold']:.4g} | {stats} |")
    return "\n".join(lines) + "\n"
