"""A synthetic ChestX-ray14 ("phantom") in the NIH layout, labelled with REAL label rows.

    python -m data_prep.phantom --labels Data_Entry_2017_v2020.csv.gz --out DIR --images N --seed S
                                [--strength X] [--workers W] [--expert-labels google2019_nih-chest-xray-labels.csv.gz]

No NIH image can be downloaded here, so `make demo` runs the whole pipeline on drawn images. DIR gets
images/<Image Index> (1024² PNG, §IV.A), Data_Entry_2017_v2020.csv (the real lines of the chosen
images, OriginalImage size set to 1024,1024), train_val_list.txt / test_list.txt, BBox_List_2017.csv
(one box per drawn finding, NIH format) and phantom.json.

Which patients: `choose.py`; with `--expert-labels`, it also brings patients of images that
radiologists labelled (Majkowska et al. 2019) into the paper test split, for `reproduce.report
expert` (phantom.json counts them per split). Their images are drawn from their NIH labels, as all. Drawing (`draw.py`, our choice): a chest (body, lungs, ribs, lung
markings, mediastinum, heart, diaphragm) with per-image brightness, contrast, pose and size, drawn at 256² and upscaled, plus 1024² noise.
Each positive finding adds a signature scaled by `strength` × U(0.5, 1.5) (0 = no signal: the
image is then byte-identical to the same image without findings). Signatures are >= 1/16 of the
image so they survive the demo's 64² INTER_AREA downscale.
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from common import cli
from data_prep.labels import (EXPERT_FINDINGS, class_counts, read_bbox_file, read_expert_labels,
                              read_label_file)
from data_prep.phantom.choose import PhantomError, choose_patients
from data_prep.phantom.draw import DEFAULT_STRENGTH, SIZE, render
from data_prep.schema import CLASSES
from data_prep.split import official_split, patient_split

# The mark of the synthetic set: phantom.json {"synthetic": true, ...}; data_prep.build carries it
# into manifest.json, train into each run's config.json, and every report labels from it.
PHANTOM_MARK = "phantom.json"
RGBA_FRACTION = 0.02  # our choice: NIH ships a few RGBA files; we also add 16-bit ones (same share)
U16_FRACTION = 0.02
PNG_OPTS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]  # our choice: fastest measured (37 ms, 0.57 MB)


def _write_one(job):
    """Render one image and write it as 8-bit gray, RGBA or 16-bit PNG; returns its boxes."""
    path, image_index, labels, seed, strength, kind = job
    img, boxes = render(image_index, labels, seed, strength)
    if kind == "rgba":  # NIH's few RGBA files are opaque with R = G = B
        img = cv2.merge([img, img, img, np.full_like(img, 255)])
    elif kind == "u16":  # v * 257 maps 0..255 onto 0..65535 exactly (images.py reads it back)
        img = img.astype(np.uint16) * 257
    if not cv2.imwrite(str(path), img, PNG_OPTS):
        raise OSError(f"{path}: cannot write image")
    return [(image_index, *b) for b in boxes]


def _raw_lines(labels_path: Path, keep: set) -> list[str]:
    """The real label-file lines of the kept images, OriginalImage size set to 1024,1024."""
    opener = gzip.open if labels_path.suffix == ".gz" else open
    with opener(labels_path, "rt") as f:
        lines = f.read().splitlines()
    out = [lines[0]]
    for line in lines[1:]:
        fields = line.split(",")
        if fields[0] in keep:
            fields[7:9] = [str(SIZE), str(SIZE)]
            out.append(",".join(fields))
    return out


def _formats(names, seed):
    rng = np.random.default_rng([seed, 3])
    order = rng.permutation(len(names))
    n_rgba, n_u16 = (max(1, round(f * len(names))) for f in (RGBA_FRACTION, U16_FRACTION))
    kinds = np.array(["gray"] * len(names), object)
    kinds[order[:n_rgba]], kinds[order[n_rgba:n_rgba + n_u16]] = "rgba", "u16"
    return kinds


def _render_all(jobs, workers):
    bar = dict(total=len(jobs), desc="phantom", unit="img")
    if workers <= 1:
        return [b for job in cli.progress(jobs, **bar) for b in _write_one(job)]
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:  # spawn: safe beside TF threads
        return [b for boxes in cli.progress(pool.imap(_write_one, jobs, chunksize=8), **bar)
                for b in boxes]


def make_phantom(labels_path, out_dir, n_images: int, seed: int, strength: float = DEFAULT_STRENGTH,
                 workers: int = 1, expert_labels=None) -> Path:
    """Write the phantom ChestX-ray14 into out_dir (see the module docstring); returns out_dir."""
    labels_path, out = Path(labels_path), Path(out_dir)
    if strength < 0:
        raise PhantomError(f"strength must be >= 0, got {strength}")
    df = read_label_file(labels_path)
    expert = read_expert_labels(expert_labels) if expert_labels is not None else None
    patients, test_patients = choose_patients(df, n_images, seed, expert=expert)
    sub = df[df["patient_id"].isin(set(patients.tolist()))].sort_values("image_index").reset_index(drop=True)
    (out / "images").mkdir(parents=True, exist_ok=True)
    names = sub["image_index"].tolist()
    kinds = _formats(names, seed)
    jobs = [(out / "images" / n, n, row, seed, strength, k)
            for n, row, k in zip(names, sub[list(CLASSES)].to_numpy(), kinds)]
    boxes = _render_all(jobs, workers)
    (out / "Data_Entry_2017_v2020.csv").write_text("\n".join(_raw_lines(labels_path, set(names))) + "\n")
    is_test = sub["patient_id"].isin(set(test_patients.tolist()))
    (out / "test_list.txt").write_text("".join(f"{n}\n" for n in sub["image_index"][is_test]))
    (out / "train_val_list.txt").write_text("".join(f"{n}\n" for n in sub["image_index"][~is_test]))
    rows = [f"{n},{'Infiltrate' if c == 'Infiltration' else c},{x:.3f},{y:.3f},{w:.3f},{h:.3f}"
            for n, c, x, y, w, h in boxes]
    (out / "BBox_List_2017.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n" + "".join(r + "\n" for r in rows))
    _check_and_describe(out, seed, strength, kinds, expert, expert_labels)
    return out


def _expert_block(expert, path, coverage) -> dict:
    """phantom.json's count of expert-labelled images (and radiologist positives) per split."""
    def count(frame):
        rows = expert[expert["image_index"].isin(set(frame["image_index"]))]
        return {"images": len(rows), **{f: int(rows[f].sum()) for f in EXPERT_FINDINGS}}

    return {"labels": Path(path).name,
            "splits": {m: {n: count(f) for n, f in s.items()} for m, s in coverage.items()}}


