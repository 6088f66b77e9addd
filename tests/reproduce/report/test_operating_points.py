"""reproduce.report.operating_points: thresholds by hand on 10 rows, sensitivity/specificity/PPV/
NPV/F1 at a threshold by hand, average precision equal to scikit-learn's (with bootstrap weights),
the patient bootstrap of count statistics, and thresholds that never see the test labels."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from reproduce import metrics
from reproduce.report import operating_points as op

# 10 validation rows, 5 positives. Walking the threshold down the scores (flag s >= t):
#   t    0.9  0.8  0.7  0.6  0.5  0.4  0.3  0.2  0.1  0.05
#   TPR  .2   .2   .4   .6   .6   .8   .8   1    1    1
#   FPR  0    .2   .2   .2   .4   .4   .6   .6   .8   1
#   J    .2   0    .2   .4   .2   .4   .2   .4   .2   0     → max .4 at 0.6, 0.4, 0.2: highest 0.6
#   F1   .333 .286 .5   .667 .6   .727 .667 .769 .714 .667  → max 10/13 at 0.2
Y = np.array([0, 0, 1, 0, 1, 0, 1, 1, 0, 1])
S = np.array([0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])


def test_thresholds_by_hand():
    assert op.youden_threshold(Y, S) == 0.6  # J ties at 0.6, 0.4, 0.2: the highest
    assert op.sensitivity_threshold(Y, S, 0.8) == 0.4  # highest t with TPR >= 0.8
    assert op.sensitivity_threshold(Y, S, 0.9) == 0.2
    assert op.sensitivity_threshold(Y, S, 0.6) == 0.6
    assert op.max_f1_threshold(Y, S) == 0.2


def test_rates_at_a_threshold_by_hand():
    # s >= 0.4 flags rows 4..9: labels 1 0 1 1 0 1 → TP 4, FP 2; rows 0..3: 0 0 1 0 → FN 1, TN 3
    counts = op.confusion_counts(Y, S, 0.4).sum(axis=0)
    assert counts.tolist() == [4, 2, 1, 3]
    r = op.rates(counts)
    assert (r["sensitivity"], r["specificity"]) == pytest.approx((0.8, 0.6))
    assert (r["ppv"], r["npv"], r["f1"]) == pytest.approx((4 / 6, 3 / 4, 8 / 11))
    assert r["flagged_per_1000"] == pytest.approx(600.0)
    nothing = op.rates(op.confusion_counts(Y, S, 2.0).sum(axis=0))  # nothing flagged: PPV undefined
    assert np.isnan(nothing["ppv"]) and nothing["sensitivity"] == 0 and nothing["specificity"] == 1


def test_choose_thresholds_rules_and_too_few_positives():
    labels = np.stack([Y, np.r_[1, np.zeros(9, int)]], axis=1)  # class b: 1 positive
    scores = np.stack([S, S], axis=1)
    chosen = op.choose_thresholds(labels, scores, ["a", "b"], min_positives=2)
    assert chosen["a"] == {"youden": 0.6, "sens90": 0.2, "sens95": 0.2, "max_f1": 0.2}
    assert all(np.isnan(v) for v in chosen["b"].values())


def test_average_precision_equals_sklearn_with_and_without_weights():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    s = np.round(rng.random(60), 1)  # ties
    w = rng.integers(0, 4, 60)
    assert op.weighted_average_precision(Y, S, np.ones(10)) == pytest.approx(average_precision_score(Y, S))
    assert op.weighted_average_precision(y, s, np.ones(60)) == pytest.approx(average_precision_score(y, s))
    assert op.weighted_average_precision(y, s, w) == pytest.approx(average_precision_score(y, s, sample_weight=w))
    assert np.isnan(op.weighted_average_precision(np.zeros(4), S[:4], np.ones(4)))


def test_bootstrap_of_counts_is_the_weighted_count_of_each_resample():
    patients = np.array([0, 0, 1, 2, 2, 3, 4, 4, 5, 6])
    counts, code = metrics.patient_resamples(patients, 7, seed=1)
    assert counts.shape == (7, 7) and (counts.sum(axis=1) == 7).all()
    indicators = op.confusion_counts(Y, S, 0.4)
    sums = counts @ op._patient_sums(indicators, code, counts.shape[1])
    for b in range(7):
        assert sums[b].tolist() == (indicators * counts[b][code][:, None]).sum(axis=0).tolist()
    again, _ = metrics.patient_resamples(patients, 7, seed=1)
    assert (again == counts).all()


def _val_test(seed=0, n=120):
    rng = np.random.default_rng(seed)
    out = []
    for offset in (0, 1000):
        y = (rng.random((n, 2)) < 0.3).astype(int)
        s = np.clip(0.35 * y + rng.random((n, 2)) * 0.7, 0, 1)
        out.append((y, s, np.arange(n) // 2 + offset))
    return out


def test_thresholds_come_from_validation_only():
    """Shuffling the test labels (or replacing the test split) changes no threshold; shuffling the
    validation labels does: so a threshold could not have been tuned on test."""
    val, test = _val_test()
    base = op.evaluate_runs({"r": val}, {"r": test}, ["a", "b"], 20, 0, 10)["r"]
    rng = np.random.default_rng(9)
    shuffled = (test[0][rng.permutation(len(test[0]))], test[1], test[2])
    other = _val_test(seed=5)[1]
    for t in (shuffled, other):
        got = op.evaluate_runs({"r": val}, {"r": t}, ["a", "b"], 20, 0, 10)["r"]
        assert got["thresholds"] == base["thresholds"]
        assert got["test"]["a"]["rules"]["youden"]["sensitivity"] != base["test"]["a"]["rules"]["youden"]["sensitivity"]
    val_shuffled = (val[0][rng.permutation(len(val[0]))], val[1], val[2])
    moved = op.evaluate_runs({"r": val_shuffled}, {"r": test}, ["a", "b"], 20, 0, 10)["r"]
    assert moved["thresholds"] != base["thresholds"]


def test_apply_thresholds_cells_and_cis():
    val, test = _val_test()
    r = op.evaluate_runs({"r": val}, {"r": test}, ["a", "b"], 200, 0, 10)["r"]
    cell = r["test"]["a"]
    t = r["thresholds"]["a"]["sens90"]
    point = op.rates(op.confusion_counts(test[0][:, 0], test[1][:, 0], t).sum(axis=0))
    for stat in op.STATS:
        got = cell["rules"]["sens90"][stat]
        assert got["value"] == pytest.approx(float(point[stat]))
        assert got["ci_low"] <= got["value"] <= got["ci_high"]
    assert cell["auprc"]["value"] == pytest.approx(average_precision_score(test[0][:, 0], test[1][:, 0]))
    assert cell["auprc"]["ci_low"] < cell["auprc"]["value"] < cell["auprc"]["ci_high"]
    assert cell["prevalence"] == pytest.approx(test[0][:, 0].mean())
    few = op.evaluate_runs({"r": val}, {"r": test}, ["a", "b"], 20, 0, 1000)["r"]["test"]["a"]
    assert few["too_few_positives"] and np.isnan(few["auprc"]["value"])
    assert np.isnan(few["rules"]["youden"]["sensitivity"]["value"])
