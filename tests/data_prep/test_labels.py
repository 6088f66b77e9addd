"""Label files: both NIH releases, the real counts, unknown labels, the bbox list."""
import gzip
from pathlib import Path

import numpy as np
import pytest

from data_prep import fetch_labels
from data_prep.labels import (LabelFileError, class_counts, encode_findings, label_matrix,
                              read_bbox_file, read_label_file)
from data_prep.schema import CLASSES

V2020_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
                "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
# The original 2017 release: same columns plus a trailing comma (a 12th, empty column), and
# ages such as 414 (the release's known quirk).
ORIGINAL_ROWS = [
    V2020_HEADER + ",",
    "00000001_000.png,Cardiomegaly,0,1,058Y,M,PA,2682,2749,0.143,0.143,",
    "00000002_000.png,No Finding,0,2,081Y,M,PA,2500,2048,0.171,0.171,",
]


def test_table1_order_and_spelling():
    assert CLASSES[0] == "Atelectasis" and CLASSES[-1] == "Pneumothorax"
    assert "Pleural_Thickening" in CLASSES and len(CLASSES) == 14


def test_encode_findings_multi_label_and_no_finding():
    v = encode_findings("Cardiomegaly|Effusion", "row 2")
    assert v.tolist() == [0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert encode_findings("No Finding", "row 3").sum() == 0


def test_unknown_label_names_the_row():
    with pytest.raises(LabelFileError, match=r"file.csv:7 .*'Pneumonitis'"):
        encode_findings("Effusion|Pneumonitis", "file.csv:7 (x.png)")


def test_v2020_sample(sample_labels):
    df = read_label_file(sample_labels)
    assert len(df) == 1138 and df["patient_id"].nunique() == 270
    assert label_matrix(df).shape == (1138, 14)
    first = df.iloc[0]
    # Hand check of one real row against its "Finding Labels" string.
    expected = encode_findings(first["finding_labels"], "row")
    assert (df.loc[0, list(CLASSES)].to_numpy(dtype=np.uint8) == expected).all()


def test_original_release_with_trailing_column(tmp_path):
    path = tmp_path / "Data_Entry_2017.csv"
    # Ages in the original file are plain integers; write them so (the "058Y" form is DICOM's).
    rows = [r.replace("058Y", "58").replace("081Y", "414") for r in ORIGINAL_ROWS]
    path.write_text("\n".join(rows) + "\n")
    df = read_label_file(path)
    assert df["image_index"].tolist() == ["00000001_000.png", "00000002_000.png"]
    assert df["age"].tolist() == [58, 414]  # kept as in the file; ages > 100 are a known quirk
    assert df["Cardiomegaly"].tolist() == [1, 0]


def test_gzipped_file_is_read(tmp_path, sample_labels):
    path = tmp_path / "Data_Entry_2017_v2020.csv.gz"
    path.write_bytes(gzip.compress(sample_labels.read_bytes()))
    assert len(read_label_file(path)) == 1138


@pytest.mark.parametrize("text, message", [
    ("a,b,c\n1,2,3\n", "not a ChestX-ray14"),
    (V2020_HEADER + "\n00000001_000.png,Cardiomegaly,0,x,57,M,PA,1,1,1,1\n", r":2: patient_id"),
    (V2020_HEADER + "\nA.png,Mass,0,1,57,M,PA,1,1,1,1\nA.png,Mass,1,1,57,M,PA,1,1,1,1\n", "twice"),
    (V2020_HEADER + "\nA.png,Mass|Tumour,0,1,57,M,PA,1,1,1,1\n", r":2 \(A.png\): unknown label 'Tumour'"),
])
def test_wrong_csv_is_a_one_line_error(tmp_path, text, message):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(LabelFileError, match=message) as err:
        read_label_file(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_real_file_counts(real_labels):
    """The numbers every ChestX-ray14 paper quotes (Wang et al. 2017; NIH README)."""
    df = read_label_file(real_labels)
    assert len(df) == 112_120
    assert df["patient_id"].nunique() == 30_805
    counts = class_counts(df)
    assert counts == {
        "Atelectasis": 11559, "Cardiomegaly": 2776, "Consolidation": 4667, "Edema": 2303,
        "Effusion": 13317, "Emphysema": 2516, "Fibrosis": 1686, "Hernia": 227,
        "Infiltration": 19894, "Mass": 5782, "Nodule": 6331, "Pleural_Thickening": 3385,
        "Pneumonia": 1431, "Pneumothorax": 5302,
    }
    assert int((label_matrix(df).sum(axis=1) == 0).sum()) == 60_361  # "No Finding"


def test_bbox_sample(sample_bbox):
    sample = read_bbox_file(sample_bbox)
    assert len(sample) == 40
    assert "Infiltration" in set(sample["label"])  # the file spells it "Infiltrate"


def test_bbox_unknown_label(tmp_path):
    path = tmp_path / "BBox_List_2017.csv"
    path.write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\nA.png,Tumour,1,2,3,4\n")
    with pytest.raises(LabelFileError, match=r":2: unknown label 'Tumour'"):
        read_bbox_file(path)


def test_real_bbox_list(real_bbox):
    real = read_bbox_file(real_bbox)
    assert len(real) == 984 and real["image_index"].nunique() == 880
    assert set(real["label"]) <= set(CLASSES) and (real[["w", "h"]] > 0).all().all()


def test_fetch_labels_copies_and_checks(tmp_path, real_labels):
    out = fetch_labels.fetch_labels(tmp_path / "labels", source=str(real_labels.parent))
    assert sorted(p.name for p in out.iterdir()) == sorted(fetch_labels.FILES)
    (out / "BBox_List_2017.csv.gz").write_bytes(b"truncated")
    with pytest.raises(RuntimeError, match="checksum"):
        fetch_labels.fetch_labels(out)


def test_fetch_labels_file_by_file(tmp_path, real_labels, real_expert, capsys, monkeypatch):
    """A source with only NIH's two files serves them; the expert file comes from the next folder
    that has it ($CXR14_LABELS_DIR here, a folder holding only that file), and all three are
    checked. Nothing outside the test's own folders is read, wherever the clone sits."""
    nih_only = tmp_path / "nih"
    nih_only.mkdir()
    for name in ("Data_Entry_2017_v2020.csv.gz", "BBox_List_2017.csv.gz"):
        (nih_only / name).write_bytes((real_labels.parent / name).read_bytes())
    expert_only = tmp_path / "expert"
    expert_only.mkdir()
    (expert_only / real_expert.name).write_bytes(real_expert.read_bytes())
    monkeypatch.setenv("CXR14_LABELS_DIR", str(expert_only))
    out = fetch_labels.fetch_labels(tmp_path / "labels", source=str(nih_only))
    assert sorted(p.name for p in out.iterdir()) == sorted(fetch_labels.FILES)
    assert (out / real_expert.name).read_bytes() == real_expert.read_bytes()
    # Where each file came from, relative to the project: no machine path on the terminal.
    copied = [line.rsplit(" from ", 1)[1] for line in capsys.readouterr().out.splitlines()
              if line.startswith("copied ")]
    assert len(copied) == 3 and not any(Path(path).is_absolute() for path in copied)
