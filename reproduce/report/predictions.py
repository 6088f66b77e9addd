"""The predictions file: the one contract between `evaluate` (writes it) and `report` (reads it).

RUN/predictions_<split>.csv has one row per image, in record order: image_index, patient_id,
label_<Class> ×14, score_<Class> ×14 (classes as `data_prep.schema.CLASSES`, Table I order).
Every reader goes through `read_predictions` (all columns, labels 0/1, finite scores, unique
images) and pairs runs with `align_runs` (same images, same labels, same patients). No TensorFlow.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from data_prep.schema import CLASSES
from reproduce.paper import TABLE1_KEYS

PAPER_KEYS = TABLE1_KEYS  # Table I's four columns (reproduce/paper.py)
SYNTHETIC_NOTE = "synthetic ChestX-ray14 (phantom) — not real-data results"
KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")
# Our choice (docs/beyond-auc.md): a number computed on fewer positives (or negatives) than this is
# not shown by the operating-points, calibration and subgroups reports, only flagged: with 10
# positives an AUC of 0.8 already has a 95% CI of about ±0.17 (Hanley & McNeil 1982, many negatives).
MIN_POSITIVES = 10
LABEL_COLUMNS = [f"label_{c}" for c in CLASSES]
SCORE_COLUMNS = [f"score_{c}" for c in CLASSES]
COLUMNS = ["image_index", "patient_id", *LABEL_COLUMNS, *SCORE_COLUMNS]


class ReportError(ValueError):
    """Bad input to a report; the CLI prints it as one `error: ...` line."""


def predictions_path(run: Path, split: str) -> Path:
    return Path(run) / f"predictions_{split}.csv"


def predictions_frame(labels, scores, image_ids, patient_ids) -> pd.DataFrame:
    """The file's rows from arrays: labels [N, 14] 0/1, scores [N, 14], ids [N], patients [N]."""
    frame = pd.DataFrame({"image_index": list(image_ids), "patient_id": np.asarray(patient_ids)})
    for j, name in enumerate(CLASSES):
        frame[LABEL_COLUMNS[j]] = np.asarray(labels)[:, j].astype(np.int64)
    for j, name in enumerate(CLASSES):
        frame[SCORE_COLUMNS[j]] = np.asarray(scores)[:, j].astype(np.float64)
    return frame


def arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(labels int [N, 14], scores float64 [N, 14]) of a predictions frame."""
    return frame[LABEL_COLUMNS].to_numpy(np.int64), frame[SCORE_COLUMNS].to_numpy(np.float64)


def read_predictions(run: Path, split: str) -> pd.DataFrame:
    """RUN/predictions_<split>.csv, checked: all columns, labels 0/1, finite scores, unique images."""
    path = predictions_path(run, split)
    if not path.is_file():
        raise ReportError(f"{path}: predictions file not found (run python -m reproduce.evaluate "
                          f"--split {split})")
    try:
        df = pd.read_csv(path, dtype={"image_index": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: not a readable CSV ({exc})".splitlines()[0]) from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ReportError(f"{path}: missing column(s) {', '.join(missing[:4])}"
                          + (f" and {len(missing) - 4} more" if len(missing) > 4 else ""))
    if df.empty:
        raise ReportError(f"{path}: no rows")
    scores = df[SCORE_COLUMNS].apply(pd.to_numeric, errors="coerce")
    if not df[LABEL_COLUMNS].isin([0, 1]).all().all():
        raise ReportError(f"{path}: label_* columns must hold only 0 and 1")
    if not np.isfinite(scores.to_numpy(dtype=np.float64)).all():
        raise ReportError(f"{path}: score_* columns must be finite numbers")
    repeated = df["image_index"][df["image_index"].duplicated()]
    if len(repeated):
        raise ReportError(f"{path}: image_index {repeated.iloc[0]} repeated")
    return df


def read_run_config(run: Path) -> dict:
    """RUN/config.json (copied next to the results; `reproduce.run_data` reads from it which data
    the run was trained on, and whether they are synthetic)."""
    path = Path(run) / "config.json"
    if not Path(run).exists():
        raise ReportError(f"{run}: no such run folder; train the Table I runs first: make paper "
                          "DATA_DIR=<NIH images> for real data, or make demo for the synthetic "
                          "Table I in results/demo/")
    if not path.is_file():
        raise ReportError(f"{path}: run config not found (every reported number must be traceable)")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ReportError(f"{path}: expected a JSON object")
    return config


def align_runs(frames: dict[str, pd.DataFrame], runs: dict[str, Path], split: str) -> dict[str, pd.DataFrame]:
    """All runs sorted by image_index; they must cover the same images with the same labels
    (DeLong pairs images; Table I's columns compare models on one test set)."""
    keys = list(frames)
    ref_key = keys[0]
    ref = frames[ref_key].sort_values("image_index").reset_index(drop=True)
    out = {ref_key: ref}
    for key in keys[1:]:
        df = frames[key].sort_values("image_index").reset_index(drop=True)
        a, b = set(ref["image_index"]), set(df["image_index"])
        if a != b:
            raise ReportError(f"runs {ref_key} ({runs[ref_key]}) and {key} ({runs[key]}) were evaluated on "
                              f"different image sets for split {split!r}: {len(a)} vs {len(b)} images, "
                              f"{len(a & b)} in common")
        same_labels = np.array_equal(ref[LABEL_COLUMNS].to_numpy(float), df[LABEL_COLUMNS].to_numpy(float))
        if not same_labels or not np.array_equal(ref["patient_id"].to_numpy(), df["patient_id"].to_numpy()):
            raise ReportError(f"runs {ref_key} ({runs[ref_key]}) and {key} ({runs[key]}): same images "
                              "but different labels/patient ids")
        out[key] = df
    return out
