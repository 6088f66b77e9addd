"""Metrics: per-class AUC (§IV.C), Table I's AVE, patient-level bootstrap CI, DeLong test.

Expected values are counted by hand in the comments (concordant pairs, ties = ½)."""
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from reproduce.metrics import (DegenerateClassWarning, _midrank, _weighted_auc, _tie_groups,
                               bootstrap_auc_ci, delong_per_class, delong_test, mean_auc,
                               roc_auc_per_class, roc_curve_per_class)

# 6 images × 3 classes.
LABELS = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]])
SCORES = np.array([[.9, .1, .5], [.4, .3, .5], [.4, .2, .5], [.2, .9, .5], [.7, .3, .5], [.8, .5, .5]])
NAMES = ("A", "B", "C")
# A: positives .9 .4 .7 vs negatives .4 .2 .8 → .9: 3; .4: ½+1+0 = 1.5; .7: 1+1+0 = 2 → 6.5/9.
# B: positives .3 .9 vs negatives .1 .2 .3 .5 → .3: 1+1+½+0 = 2.5; .9: 4 → 6.5/8.
# C: no positives → NaN, never 0.


def test_roc_auc_per_class_hand_counted():
    with pytest.warns(DegenerateClassWarning, match="C"):
        aucs = roc_auc_per_class(LABELS, SCORES, NAMES)
    assert aucs["A"] == pytest.approx(6.5 / 9)
    assert aucs["B"] == pytest.approx(6.5 / 8)
    assert math.isnan(aucs["C"])
    assert mean_auc(aucs) == pytest.approx((6.5 / 9 + 6.5 / 8) / 2)  # AVE leaves NaN out
    assert math.isnan(mean_auc({"x": float("nan")}))


def test_roc_auc_per_class_shape_error():
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        roc_auc_per_class(LABELS[:, :2], SCORES[:, :2], NAMES)


def test_roc_curve_per_class_ends_at_corners():
    with pytest.warns(DegenerateClassWarning):
        curves = roc_curve_per_class(LABELS, SCORES, NAMES)
    assert curves["A"]["fpr"][-1] == 1 and curves["A"]["tpr"][-1] == 1
    assert curves["A"]["auc"] == pytest.approx(6.5 / 9)
    assert curves["C"]["fpr"].size == 0 and math.isnan(curves["C"]["auc"])


def test_midrank_ties():
    # sorted .1 .4 .4 .9 → ranks 1, 2.5, 2.5, 4
    np.testing.assert_allclose(_midrank(np.array([.4, .9, .1, .4])), [2.5, 4, 1, 2.5])


def test_weighted_auc_equals_sklearn_with_sample_weight():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200), 1)  # many ties
    w = rng.integers(0, 4, 200).astype(float)
    order = np.argsort(s, kind="stable")
    got = _weighted_auc(y[order].astype(float), _tie_groups(s[order]), w[order])
    assert got == pytest.approx(roc_auc_score(y, s, sample_weight=w))
    assert math.isnan(_weighted_auc(np.zeros(3), np.arange(3), np.ones(3)))


# --- DeLong -------------------------------------------------------------------------------------
# Worked example. Classifier a: positives X = .9 .6 .4, negatives Y = .5 .4;
#   V10(X) = [1, 1, ¼] (.4 loses to .5, ties .4), V01(Y) = [2/3, 5/6], AUC_a = ¾.
# Classifier b: positives .8 .3 .7, negatives .2 .9: V10 = [½, ½, ½], V01 = [1, 0], AUC_b = ½.
# S10 (ddof 1): var_a = (.25²+.25²+.5²)/2 = .1875, var_b = 0, cov = 0.
# S01: var_a = 2(1/12)²/1 = 1/72, var_b = 2(.5)² = .5, cov = (−1/12·½ + 1/12·−½) = −1/12.
# S = S10/3 + S01/2 → var_a = 10/144, var_b = 36/144, cov = −6/144;
# Var(a − b) = (10 + 36 + 12)/144 = 58/144.
DL_Y = np.array([1, 1, 1, 0, 0])
DL_A = np.array([.9, .6, .4, .5, .4])
DL_B = np.array([.8, .3, .7, .2, .9])


