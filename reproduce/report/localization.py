"""Weakly supervised localization scored as Wang et al. 2017 (ChestX-ray8, the paper's [5]) score it.

Pure NumPy/pandas (no TensorFlow): `reproduce.localize` makes the heatmaps, this module turns a
heatmap into a box and scores boxes against the radiologists' (`BBox_List_2017.csv`).

Wang et al. 2017 §3.2 "Bounding Box Generation": heatmap intensities "normalized to [0, 255] and
then thresholded by {60, 180} individually. Finally, B-Boxes are generated to cover the isolated
regions"; §4 a localization is correct when "IoU > T(IoU)" or "IoBB > T(IoBB)" (IoBB = the
intersection over the *detected* box's area), Table 4 / Table 19 at T(IoBB) ∈ {0.1, 0.25, 0.5,
0.75, 0.9}, supplementary Table 7 at T(IoU) ∈ {0.1, …, 0.7}. Our recipe (docs/paper_map.md lists
where it differs): min-max normalise to [0, 1], ONE threshold (180/255, Wang's upper level), ONE
box per heatmap: the bounding box of the largest 8-connected region; accuracy = the share of the
true boxes whose image's box for that class passes the threshold, at the same five thresholds for
IoU and IoBB. Their published numbers stand beside ours (`WANG_TABLE`, transcribed with source).
"""
from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd
from scipy import ndimage

from data_prep.schema import CLASSES

THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9)  # Wang et al. 2017 Table 4's T(IoBB); ours for IoU too
MEASURES = ("iou", "iobb")
# §IV.A (and NIH's BBox_List_2017.csv): boxes are in the 1024×1024 pixels of the released PNGs.
BBOX_FRAME = 1024
# Wang et al. 2017 §3.2 threshold the [0, 255] heatmap at 60 and 180; our one box uses the upper
# level (the region the model weighs most), our choice.
HEATMAP_THRESHOLD = 180 / 255
WANG_TABLE = "wang2017_localization.csv"  # package data, next to this module
ALL = "All"  # the row of every box pooled (not in Wang et al.)
# Our reference "run": one box covering the whole image for every true box, what a heatmap that
# points nowhere in particular scores (IoU = IoBB = the true box's share of the image).
REFERENCE = "whole_image"
TABLE_COLUMNS = ["data", "run", "class", "boxes", "images", "measure", "threshold", "correct",
                 "accuracy", "wang2017", "wang2017_source"]


def normalize(heatmap: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] (Wang et al.: to [0, 255]). A constant map is all peak: ones (our choice:
    a heatmap that prefers no place points at the whole image, not at none)."""
    h = np.asarray(heatmap, dtype=np.float64)
    if h.ndim != 2 or not np.all(np.isfinite(h)):
        raise ValueError(f"heatmap must be a finite 2-D array, got shape {h.shape}")
    low, high = h.min(), h.max()
    return np.ones_like(h) if high == low else (h - low) / (high - low)


def heatmap_box(heatmap: np.ndarray, threshold: float = HEATMAP_THRESHOLD,
                frame: int = BBOX_FRAME) -> tuple[float, float, float, float]:
    """(x, y, w, h) in `frame` pixels: the bounding box of the largest 8-connected region where the
    normalised heatmap is >= threshold (ties: the first region in raster order). The heatmap covers
    the whole image, so pixel column j spans [j, j+1) · frame / width."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    norm = normalize(heatmap)
    regions, count = ndimage.label(norm >= threshold, structure=np.ones((3, 3), int))
    sizes = np.bincount(regions.ravel())[1:]  # count >= 1: the maximum (1.0) passes any threshold
    rows, cols = ndimage.find_objects(regions)[int(np.argmax(sizes))]
    sy, sx = frame / norm.shape[0], frame / norm.shape[1]
    return (cols.start * sx, rows.start * sy, (cols.stop - cols.start) * sx,
            (rows.stop - rows.start) * sy)


def whole_image_boxes(truth: pd.DataFrame, frame: int = BBOX_FRAME) -> dict:
    """{(image_index, class): (0, 0, frame, frame)} for every true box: the REFERENCE run."""
    return {key: (0.0, 0.0, float(frame), float(frame)) for key in zip(truth["image_index"], truth["label"])}


