"""reproduce.report.calibration: ECE with 2 bins and Brier by hand on 8 rows, the bins equal to
scikit-learn's calibration_curve, Brier equal to brier_score_loss, the softmax head recognised,
and a recalibration fitted on validation only."""
import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from reproduce.report import calibration as cal

# Two equal-mass bins split at the median 0.5: scores 0.1-0.4 (mean 0.25, 2 of 4 positive) and
# 0.6-0.9 (mean 0.75, 4 of 4 positive) → ECE = ½·|0.5 − 0.25| + ½·|1 − 0.75| = 0.25.
# Brier = (0.01 + 0.64 + 0.49 + 0.16 + 0.16 + 0.09 + 0.04 + 0.01) / 8 = 0.2.
S = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
Y = np.array([0, 1, 1, 0, 1, 1, 1, 1])


def test_ece_with_two_bins_and_brier_by_hand():
    bins = cal.reliability_bins(Y, S, n_bins=2)
    assert bins["prob_pred"] == pytest.approx([0.25, 0.75])
    assert bins["prob_true"] == pytest.approx([0.5, 1.0])
    assert bins["count"].tolist() == [4, 4]
    assert cal.expected_calibration_error(Y, S, n_bins=2) == pytest.approx(0.25)
    row = cal.class_row(Y, S, n_bins=2, min_positives=2)
    assert row["brier"] == pytest.approx(0.2) and row["ece"] == pytest.approx(0.25)
    assert (row["prevalence"], row["mean_score"]) == pytest.approx((0.75, 0.5))
    assert cal.class_row(Y, S, 2, min_positives=3)["too_few_positives"]  # 2 negatives only
    assert np.isnan(cal.class_row(Y, S, 2, min_positives=3)["brier"])


def test_bins_equal_sklearn_calibration_curve_and_brier_equals_sklearn():
    rng = np.random.default_rng(0)
    s = np.round(rng.beta(0.6, 4, 500), 3)  # skewed to 0 like a rare finding's scores, with ties
    y = (rng.random(500) < s).astype(int)
    for n_bins in (2, 5, 10):
        true, pred = calibration_curve(y, s, n_bins=n_bins, strategy="quantile")
        bins = cal.reliability_bins(y, s, n_bins)
        assert bins["prob_true"] == pytest.approx(true) and bins["prob_pred"] == pytest.approx(pred)
        assert bins["count"].sum() == 500
    assert cal.class_row(y, s, 10, 10)["brier"] == pytest.approx(brier_score_loss(y, s))


def test_head_of_tells_softmax_from_sigmoid():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(20, 14))
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert cal.head_of(softmax.astype(np.float32)) == "softmax"
    assert cal.head_of(1 / (1 + np.exp(-logits))) == "sigmoid"


def _split(seed, n=300):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 2)) < 0.2).astype(int)
    s = np.clip(0.5 + 0.3 * y + 0.1 * rng.normal(size=(n, 2)), 0.01, 0.99)  # overconfident
    return y, s


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_recalibration_fitted_on_validation_lowers_test_error(method):
    val, test = _split(0), _split(1)
    r = cal.evaluate_run(test, val, ["a", "b"], method, n_bins=10, min_positives=10)
    for name in ("a", "b"):
        assert r["recalibrated"][name]["brier"] < r["classes"][name]["brier"]
        assert r["recalibrated"][name]["ece"] < r["classes"][name]["ece"]
    shuffled_test = (test[0][::-1], test[1])  # test labels change the scores, never the fit
    fit = cal.fit_recalibration(val[0][:, 0], val[1][:, 0], method)
    again = cal.evaluate_run(shuffled_test, val, ["a", "b"], method, 10, 10)
    assert again["recalibrated"]["a"]["brier"] == pytest.approx(brier_score_loss(test[0][::-1, 0], fit(test[1][:, 0])))


def test_frame_rows_and_pooled():
    val, test = _split(0), _split(1)
    r = cal.evaluate_run(test, val, ["a", "b"], "platt", 10, 10)
    table = cal.frame({"run": r}, ["a", "b"], "platt")
    assert table["class"].tolist() == ["a", "b", cal.POOLED]
    assert table.columns[:9].tolist() == ["run", "class", "head", "positives", "images", "prevalence",
                                          "mean_score", "brier", "ece"]
    pooled = table.set_index("class").loc[cal.POOLED]
    assert pooled["brier"] == pytest.approx(table["brier"][:2].mean())  # same N per class
    assert np.isnan(pooled["platt_brier"])  # recalibrated per class only
    assert "| n<10" not in cal.markdown(table, "t", "platt", 10, 10)  # no hidden cell here
