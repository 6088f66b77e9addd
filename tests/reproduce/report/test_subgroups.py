"""reproduce.report.subgroups: a subgroup's AUC by hand on 8 images, the groups read from the label
file (bands, ages above 100, views, visits), cells with too few positives never given a number,
the mean over the attribute's common classes, the largest gap, and Eq. (2) − wce with DeLong."""
import numpy as np
import pandas as pd
import pytest

from data_prep.schema import CLASSES
from reproduce import metrics
from reproduce.report import subgroups as sg
from reproduce.report.predictions import ReportError, predictions_frame

# Atelectasis on 8 images, 4 women then 4 men:
#   women: positives 0.9, 0.3 vs negatives 0.2, 0.4 → 3 of 4 pairs ordered → AUC 0.75
#   men:   positives 0.6, 0.5 vs negatives 0.7, 0.1 → 2 of 4 → 0.5
#   all:   12 of 16 → 0.75
Y = np.array([1, 0, 1, 0, 1, 1, 0, 0])
S = np.array([0.9, 0.2, 0.3, 0.4, 0.6, 0.5, 0.7, 0.1])
IDS = [f"{i:08d}_000.png" for i in range(8)]
LABEL_ROWS = pd.DataFrame({"image_index": IDS, "patient_id": np.arange(8),
                           "age": [5, 25, 45, 65, 85, 148, 30, 50],
                           "gender": ["F"] * 4 + ["M"] * 4, "view": ["PA", "AP"] * 4,
                           "follow_up": [0, 1, 0, 2, 0, 0, 3, 0]})


def _frame(scores=S, mass=None):
    labels = np.zeros((8, 14), int)
    labels[:, 0] = Y
    if mass is not None:
        labels[:, CLASSES.index("Mass")] = mass
    s = np.tile(np.linspace(0.1, 0.8, 8)[:, None], (1, 14))
    s[:, 0] = scores
    return predictions_frame(labels, s, IDS, np.arange(8))


def test_demographics_bands_unknown_ages_views_visits():
    demo = sg.demographics(_frame(), LABEL_ROWS, "labels.csv")
    assert demo["sex"].tolist() == ["female"] * 4 + ["male"] * 4
    assert demo["age"].fillna("none").tolist() == ["0-19", "20-39", "40-59", "60-79", "80+", "none", "20-39", "40-59"]
    assert demo["age_unknown"].tolist() == [False] * 5 + [True, False, False]  # 148: a recording error
    assert demo["visit"].tolist() == ["first image", "follow-up", "first image", "follow-up",
                                      "first image", "first image", "follow-up", "first image"]
    masks = sg.subgroup_masks(demo)
    assert list(masks)[:3] == [("all", "all images"), ("sex", "female"), ("sex", "male")]
    assert sum(masks[("age", b)].sum() for _, _, b in sg.AGE_BANDS) == 7  # the 148-year-old in none
    assert masks[("view", "AP")].tolist() == [False, True] * 4


def test_demographics_refuses_missing_images_and_other_patients():
    with pytest.raises(ReportError, match="1 of the 8 predicted images are not in labels.csv"):
        sg.demographics(_frame(), LABEL_ROWS.iloc[1:], "labels.csv")
    other = LABEL_ROWS.assign(patient_id=LABEL_ROWS["patient_id"] + (LABEL_ROWS.index == 3))
    with pytest.raises(ReportError, match="00000003_000.png: patient 3 in the predictions but 4"):
        sg.demographics(_frame(), other, "labels.csv")


def test_subgroup_auc_by_hand_too_few_and_gap():
    demo = sg.demographics(_frame(), LABEL_ROWS, "labels.csv")
    r = sg.evaluate_subgroups({"run": _frame()}, demo, CLASSES, 50, 0, min_positives=2)
    cell = lambda g: r["runs"]["run"][g]["per_class"]  # noqa: E731
    assert cell(("sex", "female"))["Atelectasis"]["auc"] == pytest.approx(0.75)
    assert cell(("sex", "male"))["Atelectasis"]["auc"] == pytest.approx(0.5)
    assert cell(("all", "all images"))["Atelectasis"]["auc"] == pytest.approx(0.75)
    assert r["groups"][("sex", "female")]["mean_classes"] == ["Atelectasis"]
    assert r["runs"]["run"][("sex", "female")]["mean"]["auc"] == pytest.approx(0.75)
    assert "Mass" not in cell(("sex", "female"))  # no positives: no number at all
    table = sg.frame(r, CLASSES)
    row = table[(table["group"] == "female") & (table["class"] == "Mass")].iloc[0]
    assert row["too_few_positives"] and np.isnan(row["auc"]) and row["positives"] == 0
    view = table[(table["attribute"] == "view") & (table["class"] == "Atelectasis")]
    assert view["too_few_positives"].tolist() == [True, True]  # PA: 1 negative; AP: 1 positive
    gaps = sg.gaps_frame(table)
    gap = gaps[(gaps["class"] == "Atelectasis") & (gaps["attribute"] == "sex")].iloc[0]
    assert (gap["highest_group"], gap["lowest_group"], gap["gap"]) == ("female", "male", pytest.approx(0.25))
    md = sg.markdown(table, gaps, None, "t", r)
    assert "| Mass | sex | female | 0 | n<2 |" in md and "nan" not in md.lower()


def test_mean_is_over_the_classes_common_to_the_attributes_groups():
    mass = np.array([1, 1, 0, 0, 0, 0, 0, 0])  # Mass: 2 positives, both women
    demo = sg.demographics(_frame(), LABEL_ROWS, "labels.csv")
    r = sg.evaluate_subgroups({"run": _frame(mass=mass)}, demo, CLASSES, 20, 0, min_positives=2)
    assert r["groups"][("sex", "female")]["shown"] == ["Atelectasis", "Mass"]
    assert r["groups"][("sex", "female")]["mean_classes"] == ["Atelectasis"]  # men have no Mass
    assert r["groups"][("all", "all images")]["mean_classes"] == ["Atelectasis", "Mass"]


def test_paired_difference_and_delong_per_subgroup():
    demo = sg.demographics(_frame(), LABEL_ROWS, "labels.csv")
    other = S[::-1].copy()
    frames = {"ewl": _frame(other), "wce": _frame()}
    r = sg.evaluate_subgroups(frames, demo, CLASSES, 50, 0, 2, pairs=[("ewl", "wce")])
    women = r["pairs"][("ewl", "wce")][("sex", "female")]["per_class"]["Atelectasis"]
    expected = metrics.delong_test(Y[:4], other[:4], S[:4])
    assert women["auc"] == pytest.approx(expected["difference"])
    assert women["p_value"] == pytest.approx(expected["p_value"])
    paired = sg.pairs_frame(r, CLASSES)
    mean = paired[(paired["group"] == "female") & (paired["class"] == sg.MEAN)].iloc[0]
    assert mean["difference"] == pytest.approx(expected["difference"]) and not mean["too_few_positives"]
    assert paired[(paired["group"] == "female") & (paired["class"] == "Mass")]["difference"].isna().all()
