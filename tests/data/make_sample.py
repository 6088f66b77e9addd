"""Regenerate the committed label-file samples from the real NIH files (../shared/data/).

    python tests/data/make_sample.py ../shared/data

Whole patients only (so splits stay patient-wise), seeded, every class with >= 12 patients.
Lines are copied byte for byte, so the real file's quirks are kept.
"""
import gzip
import sys
from pathlib import Path

import numpy as np

from data_prep.labels import read_label_file
from data_prep.schema import CLASSES

src = Path(sys.argv[1])
here = Path(__file__).parent
df = read_label_file(src / "Data_Entry_2017_v2020.csv.gz")
rng = np.random.default_rng(2019)
chosen = set(rng.choice(df["patient_id"].unique(), 250, replace=False).tolist())
for name in CLASSES:  # top up rare classes (Hernia) with whole patients
    have = df[df["patient_id"].isin(chosen) & (df[name] == 1)]["patient_id"].nunique()
    pool = np.setdiff1d(df[df[name] == 1]["patient_id"].unique(), list(chosen))
    chosen |= set(rng.choice(pool, max(0, 12 - have), replace=False).tolist())
keep = set(df[df["patient_id"].isin(chosen)]["image_index"])
lines = gzip.open(src / "Data_Entry_2017_v2020.csv.gz", "rt").read().splitlines()
out = [lines[0]] + [l for l in lines[1:] if l.split(",", 1)[0] in keep]
(here / "Data_Entry_2017_v2020_sample.csv").write_text("\n".join(out) + "\n")
bbox = gzip.open(src / "BBox_List_2017.csv.gz", "rt").read().splitlines()
(here / "BBox_List_2017_sample.csv").write_text("\n".join(bbox[:1] + bbox[1::25]) + "\n")
print(f"{len(out) - 1} images, {len(chosen)} patients")
