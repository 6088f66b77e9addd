"""Read the ChestX-ray14 label files (both NIH releases), the bounding-box list, and the
radiologists' labels of 4,376 of the same images (Majkowska et al., Radiology 2019).

`Data_Entry_2017.csv` (original release) has 12 columns: its header ends with a comma, and some
ages are above 100 (recorded in days/months, kept as they are). `Data_Entry_2017_v2020.csv` has 11.
In both, the bracketed header names contain commas ("OriginalImage[Width,Height]"), so columns
are taken by position, never by name. The expert file (`google2019_nih-chest-xray-labels.csv`)
repeats those eleven NIH columns, then adds one YES/NO column per adjudicated finding and `Set Id`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from data_prep.schema import CLASSES, NO_FINDING

# The first seven columns, identical in both releases; the rest (size, spacing) are not used.
_HEADER = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age",
           "Patient Gender", "View Position"]
_COLUMNS = ["image_index", "finding_labels", "follow_up", "patient_id", "age", "gender", "view"]

# BBox_List_2017.csv spells Infiltration as "Infiltrate".
_BBOX_ALIASES = {"Infiltrate": "Infiltration"}


class LabelFileError(ValueError):
    """A label file that is not a ChestX-ray14 label file, or a row with an unknown label."""


def encode_findings(findings: str, where: str) -> np.ndarray:
    """'Cardiomegaly|Effusion' -> 14-dim 0/1 vector in Table I order; 'No Finding' -> zeros."""
    vector = np.zeros(len(CLASSES), dtype=np.uint8)
    names = [n.strip() for n in str(findings).split("|")]
    if names == [NO_FINDING]:
        return vector
    for name in names:
        if name not in CLASSES:
            raise LabelFileError(f"{where}: unknown label {name!r} in {findings!r}")
        vector[CLASSES.index(name)] = 1
    return vector


def read_label_file(path: str | Path) -> pd.DataFrame:
    """One row per image: image_index, patient_id, follow_up, age, gender, view,
    finding_labels, and one uint8 column per class (CLASSES order)."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise LabelFileError(f"{path}: cannot read label file ({err})") from err
    if list(raw.columns[:7]) != _HEADER or raw.shape[1] not in (11, 12):
        raise LabelFileError(
            f"{path}: not a ChestX-ray14 Data_Entry_2017 file "
            f"(expected columns starting {_HEADER}, got {list(raw.columns[:7])})"
        )
    df = raw.iloc[:, :7].copy()
    df.columns = _COLUMNS
    for col in ("follow_up", "patient_id", "age"):
        converted = pd.to_numeric(df[col], errors="coerce")
        bad = converted.isna()
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # header is line 1
            raise LabelFileError(f"{path}:{line}: {col} is not a number: {df[col][bad].iloc[0]!r}")
        df[col] = converted.astype(np.int64)
    if df["image_index"].duplicated().any():
        dup = df["image_index"][df["image_index"].duplicated()].iloc[0]
        raise LabelFileError(f"{path}: image {dup} appears twice")
    labels = np.stack([
        encode_findings(f, f"{path}:{i + 2} ({idx})")
        for i, (f, idx) in enumerate(zip(df["finding_labels"], df["image_index"]))
    ]) if len(df) else np.zeros((0, len(CLASSES)), np.uint8)
    for j, name in enumerate(CLASSES):
        df[name] = labels[:, j]
    return df.reset_index(drop=True)


def label_matrix(df: pd.DataFrame) -> np.ndarray:
    """The [N, 14] 0/1 label matrix of a frame from `read_label_file` (or a split CSV)."""
    return df[list(CLASSES)].to_numpy(dtype=np.uint8)


def class_counts(df: pd.DataFrame) -> dict[str, int]:
    """Positives per class, in CLASSES order."""
    return {name: int(df[name].sum()) for name in CLASSES}


def read_bbox_file(path: str | Path) -> pd.DataFrame:
    """BBox_List_2017.csv -> image_index, label (CLASSES spelling), x, y, w, h (1024² pixels)."""
    path = Path(path)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(raw.columns[:2]) != ["Image Index", "Finding Label"] or raw.shape[1] < 6:
        raise LabelFileError(f"{path}: not a BBox_List_2017 file (columns {list(raw.columns)})")
    df = raw.iloc[:, :6].copy()
    df.columns = ["image_index", "label", "x", "y", "w", "h"]
    df["label"] = df["label"].map(lambda s: _BBOX_ALIASES.get(s, s))
    unknown = ~df["label"].isin(CLASSES)
    if unknown.any():
        line = int(np.flatnonzero(unknown.to_numpy())[0]) + 2
        raise LabelFileError(f"{path}:{line}: unknown label {df['label'][unknown].iloc[0]!r}")
    for col in ("x", "y", "w", "h"):
        df[col] = pd.to_numeric(df[col]).astype(np.float64)
    return df


# --- the radiologists' labels (Majkowska et al. 2019) ----------------------------------------------
# The four findings three radiologists adjudicated, spelled as the file's column names.
EXPERT_FINDINGS = ("Pneumothorax", "Nodule or mass", "Airspace opacity", "Fracture")
EXPERT_SETS = ("test", "val")  # the file's `Set Id`: Google's own test/validation sets
_EXPERT_VALUES = {"YES": 1, "NO": 0}


def _refuse_first(bad: pd.Series, values: pd.Series, path: Path, what: str) -> None:
    """One error naming the line (header = line 1) of the first row where `bad` holds."""
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
        raise LabelFileError(f"{path}:{line}: {what}, got {values[bad].iloc[0]!r}")


def read_expert_labels(path: str | Path) -> pd.DataFrame:
    """One row per image: image_index, patient_id, finding_labels (NIH's, as in the file), set_id,
    and one uint8 column per EXPERT_FINDINGS (1 = the radiologists said YES, 0 = NO)."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise LabelFileError(f"{path}: cannot read expert label file ({err})") from err
    # The NIH columns come first (their bracketed names split in two); the added ones by name.
    if list(raw.columns[:7]) != _HEADER or not {*EXPERT_FINDINGS, "Set Id"} <= set(raw.columns):
        raise LabelFileError(f"{path}: not the Google 2019 expert label file (expected columns "
                             f"{_HEADER[0]!r} … and {', '.join(EXPERT_FINDINGS)}, Set Id)")
    df = pd.DataFrame({"image_index": raw["Image Index"], "finding_labels": raw["Finding Labels"]})
    pids = pd.to_numeric(raw["Patient ID"], errors="coerce")
    _refuse_first(pids.isna(), raw["Patient ID"], path, "Patient ID must be a number")
    df["patient_id"] = pids.astype(np.int64)
    df["set_id"] = raw["Set Id"].str.strip()
    _refuse_first(~df["set_id"].isin(EXPERT_SETS), df["set_id"], path, "Set Id must be test or val")
    for name in EXPERT_FINDINGS:
        values = raw[name].str.strip()
        _refuse_first(~values.isin(list(_EXPERT_VALUES)), values, path, f"{name} must be YES or NO")
        df[name] = values.map(_EXPERT_VALUES).to_numpy(np.uint8)
    _refuse_first(df["image_index"].duplicated(), df["image_index"], path, "image listed twice")
    return df
