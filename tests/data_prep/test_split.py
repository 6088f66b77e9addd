"""Patient-wise splits (paper §IV.A "(7:1:2) by patient"): ratios, no leak, determinism, CLI."""
import json
import subprocess
import sys

import pandas as pd
import pytest

from data_prep.labels import read_label_file
from data_prep.split import (SplitError, check_patient_disjoint, make_split, official_split,
                             patient_split, read_split, write_splits)


@pytest.fixture(scope="module")
def sample_df(sample_labels):
    return read_label_file(sample_labels)


def test_paper_split_is_7_1_2_by_patient(sample_df):
    splits = patient_split(sample_df, seed=0)
    patients = {k: v["patient_id"].nunique() for k, v in splits.items()}
    # 270 patients: cumulative rounding of 0.7, 0.8 of 270 -> 189 | 27 | 54.
    assert patients == {"train": 189, "val": 27, "test": 54}
    assert sum(len(v) for v in splits.values()) == len(sample_df)
    check_patient_disjoint(splits)


def test_split_is_deterministic_and_seeded(sample_df):
    a, b = patient_split(sample_df, seed=3), patient_split(sample_df, seed=3)
    c = patient_split(sample_df, seed=4)
    assert all(a[k]["image_index"].tolist() == b[k]["image_index"].tolist() for k in a)
    assert a["test"]["image_index"].tolist() != c["test"]["image_index"].tolist()


def test_split_ignores_row_order(sample_df):
    shuffled = sample_df.sample(frac=1.0, random_state=1)
    a, b = patient_split(sample_df, 0), patient_split(shuffled, 0)
    assert all(a[k]["image_index"].tolist() == b[k]["image_index"].tolist() for k in a)


def test_patient_leak_is_refused(sample_df):
    leaked = {"train": sample_df.iloc[:10], "val": sample_df.iloc[9:20], "test": sample_df.iloc[20:30]}
    leaked_pid = sample_df.iloc[9]["patient_id"]
    with pytest.raises(SplitError, match=f"patient {leaked_pid} appears in both train and val"):
        check_patient_disjoint(leaked)  # row 9 sits in both train and val


def _write_lists(tmp_path, df, test_patients):
    test = df[df["patient_id"].isin(test_patients)]["image_index"]
    train_val = df[~df["patient_id"].isin(test_patients)]["image_index"]
    (tmp_path / "test_list.txt").write_text("\n".join(test) + "\n")
    (tmp_path / "train_val_list.txt").write_text("\n".join(train_val) + "\n")
    return set(test)


def test_official_lists_with_val_carved_by_patient(tmp_path, sample_df):
    patients = sorted(sample_df["patient_id"].unique())
    test_images = _write_lists(tmp_path, sample_df, patients[:60])
    splits = official_split(sample_df, tmp_path, seed=0)
    assert set(splits["test"]["image_index"]) == test_images
    # 210 train_val patients, 1/8 of them (rounded) to validation.
    assert splits["val"]["patient_id"].nunique() == round(210 / 8)
    check_patient_disjoint(splits)


def test_official_lists_that_leak_are_refused(tmp_path, sample_df):
    df = sample_df
    pid = df["patient_id"].value_counts().index[0]  # a patient with several images
    images = df[df["patient_id"] == pid]["image_index"].tolist()
    rest = df[df["patient_id"] != pid]["image_index"].tolist()
    (tmp_path / "test_list.txt").write_text(images[0] + "\n")
    (tmp_path / "train_val_list.txt").write_text("\n".join(images[1:] + rest) + "\n")
    with pytest.raises(SplitError, match=f"patient {pid} appears in both"):
        official_split(df, tmp_path, seed=0)


def test_official_needs_lists(sample_df):
    with pytest.raises(SplitError, match="--lists"):
        make_split(sample_df, "official")


def test_split_csv_round_trip(tmp_path, sample_df):
    splits = patient_split(sample_df, seed=0)
    write_splits(splits, tmp_path)
    back = read_split(tmp_path / "val.csv")
    pd.testing.assert_frame_equal(back, splits["val"][back.columns.tolist()], check_dtype=False)
    assert back["image_index"].str.endswith(".png").all()


def test_cli_on_real_file_takes_seconds(tmp_path, real_labels):
    cmd = [sys.executable, "-m", "data_prep.split", "--labels", str(real_labels), "--out", str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    summary = json.loads((tmp_path / "split_summary.json").read_text())
    sizes = {k: v["patients"] for k, v in summary["splits"].items()}
    assert sum(sizes.values()) == 30_805
    assert abs(sizes["train"] / 30_805 - 0.7) < 1e-3 and abs(sizes["test"] / 30_805 - 0.2) < 1e-3
    assert sum(v["images"] for v in summary["splits"].values()) == 112_120
    assert all(v["positives"]["Hernia"] > 0 for v in summary["splits"].values())
    assert "train" in out


def test_cli_bad_file_is_one_line(tmp_path):
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n")
    r = subprocess.run([sys.executable, "-m", "data_prep.split", "--labels", str(bad), "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and str(bad) in r.stderr
