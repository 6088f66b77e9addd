"""The synthetic ChestX-ray14: real labels, covered splits, NIH file formats, signal only when asked."""
import hashlib
import json

import cv2
import numpy as np
import pytest

from data_prep import phantom
from data_prep.labels import EXPERT_FINDINGS, read_bbox_file, read_expert_labels, read_label_file
from data_prep.phantom import choose, make
from data_prep.phantom.choose import choose_patients
from data_prep.schema import CLASSES
from data_prep.split import OFFICIAL_VAL_FRACTION, cut_patients, official_split, patient_split
from reproduce.config import demo


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_labels_are_the_real_rows(phantom_dir, sample_labels):
    made = read_label_file(phantom_dir / "Data_Entry_2017_v2020.csv")
    real = read_label_file(sample_labels).set_index("image_index").loc[made["image_index"]].reset_index()
    cols = ["image_index", "finding_labels", "follow_up", "patient_id", "age", "gender", "view", *CLASSES]
    assert made[cols].equals(real[cols])
    # whole patients only: every image of a chosen patient is there
    real_all = read_label_file(sample_labels)
    assert set(real_all[real_all["patient_id"].isin(made["patient_id"])]["image_index"]) == set(made["image_index"])
    line = (phantom_dir / "Data_Entry_2017_v2020.csv").read_text().splitlines()[1].split(",")
    assert line[7:9] == ["1024", "1024"]


def test_every_class_in_every_subset_of_both_splits(phantom_dir):
    df = read_label_file(phantom_dir / "Data_Entry_2017_v2020.csv")
    for splits in (patient_split(df, 0), official_split(df, phantom_dir, 0)):
        for name, frame in splits.items():
            assert (frame[list(CLASSES)].sum() >= 1).all(), name


def test_official_lists_patient_disjoint_and_complete(phantom_dir):
    df = read_label_file(phantom_dir / "Data_Entry_2017_v2020.csv").set_index("image_index")
    tv = (phantom_dir / "train_val_list.txt").read_text().split()
    test = (phantom_dir / "test_list.txt").read_text().split()
    assert sorted(tv + test) == sorted(df.index) and not set(tv) & set(test)
    assert not set(df.loc[tv, "patient_id"]) & set(df.loc[test, "patient_id"])
    share = df.loc[test, "patient_id"].nunique() / df["patient_id"].nunique()
    assert 0.15 < share < 0.32  # ~23% of patients, as NIH's test_list


def test_images_formats_and_size(phantom_dir):
    files = sorted((phantom_dir / "images").iterdir())
    assert len(files) == len(read_label_file(phantom_dir / "Data_Entry_2017_v2020.csv"))
    kinds = {"gray": 0, "rgba": 0, "u16": 0}
    for path in files:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert img.shape[:2] == (1024, 1024)
        kinds["rgba" if img.ndim == 3 else "u16" if img.dtype == np.uint16 else "gray"] += 1
    assert kinds["rgba"] >= 1 and kinds["u16"] >= 1 and kinds["gray"] > 0.9 * len(files)
    assert json.loads((phantom_dir / "phantom.json").read_text())["formats"] == kinds


def test_bbox_file_parses_and_boxes_belong_to_positive_findings(phantom_dir):
    boxes = read_bbox_file(phantom_dir / "BBox_List_2017.csv")
    assert "Infiltrate" in (phantom_dir / "BBox_List_2017.csv").read_text() or "Infiltration" not in set(boxes["label"])
    df = read_label_file(phantom_dir / "Data_Entry_2017_v2020.csv").set_index("image_index")
    assert len(boxes) == int(df[list(CLASSES)].to_numpy().sum())  # one box per drawn finding
    for row in boxes.itertuples():
        assert df.loc[row.image_index, row.label] == 1
        assert 0 <= row.x and 0 <= row.y and row.w > 0 and row.h > 0
        assert row.x + row.w <= 1024 + 1e-6 and row.y + row.h <= 1024 + 1e-6