def _check_and_describe(out: Path, seed, strength, kinds, expert=None, expert_path=None):
    """Re-read what was written with the package's own readers and splitters; write phantom.json."""
    sub = read_label_file(out / "Data_Entry_2017_v2020.csv")
    read_bbox_file(out / "BBox_List_2017.csv")
    coverage = {"paper": patient_split(sub, seed), "official": official_split(sub, out, seed)}
    for method, splits in coverage.items():
        for name, frame in splits.items():
            empty = [c for c, v in class_counts(frame).items() if v == 0]
            if empty:
                raise PhantomError(f"{out}: {method} {name} has no positive for {empty}")
    meta = {"synthetic": True, "seed": seed, "strength": strength, "images": len(sub),
            "patients": int(sub["patient_id"].nunique()), "positives": class_counts(sub),
            "formats": {k: int((kinds == k).sum()) for k in ("gray", "rgba", "u16")},
            "split_positives": {m: {n: class_counts(f) for n, f in s.items()} for m, s in coverage.items()},
            "description": "Synthetic chest radiographs drawn by data_prep.phantom, labelled with real "
                           "ChestX-ray14 rows; not medical images."}
    if expert is not None:
        meta["expert"] = _expert_block(expert, expert_path, coverage)
    (out / PHANTOM_MARK).write_text(json.dumps(meta, indent=2) + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser("data_prep.phantom", __doc__)
    parser.add_argument("--labels", required=True, help="the real Data_Entry_2017_v2020.csv[.gz]")
    parser.add_argument("--out", required=True, help="output folder (NIH layout)")
    parser.add_argument("--images", type=int, default=1200, help="about this many images")
    parser.add_argument("--seed", type=int, default=0, help="use the SEED that data_prep.build gets")
    parser.add_argument("--strength", type=float, default=DEFAULT_STRENGTH,
                        help="signal of each drawn finding; 0 = none")
    parser.add_argument("--workers", type=int, default=1, help="processes drawing images")
    parser.add_argument("--expert-labels", metavar="FILE",
                        help="google2019_nih-chest-xray-labels.csv[.gz]: bring patients of expert-labelled "
                             "images into the paper test split (for reproduce.report expert)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        out = make_phantom(args.labels, args.out, args.images, args.seed, args.strength, args.workers,
                           args.expert_labels)
        meta = json.loads((out / PHANTOM_MARK).read_text())
        print(f"{meta['images']} images of {meta['patients']} patients -> {out} (strength {args.strength})")
        if "expert" in meta:
            per = meta["expert"]["splits"]["paper"]
            print("expert-labelled images, paper split: " + ", ".join(f"{n} {v['images']}" for n, v in per.items()))

    return cli.run(body)