def test_delong_worked_example():
    r = delong_test(DL_Y, DL_A, DL_B)
    assert r["auc_a"] == pytest.approx(0.75) and r["auc_b"] == pytest.approx(0.5)
    assert r["difference"] == pytest.approx(0.25)
    assert r["variance"] == pytest.approx(58 / 144)
    z = 0.25 / math.sqrt(58 / 144)
    assert r["z"] == pytest.approx(z)
    assert r["p_value"] == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert (r["n_positive"], r["n_negative"]) == (3, 2)


def _delong_direct(y, a, b):
    """The original DeLong et al. (1988) formulas, O(m·n): ψ(x, y) = 1, ½, 0."""
    def components(s):
        x, v = s[y == 1], s[y == 0]
        psi = (x[:, None] > v[None, :]) + 0.5 * (x[:, None] == v[None, :])
        return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)
    (ta, v10a, v01a), (tb, v10b, v01b) = components(a), components(b)
    m, n = v10a.size, v01a.size
    s10 = np.cov(np.stack([v10a, v10b]))
    s01 = np.cov(np.stack([v01a, v01b]))
    s = s10 / m + s01 / n
    return ta - tb, s[0, 0] + s[1, 1] - 2 * s[0, 1]


def test_delong_matches_direct_implementation():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    a = np.round(y * 0.8 + rng.normal(size=300), 1)  # rounding makes ties
    b = np.round(y * 0.5 + 0.6 * a + rng.normal(size=300), 1)  # correlated with a
    diff, var = _delong_direct(y, a, b)
    r = delong_test(y, a, b)
    assert r["difference"] == pytest.approx(diff)
    assert r["variance"] == pytest.approx(var)
    assert r["auc_a"] == pytest.approx(roc_auc_score(y, a))
    assert r["auc_b"] == pytest.approx(roc_auc_score(y, b))
    assert 0 < r["p_value"] < 1


def test_delong_identical_scores_p_one():
    r = delong_test(DL_Y, DL_A, DL_A.copy())
    assert r["difference"] == 0 and r["variance"] == 0 and r["z"] == 0 and r["p_value"] == 1


def test_delong_clear_difference_small_p():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    good, bad = y + rng.normal(size=2000), y * 0.1 + rng.normal(size=2000)
    assert delong_test(y, good, bad)["p_value"] < 1e-6


def test_delong_degenerate_is_nan_with_warning():
    with pytest.warns(DegenerateClassWarning):
        r = delong_test(np.zeros(4), DL_A[:4], DL_B[:4])
    assert math.isnan(r["p_value"]) and math.isnan(r["auc_a"])


def test_delong_per_class_names_degenerate_class():
    with pytest.warns(DegenerateClassWarning, match="C"):
        r = delong_per_class(LABELS, SCORES, SCORES[:, ::-1], NAMES)
    assert r["A"]["auc_a"] == pytest.approx(6.5 / 9)
    assert math.isnan(r["C"]["p_value"])


# --- bootstrap over patients --------------------------------------------------------------------
def _toy(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, (n, 2))
    s = y + rng.normal(size=(n, 2))
    return y, s, np.arange(n)


def test_bootstrap_deterministic_and_brackets_point():
    y, s, pid = _toy()
    r1 = bootstrap_auc_ci(y, s, pid, ("a", "b"), n_resamples=200, seed=5)
    r2 = bootstrap_auc_ci(y, s, pid, ("a", "b"), n_resamples=200, seed=5)
    r3 = bootstrap_auc_ci(y, s, pid, ("a", "b"), n_resamples=200, seed=6)
    assert r1 == r2
    assert r1["per_class"]["a"]["ci_low"] != r3["per_class"]["a"]["ci_low"]
    for v in (*r1["per_class"].values(), r1["mean"]):
        assert v["ci_low"] < v["auc"] < v["ci_high"]
        assert v["n_resamples_used"] == 200
    assert r1["mean"]["auc"] == pytest.approx(np.mean([roc_auc_score(y[:, j], s[:, j]) for j in (0, 1)]))
    assert (r1["n_patients"], r1["n_images"]) == (120, 120)