def test_phantom_json(phantom_dir):
    meta = json.loads((phantom_dir / "phantom.json").read_text())
    df = read_label_file(phantom_dir / "Data_Entry_2017_v2020.csv")
    assert meta["synthetic"] is True and meta["seed"] == 0 and meta["images"] == len(df)
    assert meta["patients"] == df["patient_id"].nunique()
    assert meta["positives"]["Hernia"] == int(df["Hernia"].sum()) >= 3


def test_strength_zero_draws_no_finding():
    """Findings come from their own random stream: at strength 0 the image of a patient with all
    14 findings is byte-identical to the same image with none."""
    none, all_ = np.zeros(14, int), np.ones(14, int)
    a, _ = phantom.render("00000001_000.png", all_, seed=0, strength=0.0)
    b, _ = phantom.render("00000001_000.png", none, seed=0, strength=0.0)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("name", CLASSES)
def test_each_finding_visible_at_the_demo_size_inside_its_box(name):
    """Default strength: the signature changes the image at the demo preset's size (INTER_AREA, as
    data_prep.build then training's resize give it), mostly inside its box."""
    size = demo().image_size
    cell = phantom.SIZE / size  # image pixels per demo pixel
    labels = np.array([c == name for c in CLASSES], int)
    diffs = []
    for k in range(3):
        idx = f"0000000{k}_000.png"
        with_, boxes = phantom.render(idx, labels, seed=0)
        without, _ = phantom.render(idx, np.zeros(14, int), seed=0)
        small = [cv2.resize(i, (size, size), interpolation=cv2.INTER_AREA).astype(float) for i in (with_, without)]
        d = np.abs(small[0] - small[1])
        (_, x, y, w, h), = boxes
        inside = d[int(y // cell):int(np.ceil((y + h) / cell)), int(x // cell):int(np.ceil((x + w) / cell))]
        assert inside.sum() >= 0.8 * d.sum()
        diffs.append(d.max())
    assert min(diffs) >= 8  # gray levels at the demo size


def test_cli_rebuild_is_byte_identical(tmp_path, sample_labels, phantom_dir, capsys):
    """The CLI with conftest's arguments rebuilds the session phantom byte for byte."""
    args = ["--labels", str(sample_labels), "--images", "160", "--seed", "0", "--out", str(tmp_path)]
    assert phantom.main(args) == 0
    assert "images of" in capsys.readouterr().out
    a = _digest(tmp_path)
    assert a == _digest(phantom_dir)
    for name in ("Data_Entry_2017_v2020.csv", "train_val_list.txt", "test_list.txt",
                 "BBox_List_2017.csv", "phantom.json"):
        assert name in a
    one, _ = phantom.render("00000001_000.png", np.zeros(14, int), seed=0)
    other, _ = phantom.render("00000001_000.png", np.zeros(14, int), seed=1)
    assert not np.array_equal(one, other)


def test_cli_bad_labels_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "labels.csv"
    bad.write_text("a,b\n1,2\n")
    assert phantom.main(["--labels", str(bad), "--out", str(tmp_path / "o"), "--images", "10"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(bad) in err and err.count("\n") == 1


# ---- patients of expert-labelled images (Majkowska et al. 2019) in the paper test split ----------
def _hand_made_expert(df):
    """Every image of every third sample patient with <= 6 images 'expert-labelled'; image i of
    them is YES for finding j when (i + j) % 3 == 0."""
    sizes = df.groupby("patient_id").size()
    rows = df[df["patient_id"].isin(sizes[sizes <= 6].index[::3])][["image_index", "patient_id"]].copy()
    for j, f in enumerate(EXPERT_FINDINGS):
        rows[f] = ((np.arange(len(rows)) + j) % 3 == 0).astype(np.uint8)
    return rows.reset_index(drop=True)


def _paper_and_official(df, patients, test_patients, seed):
    sub = df[df["patient_id"].isin(set(patients.tolist()))]
    test = set(test_patients.tolist())
    official = {"test": sub[sub["patient_id"].isin(test)]}
    tv = sub[~sub["patient_id"].isin(test)]
    val, train = cut_patients(tv["patient_id"].unique(), (OFFICIAL_VAL_FRACTION, 1 - OFFICIAL_VAL_FRACTION), seed)
    official.update(train=tv[tv["patient_id"].isin(train)], val=tv[tv["patient_id"].isin(val)])
    return patient_split(sub, seed), official


def test_expert_patients_are_wanted_in_the_paper_test_split(sample_labels, monkeypatch):
    """With a hand-made expert set and shares raised to 1/8 of the images and 1/40 positives per
    finding (20 and 4 at 160 images), the paper test split gets them; every guarantee holds."""
    monkeypatch.setattr(choose, "EXPERT_SHARES", (1 / 8, 1 / 40, 1 / 40, 1 / 40, 1 / 40))
    df = read_label_file(sample_labels)
    expert = _hand_made_expert(df)
    found = {}
    for given in (None, expert):
        patients, test_patients = choose_patients(df, 160, seed=0, expert=given)
        paper, official = _paper_and_official(df, patients, test_patients, 0)
        for splits in (paper, official):  # the usual guarantee holds either way
            assert all((f[list(CLASSES)].sum() >= 1).all() for f in splits.values())
        found[given is not None] = expert[expert["image_index"].isin(set(paper["test"]["image_index"]))]
    assert len(found[True]) >= max(15, 2 * len(found[False]))  # measured: 20 vs 5
    assert (found[True][list(EXPERT_FINDINGS)].sum() >= 4).all()  # measured: 7, 6, 7, 7
    again = choose_patients(df, 160, seed=0, expert=expert)
    assert np.array_equal(again[0], choose_patients(df, 160, seed=0, expert=expert)[0])  # seeded


def test_demo_scale_test_split_holds_expert_images(real_labels, real_expert):
    """`make phantom` (1,200 images, seed 0): >= 30 expert images in the paper test split, with
    radiologist positives of each finding reproduce.report expert scores (measured: 55; 5/8/18)."""
    df = read_label_file(real_labels)
    expert = read_expert_labels(real_expert)
    patients, test_patients = choose_patients(df, 1200, seed=0, expert=expert)
    paper, official = _paper_and_official(df, patients, test_patients, 0)
    for splits in (paper, official):  # the hard floor (measured: >= 3 everywhere)
        assert all((f[list(CLASSES)].sum() >= 1).all() for f in splits.values())
    rows = expert[expert["image_index"].isin(set(paper["test"]["image_index"]))]
    assert len(rows) >= 30
    assert (rows[["Pneumothorax", "Nodule or mass", "Airspace opacity"]].sum() >= 5).all()


def test_cli_expert_labels_counted_in_phantom_json(tmp_path, sample_labels, monkeypatch, capsys):
    """--expert-labels reaches the patient choice and phantom.json counts expert images per split
    (drawing is skipped here; it is tested above)."""
    df = read_label_file(sample_labels)
    expert = _hand_made_expert(df)
    path = tmp_path / "google.csv"
    header = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],Fracture,Pneumothorax,"
              "Airspace opacity,Nodule or mass,Set Id\n")
    order = ["Fracture", "Pneumothorax", "Airspace opacity", "Nodule or mass"]  # the file's column order
    path.write_text(header + "".join(
        f"{r.image_index},No Finding,0,{r.patient_id},50,M,PA,1,1,1,1,"
        + ",".join("YES" if r[f] else "NO" for f in order) + ",test\n" for _, r in expert.iterrows()))
    monkeypatch.setattr(make, "_render_all", lambda jobs, workers: [])
    args = ["--labels", str(sample_labels), "--images", "160", "--seed", "0", "--out", str(tmp_path / "p"),
            "--expert-labels", str(path)]
    assert phantom.main(args) == 0
    meta = json.loads((tmp_path / "p" / "phantom.json").read_text())["expert"]
    made = read_label_file(tmp_path / "p" / "Data_Entry_2017_v2020.csv")
    test = patient_split(made, 0)["test"]
    expected = expert[expert["image_index"].isin(set(test["image_index"]))]
    assert meta["labels"] == "google.csv" and meta["splits"]["paper"]["test"] == {
        "images": len(expected), **{f: int(expected[f].sum()) for f in EXPERT_FINDINGS}}
    assert f"test {len(expected)}" in capsys.readouterr().out
