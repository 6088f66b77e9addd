"""reproduce.report.localization: IoU and IoBB on hand-made boxes, a heatmap's box (largest
8-connected region, scaled to the 1024² frame), the accuracy table (strictly above each
threshold, as Wang et al.), Wang et al. 2017's published numbers beside ours, and their
transcription (reproduce/report/wang2017_localization.csv)."""
import numpy as np
import pandas as pd
import pytest

from reproduce.report import localization as loc

WANG_CLASSES = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
                "Pneumonia", "Pneumothorax"]


@pytest.mark.parametrize("pred, truth, expected_iou, expected_iobb", [
    ((0, 0, 10, 10), (5, 5, 10, 10), 25 / 175, 25 / 100),  # corner overlap: 5×5 of two 10×10
    ((2, 2, 4, 4), (0, 0, 10, 10), 16 / 100, 1.0),  # prediction inside the truth: IoBB 1
    ((0, 0, 10, 10), (2, 2, 4, 4), 16 / 100, 16 / 100),  # truth inside the prediction
    ((0, 0, 5, 5), (5, 0, 5, 5), 0.0, 0.0),  # touching edges: no area in common
    ((0, 0, 4, 2), (1, 1, 2, 4), 2 / 14, 2 / 8),  # 2×1 in common; union 8 + 8 − 2
    ((3, 3, 6, 6), (3, 3, 6, 6), 1.0, 1.0),
])
def test_iou_and_iobb_by_hand(pred, truth, expected_iou, expected_iobb):
    assert loc.iou(pred, truth) == pytest.approx(expected_iou)
    assert loc.iobb(pred, truth) == pytest.approx(expected_iobb)


def test_iobb_divides_by_the_predicted_box_not_the_true_one():
    # Wang et al.: "Intersection over the detected B-Box area ratio"
    assert loc.iobb((0, 0, 2, 2), (0, 0, 10, 10)) == 1.0
    assert loc.iobb((0, 0, 10, 10), (0, 0, 2, 2)) == pytest.approx(0.04)


def _two_regions() -> np.ndarray:
    h = np.zeros((8, 8))
    h[1:3, 1:3] = 1.0  # 4 pixels at the maximum
    h[5:8, 4:7] = 0.8  # 9 pixels, lower but above 180/255 = 0.706 after normalising
    return h


def test_heatmap_box_is_the_largest_region_in_frame_pixels():
    # 8×8 map over a 1024² frame: one map pixel = 128 frame pixels
    assert loc.heatmap_box(_two_regions()) == (4 * 128, 5 * 128, 3 * 128, 3 * 128)
    assert loc.heatmap_box(_two_regions(), threshold=0.9) == (128, 128, 256, 256)
    assert loc.heatmap_box(_two_regions(), frame=8) == (4, 5, 3, 3)


def test_heatmap_box_joins_diagonal_neighbours_and_breaks_ties_in_raster_order():
    h = np.zeros((6, 6))
    h[[0, 1, 2], [0, 1, 2]] = 1.0  # a diagonal: one 8-connected region of 3 (three under 4-conn.)
    h[0, 4:6] = 1.0  # a horizontal pair: 2
    assert loc.heatmap_box(h, frame=6) == (0, 0, 3, 3)
    tie = np.zeros((4, 4))
    tie[0, 2:4] = tie[3, 0:2] = 1.0  # two regions of 2: the first met in raster order wins
    assert loc.heatmap_box(tie, frame=4) == (2, 0, 2, 1)


def test_heatmap_box_scales_each_axis_and_a_constant_map_is_the_whole_image():
    h = np.zeros((4, 8))
    h[1, 2] = 5.0  # one pixel of a 4-row, 8-column map: 256 frame pixels tall, 128 wide
    assert loc.heatmap_box(h) == (256, 256, 128, 256)
    assert loc.heatmap_box(np.zeros((7, 7))) == (0, 0, 1024, 1024)
    np.testing.assert_array_equal(loc.normalize(np.array([[2.0, 4.0], [3.0, 2.0]])),
                                  [[0, 1], [0.5, 0]])
    for bad in (np.zeros(4), np.array([[np.nan, 1.0]])):
        with pytest.raises(ValueError, match="heatmap"):
            loc.heatmap_box(bad)
    with pytest.raises(ValueError, match="threshold"):
        loc.heatmap_box(np.eye(3), threshold=0)


def _scored() -> pd.DataFrame:
    truth = pd.DataFrame({"image_index": ["a.png", "b.png", "c.png", "c.png"],
                          "label": ["Mass", "Mass", "Mass", "Hernia"],
                          "x": [0.0, 0, 0, 100], "y": [0.0, 0, 0, 100], "w": [10.0, 10, 10, 10],
                          "h": [10.0, 10, 10, 10]})
    predicted = {("a.png", "Mass"): (0, 0, 10, 10),  # IoU 1, IoBB 1
                 ("b.png", "Mass"): (5, 0, 10, 10),  # IoU 50/150, IoBB 0.5
                 ("c.png", "Mass"): (0, 0, 40, 40),  # IoU 100/1600, IoBB 0.0625
                 ("c.png", "Hernia"): (0, 0, 10, 10)}  # disjoint
    return loc.score_boxes(truth, predicted)


def test_score_boxes_keeps_each_true_box_with_its_predicted_box():
    scored = _scored()
    assert scored["iou"].tolist() == pytest.approx([1.0, 1 / 3, 0.0625, 0.0])
    assert scored["iobb"].tolist() == pytest.approx([1.0, 0.5, 0.0625, 0.0])
    assert scored.loc[2, ["pred_x", "pred_y", "pred_w", "pred_h"]].tolist() == [0, 0, 40, 40]
    with pytest.raises(ValueError, match="no predicted box"):
        loc.score_boxes(scored[["image_index", "label", "x", "y", "w", "h"]], {})