def _intersection(a, b) -> float:
    dx = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    dy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return float(dx * dy) if dx > 0 and dy > 0 else 0.0


def iou(pred, truth) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    inter = _intersection(pred, truth)
    union = pred[2] * pred[3] + truth[2] * truth[3] - inter
    return inter / union if union > 0 else 0.0


def iobb(pred, truth) -> float:
    """Wang et al. 2017 §4: "Intersection over the detected B-Box area ratio" (pred = detected)."""
    area = pred[2] * pred[3]
    return _intersection(pred, truth) / area if area > 0 else 0.0


def score_boxes(truth: pd.DataFrame, predicted: dict) -> pd.DataFrame:
    """`truth`: read_bbox_file rows (image_index, label, x, y, w, h); `predicted`: {(image_index,
    class): (x, y, w, h)}. Returns `truth` with pred_x, pred_y, pred_w, pred_h, iou, iobb."""
    missing = [k for k in zip(truth["image_index"], truth["label"]) if k not in predicted]
    if missing:
        raise ValueError(f"no predicted box for {missing[0]} (and {len(missing) - 1} more)")
    out = truth.reset_index(drop=True).copy()
    boxes = [predicted[k] for k in zip(out["image_index"], out["label"])]
    out[["pred_x", "pred_y", "pred_w", "pred_h"]] = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    true = out[["x", "y", "w", "h"]].to_numpy()
    out["iou"] = [iou(p, t) for p, t in zip(boxes, true)]
    out["iobb"] = [iobb(p, t) for p, t in zip(boxes, true)]
    return out


def accuracy_table(scored: pd.DataFrame) -> pd.DataFrame:
    """One row per (class, measure, threshold) for the classes that have boxes (CLASSES order),
    then `All`: boxes, images, correct (value > threshold, strictly, as Wang et al.), accuracy."""
    rows = []
    groups = [(c, scored[scored["label"] == c]) for c in CLASSES if (scored["label"] == c).any()]
    for name, part in groups + [(ALL, scored)]:
        for measure in MEASURES:
            for t in THRESHOLDS:
                correct = int((part[measure].to_numpy() > t).sum())
                rows.append({"class": name, "boxes": len(part), "images": part["image_index"].nunique(),
                             "measure": measure, "threshold": t, "correct": correct,
                             "accuracy": correct / len(part)})
    return pd.DataFrame(rows)


def read_wang_table(path=None) -> pd.DataFrame:
    """Wang et al. 2017's published localization numbers as transcribed (package data): one row per
    (source, dataset, measure, threshold, statistic), one column per class (8 of the 14)."""
    if path is None:
        with resources.files("reproduce.report").joinpath(WANG_TABLE).open() as fh:
            return pd.read_csv(fh)
    return pd.read_csv(path)


def wang_accuracy(wang: pd.DataFrame) -> dict:
    """{(class, measure, threshold): (accuracy, source)}: ChestX-ray14 where published (Table 19,
    IoBB), else ChestX-ray8 (Table 7, IoU; Table 4, IoBB, superseded by Table 19)."""
    found = {}
    acc = wang[wang["statistic"] == "acc"]
    for dataset in ("ChestX-ray8", "ChestX-ray14"):  # later wins: ChestX-ray14 over ChestX-ray8
        for _, row in acc[acc["dataset"] == dataset].iterrows():
            for c in CLASSES:
                if c in row.index and pd.notna(row[c]):
                    key = (c, row["measure"], round(float(row["threshold"]), 4))
                    found[key] = (float(row[c]), f"{dataset}, {row['source']}")
    return found


def comparison(table: pd.DataFrame, wang: pd.DataFrame, run: str, data: str) -> pd.DataFrame:
    """`accuracy_table` rows with the run, the data source and Wang et al.'s accuracy beside ours
    (empty where they published none: 6 of the 14 classes, IoU at 0.25/0.75/0.9, `All`)."""
    published = wang_accuracy(wang)
    out = table.copy()
    keys = [(c, m, round(float(t), 4)) for c, m, t in zip(out["class"], out["measure"], out["threshold"])]
    out["wang2017"] = [published.get(k, (np.nan, ""))[0] for k in keys]
    out["wang2017_source"] = [published.get(k, (np.nan, ""))[1] for k in keys]
    out["run"], out["data"] = run, data
    return out[TABLE_COLUMNS]