def test_bootstrap_resamples_patients_not_images():
    """Each patient's image copied 5×: patient resampling gives the same CI (same draws, each
    patient's weight ×5, AUC unchanged); image-level resampling would shrink it by ≈ √5."""
    y, s, pid = _toy()
    base = bootstrap_auc_ci(y, s, pid, ("a", "b"), n_resamples=300, seed=0)
    y5, s5, pid5 = np.repeat(y, 5, axis=0), np.repeat(s, 5, axis=0), np.repeat(pid, 5)
    dup = bootstrap_auc_ci(y5, s5, pid5, ("a", "b"), n_resamples=300, seed=0)
    per_image = bootstrap_auc_ci(y5, s5, np.arange(pid5.size), ("a", "b"), n_resamples=300, seed=0)
    width = lambda r: r["mean"]["ci_high"] - r["mean"]["ci_low"]  # noqa: E731
    assert width(dup) == pytest.approx(width(base))
    assert dup["per_class"]["a"]["ci_low"] == pytest.approx(base["per_class"]["a"]["ci_low"])
    assert width(per_image) < 0.6 * width(base)


def test_bootstrap_skips_single_valued_resamples():
    # class "a" has a single positive patient: every resample that misses it is skipped.
    y = np.zeros((30, 1), dtype=int)
    y[0, 0] = 1
    s = np.linspace(0, 1, 30)[:, None]
    r = bootstrap_auc_ci(y, s, np.arange(30), ("a",), n_resamples=200, seed=0)
    used = r["per_class"]["a"]["n_resamples_used"]
    assert 0 < used < 200  # P(miss the patient) = (29/30)^30 ≈ 0.36
    assert r["mean"]["n_resamples_used"] == used


def test_bootstrap_degenerate_class_nan():
    with pytest.warns(DegenerateClassWarning):
        r = bootstrap_auc_ci(LABELS, SCORES, [1, 1, 2, 3, 4, 5], NAMES, n_resamples=50)
    assert math.isnan(r["per_class"]["C"]["ci_low"]) and r["per_class"]["C"]["n_resamples_used"] == 0
    assert np.isfinite(r["mean"]["ci_low"])
    assert r["n_patients"] == 5


BAD_LABELS = LABELS * 2 - 1  # coded −1/+1: every −1 would silently count as a negative
NAN_SCORES = SCORES.copy()
NAN_SCORES[0, 0] = np.nan  # a NaN would sort as the highest score


@pytest.mark.parametrize("call", [
    lambda y, s: roc_auc_per_class(y, s, NAMES),
    lambda y, s: roc_curve_per_class(y, s, NAMES),
    lambda y, s: bootstrap_auc_ci(y, s, np.arange(6), NAMES, n_resamples=5),
    lambda y, s: delong_test(y[:, 0], s[:, 0], SCORES[:, 0]),
    lambda y, s: delong_test(y[:, 0], SCORES[:, 0], s[:, 0]),
    lambda y, s: delong_per_class(y, s, SCORES, NAMES),
    lambda y, s: delong_per_class(y, SCORES, s, NAMES),
], ids=["auc", "curve", "bootstrap", "delong_a", "delong_b", "delong_per_class_a", "delong_per_class_b"])
def test_every_metric_refuses_non_binary_labels_and_nan_scores(call):
    with pytest.raises(ValueError, match="labels must be 0 or 1, found \\[-1\\]"):
        call(BAD_LABELS, SCORES)
    with pytest.raises(ValueError, match="scores must be finite, found 1 NaN"):
        call(LABELS, NAN_SCORES)


def test_bootstrap_scores_resamples_in_chunks_bit_for_bit_as_one_at_a_time():
    """bootstrap_auc_resamples scores RESAMPLE_CHUNK resamples at once; its sums are of integer
    case weights (exact in float64), so each AUC is _weighted_auc's of that resample, bit for bit,
    ties and resamples without a positive (NaN) included."""
    from reproduce.metrics import bootstrap_auc_resamples, patient_resamples, roc_auc_per_class

    rng = np.random.default_rng(1)
    y = (rng.random((60, 3)) < 0.1).astype(int)
    y[:2, :] = 1
    s = np.round(rng.random((60, 3)), 1)  # many ties
    pid = rng.integers(0, 25, 60)
    point = roc_auc_per_class(y, s, ("a", "b", "c"))
    boot, n_patients = bootstrap_auc_resamples(y, s, pid, ("a", "b", "c"), point, 150, seed=4)
    counts, code = patient_resamples(pid, 150, seed=4)
    for j in range(3):
        order = np.argsort(s[:, j], kind="stable")
        one = [_weighted_auc(y[order, j].astype(float), _tie_groups(s[order, j]), c[code][order].astype(float))
               for c in counts]
        assert np.array_equal(boot[:, j], one, equal_nan=True)
    assert np.isnan(boot).any() and n_patients == np.unique(pid).size