def test_accuracy_table_counts_boxes_strictly_above_each_threshold():
    table = loc.accuracy_table(_scored()).set_index(["class", "measure", "threshold"])
    # Mass IoU: 1, 1/3, 0.0625 -> above 0.1: 2, above 0.25: 2, 0.5: 1, 0.75: 1, 0.9: 1
    assert [table.loc[("Mass", "iou", t), "correct"] for t in loc.THRESHOLDS] == [2, 2, 1, 1, 1]
    # Mass IoBB: 1, 0.5, 0.0625 -> 0.5 is not above 0.5 (Wang et al.: IoBB > T(IoBB))
    assert [table.loc[("Mass", "iobb", t), "correct"] for t in loc.THRESHOLDS] == [2, 2, 1, 1, 1]
    assert table.loc[("Mass", "iou", 0.1), "accuracy"] == pytest.approx(2 / 3)
    assert table.loc[("Hernia", "iobb", 0.1), "accuracy"] == 0.0
    assert table.loc[(loc.ALL, "iou", 0.1), ["boxes", "images", "correct"]].tolist() == [4, 3, 2]
    classes = list(dict.fromkeys(table.index.get_level_values("class")))
    assert classes == ["Hernia", "Mass", loc.ALL]  # Table I order, then every box pooled
    assert len(table) == 3 * 2 * len(loc.THRESHOLDS)


def test_whole_image_reference_scores_each_true_box_by_its_share_of_the_image():
    truth = pd.DataFrame({"image_index": ["a.png", "b.png"], "label": ["Mass", "Cardiomegaly"],
                          "x": [0.0, 100.0], "y": [0.0, 200.0], "w": [512.0, 102.4], "h": [512.0, 1024.0]})
    boxes = loc.whole_image_boxes(truth)
    assert boxes == {("a.png", "Mass"): (0, 0, 1024, 1024), ("b.png", "Cardiomegaly"): (0, 0, 1024, 1024)}
    scored = loc.score_boxes(truth, boxes)
    # 512² of 1024² = 0.25; 102.4 × 824 (the part inside the image) / 1024² = 0.0805 (IoBB), and
    # IoU = 84,377.6 / (1024² + 104,857.6 − 84,377.6)
    assert scored["iobb"].tolist() == pytest.approx([0.25, 102.4 * 824 / 1024**2])
    assert scored["iou"].tolist() == pytest.approx([0.25, 84377.6 / (1024**2 + 104857.6 - 84377.6)])


def test_comparison_puts_wang_et_al_beside_ours_where_they_published():
    table = loc.comparison(loc.accuracy_table(_scored()), loc.read_wang_table(), "densenet121_wce",
                           "synthetic")
    assert list(table.columns) == loc.TABLE_COLUMNS
    assert set(table["run"]) == {"densenet121_wce"} and set(table["data"]) == {"synthetic"}
    row = table.set_index(["class", "measure", "threshold"])
    # IoBB: ChestX-ray14 (arXiv v5 Table 19); IoU: ChestX-ray8 (Table 7), 0.1 and 0.5 only
    assert row.loc[("Mass", "iobb", 0.1), "wang2017"] == pytest.approx(0.5882)
    assert "Table 19" in row.loc[("Mass", "iobb", 0.1), "wang2017_source"]
    assert row.loc[("Mass", "iobb", 0.9), "wang2017"] == pytest.approx(0.0941)
    assert row.loc[("Mass", "iou", 0.1), "wang2017"] == pytest.approx(0.4000)
    assert row.loc[("Mass", "iou", 0.5), "wang2017"] == pytest.approx(0.0117)
    assert "ChestX-ray8" in row.loc[("Mass", "iou", 0.5), "wang2017_source"]
    for key in [("Mass", "iou", 0.25), ("Hernia", "iobb", 0.1), (loc.ALL, "iou", 0.1)]:
        assert np.isnan(row.loc[key, "wang2017"]) and row.loc[key, "wang2017_source"] == ""


def test_wang_transcription_layout_and_its_internal_consistency():
    wang = loc.read_wang_table()
    assert list(wang.columns) == ["source", "dataset", "measure", "threshold", "statistic",
                                  *WANG_CLASSES]
    blocks = {k: sorted(set(g["threshold"])) for k, g in wang.groupby(["dataset", "measure"])}
    assert blocks == {("ChestX-ray14", "iobb"): list(loc.THRESHOLDS),
                      ("ChestX-ray8", "iobb"): list(loc.THRESHOLDS),
                      ("ChestX-ray8", "iou"): [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]}
    assert len(wang) == 2 * (5 + 5 + 7) and not wang[WANG_CLASSES].isna().any().any()
    # A transcription slip would likely break these: accuracy cannot rise, nor the average
    # number of false positives fall, as the overlap required rises.
    for (dataset, measure, statistic), g in wang.groupby(["dataset", "measure", "statistic"]):
        values = g.sort_values("threshold")[WANG_CLASSES].to_numpy()
        steps = np.diff(values, axis=0)
        assert (steps <= 0).all() if statistic == "acc" else (steps >= 0).all(), (dataset, measure)
    assert wang[wang["statistic"] == "acc"][WANG_CLASSES].to_numpy().max() <= 1.0
    first = wang.iloc[0]  # ChestX-ray14, IoBB > 0.1: Cardiomegaly printed as "1"
    assert (first["dataset"], first["Atelectasis"], first["Cardiomegaly"]) == ("ChestX-ray14", 0.6222, 1.0)
