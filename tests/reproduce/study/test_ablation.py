"""reproduce.study.relations on hand-checkable matrices, and the ablation CLI end to end at smoke
scale (tiny model, phantom shards). Runtime: about 40 s, nearly all of it the end-to-end test."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_prep.schema import CLASSES
from reproduce.report import predictions
from reproduce import ablation as program
from reproduce.study import ablation
from reproduce.study import relations as cooccurrence

# Columns: a = [1,1,0,0], b = [1,0,1,0], c = [0,0,1,1]. By hand (2×2 tables):
# a–b: n11=n10=n01=n00=1 → phi 0;  a–c: c = 1 − a → phi −1;  b–c: one of each cell → phi 0.
Y = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1], [0, 0, 1]])


def test_phi_matrix_hand_computed():
    np.testing.assert_allclose(cooccurrence.phi_matrix(Y),
                               [[1, 0, -1], [0, 1, 0], [-1, 0, 1]], atol=1e-12)


def test_cooccurrence_counts_hand_computed():
    np.testing.assert_array_equal(cooccurrence.cooccurrence_counts(Y),
                                  [[2, 1, 0], [1, 2, 1], [0, 1, 2]])


def test_score_correlation_and_constant_column():
    # x and 2x+1 correlate +1, x and −x −1; a constant column is NaN, never 0.
    x = np.array([0.1, 0.4, 0.2, 0.9])
    corr = cooccurrence.column_correlation(np.stack([x, 2 * x + 1, -x, np.full(4, 0.3)], axis=1))
    np.testing.assert_allclose(corr[:3, :3], [[1, 1, -1], [1, 1, -1], [-1, -1, 1]], atol=1e-12)
    assert np.isnan(corr[3]).all() and np.isnan(corr[:, 3]).all()


def test_off_diagonal_order_and_agreement():
    m = np.array([[1.0, 0.2, 0.4], [0.2, 1.0, 0.6], [0.4, 0.6, 1.0]])
    np.testing.assert_array_equal(cooccurrence.off_diagonal(m), [0.2, 0.4, 0.6])
    # (0.2, 0.4, 0.6) vs (0.6, 0.4, 0.2): r = −1; vs itself shifted: r = +1.
    flipped = np.array([[1.0, 0.6, 0.4], [0.6, 1.0, 0.2], [0.4, 0.2, 1.0]])
    assert cooccurrence.relation_agreement(m, flipped) == pytest.approx(-1.0)
    assert cooccurrence.relation_agreement(m, m - 0.1) == pytest.approx(1.0)
    # Hand example: a = (0, 1, 2), b = (0, 2, 1) → r = (−1·−1 + 0 + 1·0)/(√2·√2) = 0.5.
    a = np.array([[1, 0, 1], [0, 1, 2], [1, 2, 1]], float)
    b = np.array([[1, 0, 2], [0, 1, 1], [2, 1, 1]], float)
    assert cooccurrence.relation_agreement(a, b) == pytest.approx(0.5)
    assert np.isnan(cooccurrence.relation_agreement(np.full((3, 3), np.nan), m))


def test_phi_rejects_non_binary():
    with pytest.raises(ValueError, match="0/1"):
        cooccurrence.phi_matrix(np.array([[0, 2], [1, 0]]))


def _frame(order, scores):
    df = pd.DataFrame({"image_index": [f"i{k}.png" for k in order], "patient_id": order})
    for j, c in enumerate(CLASSES):
        df[f"label_{c}"] = [(k + j) % 2 for k in order]
    for j, c in enumerate(CLASSES):
        df[f"score_{c}"] = scores[:, j]
    return df


def test_runs_are_aligned_by_image_and_other_images_refused():
    """The ablation pairs runs with predictions.align_runs (DeLong needs the same images)."""
    runs = {"wce": Path("runs/wce"), "ewl": Path("runs/ewl")}
    base = _frame([0, 1, 2, 3], np.tile(np.arange(4.0)[:, None], (1, 14)))
    other = _frame([3, 2, 1, 0], np.tile(np.arange(4.0)[::-1, None], (1, 14)))
    out = predictions.align_runs({"wce": base, "ewl": other}, runs, "test")
    np.testing.assert_array_equal(out["ewl"]["score_Atelectasis"], [0, 1, 2, 3])
    with pytest.raises(predictions.ReportError, match="different image sets"):
        predictions.align_runs({"wce": base, "ewl": _frame([0, 1, 2, 9], np.zeros((4, 14)))}, runs, "test")


def test_ablation_cli_end_to_end(shards_dir, sample_labels, tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "out"
    argv = ["--data", str(shards_dir), "--runs-dir", str(runs), "--labels", str(sample_labels), "--synthetic",
            "--out", str(out), "--model", "tiny", "--preset", "smoke", "--n-resamples", "20"]
    assert program.main(argv) == 0
    table = pd.read_csv(out / "ablation.csv")
    assert list(table["loss"]) == ["wce", "ewl", "ewl_neg", "softmax_ce", "wce_ewl", "ewl_sigmoid"]
    assert table["data"].str.contains("SYNTHETIC").all()
    assert (table["checkpoint"] == "best").all()  # the smoke preset's Config.checkpoint
    assert (table["mean_ci_low"] <= table["mean_auc"]).all()
    assert (table["mean_auc"] <= table["mean_ci_high"]).all()
    for loss in table["loss"]:
        pred = pd.read_csv(runs / f"tiny_{loss}" / "predictions_test.csv")
        saved = json.loads((runs / f"tiny_{loss}" / "config.json").read_text())
        assert (saved["loss"], saved["preset"]) == (loss, "smoke")
        row = table.set_index("loss").loc[loss]
        assert row["auc_Effusion"] == pytest.approx(
            _auc(pred["label_Effusion"], pred["score_Effusion"]), abs=1e-6)
    assert table.filter(like="p_").iloc[0].isna().all()  # wce vs itself: no test
    assert table.filter(like="p_").iloc[1:].notna().any(axis=None)
    relations = pd.read_csv(out / "label_relations.csv")
    assert list(relations["loss"])[1:] == list(table["loss"])
    assert relations["agreement_with_real_labels"].between(-1, 1).iloc[1:].any()
    assert (out / "label_relations.png").stat().st_size > 10_000
    assert (out / "ewl_term.png").stat().st_size > 10_000
    # A second call reuses the predictions (nothing retrained); a run of another loss is refused.
    stamp = (runs / "tiny_wce" / "predictions_test.csv").stat().st_mtime_ns
    assert program.main(argv + ["--readings", "softmax_ce"]) == 0
    assert (runs / "tiny_wce" / "predictions_test.csv").stat().st_mtime_ns == stamp
    config = json.loads((runs / "tiny_ewl" / "config.json").read_text())
    (runs / "tiny_ewl" / "config.json").write_text(json.dumps({**config, "loss": "wce"}))
    capsys.readouterr()
    assert program.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "tiny_ewl" in err and "loss is 'wce', expected 'ewl'" in err
    # Reused predictions of a run trained on another build of the data are refused too.
    (runs / "tiny_ewl" / "config.json").write_text(json.dumps(
        {**config, "manifest_sha256": "0" * 64,
         "data_summary": {**config["data_summary"], "split_seed": 7}}))
    assert program.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {shards_dir}/manifest.json: not the data {runs / 'tiny_ewl'} "
                          "was trained on (split seed 7 vs 0") and err.count("\n") == 1


def _auc(y, s):
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(y, s)


def test_cli_bad_label_file_is_one_line_error(tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    argv = ["--data", str(tmp_path), "--runs-dir", str(tmp_path), "--labels", str(missing),
            "--out", str(tmp_path)]
    assert program.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err and err.count("\n") == 1


def test_figure_only(tmp_path):
    assert program.main(["--figure-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "ewl_term.png").stat().st_size > 10_000
    assert not (tmp_path / "ablation.csv").exists()


# --- regressions: layouts, figure panels and styles, no-positive classes -----------------------------
def _exact_auc_frame(k_of_class) -> pd.DataFrame:
    """40 images, class j positive on the 10 with (i + j) % 4 == 0; positive p scores above exactly
    c_p of the 30 negatives with Σ c_p = k → AUC k/300 exactly, no ties."""
    i = np.arange(40)
    y = ((i[:, None] + np.arange(14)[None, :]) % 4 == 0).astype(int)
    scores = np.empty(y.shape)
    for j in range(14):
        k = k_of_class(j)
        c = np.full(10, k // 10) + (np.arange(10) < k % 10)
        scores[y[:, j] == 0, j] = (np.arange(30) + 1) / 100
        scores[y[:, j] == 1, j] = (c + 0.5) / 100
    df = pd.DataFrame({"image_index": [f"{k:08d}_000.png" for k in i], "patient_id": i // 2})
    for j, c in enumerate(CLASSES):
        df[f"label_{c}"] = y[:, j]
    for j, c in enumerate(CLASSES):
        df[f"score_{c}"] = scores[:, j]
    return df


def test_ablation_row_per_class_comparison_columns():
    """Baseline AUC 0.5 everywhere; the reading: classes 0–4 AUC 0.99 (better), 5–7 AUC 0.10
    (worse, and below one half), 8–13 the baseline's own scores (p = 1)."""
    base = _exact_auc_frame(lambda j: 150)
    other = _exact_auc_frame(lambda j: 297 if j < 5 else 30 if j < 8 else 150)
    row = ablation.ablation_row("softmax_ce", other, base, n_resamples=20, seed=0)
    p = {c: row[f"p_{c}"] for c in CLASSES}
    assert all(p[c] < 0.05 for c in CLASSES[:8])
    assert all(p[c] == 1.0 for c in CLASSES[8:])  # identical scores: z = 0
    assert (row["n_better"], row["n_worse"], row["n_auc_below_half"]) == (5, 3, 3)
    assert row["auc_Atelectasis"] == pytest.approx(0.99) and row["auc_Fibrosis"] == pytest.approx(0.1)
    assert row["reading"] == ablation.READING_TEXT["softmax_ce"]
    same = ablation.ablation_row("wce", base, base, n_resamples=20, seed=0)  # the baseline itself
    assert all(np.isnan(same[f"p_{c}"]) for c in CLASSES)
    assert (same["n_better"], same["n_worse"], same["n_auc_below_half"]) == (0, 0, 0)


def test_label_relations_figure_one_scale_labelled_bars_reference_caption():
    from reproduce.study import plots

    rng = np.random.default_rng(0)
    phi = cooccurrence.phi_matrix((rng.random((200, 14)) < 0.3).astype(int))
    matrices = {loss: cooccurrence.column_correlation(rng.normal(size=(50, 14))) for loss in ("wce", "ewl")}
    rows = [{"loss": "test labels (reference)", "agreement_with_real_labels": 0.42},
            {"loss": "wce", "agreement_with_real_labels": -0.07},
            {"loss": "ewl", "agreement_with_real_labels": 0.13}]
    fig = plots.relations_figure(phi, matrices, rows, "SYNTHETIC")
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == 3 and {im.get_clim() for im in images} == {(-1.0, 1.0)}  # one scale
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colorbars) == 1
    bars = next(ax for ax in fig.axes if ax.patches)
    assert [t.get_text() for t in bars.texts] == ["+0.42", "-0.07", "+0.13"]  # labelled bars
    assert [t.get_text() for t in bars.get_yticklabels()] == [r["loss"] for r in rows]
    caption = fig.get_supxlabel()
    assert "Reference bar" in caption and "test split's own labels" in caption
    import matplotlib.pyplot as plt

    plt.close(fig)
