"""Patient-wise train/val/test splits (paper §IV.A: "split into three subsets (7:1:2) by patient").

    python -m data_prep.split --labels PATH --out DIR [--split-method paper|official] [--lists DIR] [--seed S]

writes DIR/splits/{train,val,test}.csv and DIR/split_summary.json from the label file alone.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from common import cli
from data_prep.labels import class_counts, read_label_file
from data_prep.schema import CLASSES, SPLITS

PAPER_RATIOS = (7, 1, 2)  # §IV.A "(7:1:2) by patient individually"
# Our choice for the official lists, which give only train_val vs test: 1/8 of the train_val
# patients become validation, i.e. the paper's 7:1 inside train_val.
OFFICIAL_VAL_FRACTION = 1 / 8
SPLIT_COLUMNS = ["image_index", "patient_id", *CLASSES]


class SplitError(ValueError):
    """A split that would leak patients across subsets, or lists that do not match the labels."""


def check_patient_disjoint(splits: dict[str, pd.DataFrame]) -> None:
    """Refuse any split where one patient appears in two subsets (the classic CheXNet leak)."""
    seen: dict[int, str] = {}
    for name, frame in splits.items():
        for pid in frame["patient_id"].unique():
            if pid in seen and seen[pid] != name:
                raise SplitError(f"patient {pid} appears in both {seen[pid]} and {name}")
            seen[pid] = name


def cut_patients(patients: np.ndarray, ratios, seed: int) -> list[np.ndarray]:
    """Shuffle unique patient ids with `seed` and cut them by `ratios` (rounded cumulatively)."""
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(np.sort(patients))
    bounds = np.round(np.cumsum(ratios) / np.sum(ratios) * len(shuffled)).astype(int)
    return np.split(shuffled, bounds[:-1])


def _select(df: pd.DataFrame, patient_groups) -> dict[str, pd.DataFrame]:
    splits = {}
    for name, group in zip(SPLITS, patient_groups):
        part = df[df["patient_id"].isin(set(group.tolist()))]
        splits[name] = part.sort_values("image_index").reset_index(drop=True)
    check_patient_disjoint(splits)
    return splits


def patient_split(df: pd.DataFrame, seed: int = 0, ratios=PAPER_RATIOS) -> dict[str, pd.DataFrame]:
    """The `paper` split: patients shuffled with `seed` and cut 7:1:2 (by patients, not images)."""
    return _select(df, cut_patients(df["patient_id"].unique(), ratios, seed))


def _read_list(path: Path) -> set[str]:
    if not path.is_file():
        raise SplitError(f"{path}: official list not found")
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def official_split(df: pd.DataFrame, lists_dir: str | Path, seed: int = 0,
                   val_fraction: float = OFFICIAL_VAL_FRACTION) -> dict[str, pd.DataFrame]:
    """NIH's train_val_list.txt / test_list.txt; validation = 1/8 of train_val patients (seeded)."""
    lists_dir = Path(lists_dir)
    train_val = _read_list(lists_dir / "train_val_list.txt")
    test = _read_list(lists_dir / "test_list.txt")
    known = set(df["image_index"])
    for name, listed in (("train_val_list.txt", train_val), ("test_list.txt", test)):
        missing = sorted(listed - known)
        if missing:
            raise SplitError(f"{lists_dir / name}: {len(missing)} images not in the label file, e.g. {missing[0]}")
    tv = df[df["image_index"].isin(train_val)]
    val_pat, train_pat = cut_patients(tv["patient_id"].unique(), (val_fraction, 1 - val_fraction), seed)
    test_pat = df[df["image_index"].isin(test)]["patient_id"].unique()
    return _select(df, [train_pat, val_pat, test_pat])


def make_split(df: pd.DataFrame, method: str = "paper", seed: int = 0, lists_dir=None):
    if method == "paper":
        return patient_split(df, seed)
    if method == "official":
        if lists_dir is None:
            raise SplitError("--split-method official needs --lists DIR (train_val_list.txt, test_list.txt)")
        return official_split(df, lists_dir, seed)
    raise SplitError(f"unknown split method {method!r}; expected 'paper' or 'official'")


def split_summary(splits: dict[str, pd.DataFrame], method: str, seed: int) -> dict:
    """Images, patients and positives per class for each subset."""
    return {
        "method": method,
        "seed": seed,
        "splits": {
            name: {"images": int(len(f)), "patients": int(f["patient_id"].nunique()),
                   "positives": class_counts(f)}
            for name, f in splits.items()
        },
    }


def write_splits(splits: dict[str, pd.DataFrame], out_dir: str | Path) -> None:
    """DIR/{train,val,test}.csv: image index, patient id, the 14 labels."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in splits.items():
        frame[SPLIT_COLUMNS].to_csv(out_dir / f"{name}.csv", index=False)


def read_split(path: str | Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype={"image_index": str})
    if list(frame.columns) != SPLIT_COLUMNS:
        raise SplitError(f"{path}: not a split CSV (columns {list(frame.columns)})")
    return frame


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser("data_prep.split", __doc__)
    parser.add_argument("--labels", required=True, help="Data_Entry_2017*.csv[.gz]")
    parser.add_argument("--out", required=True, help="writes OUT/splits/*.csv and OUT/split_summary.json")
    parser.add_argument("--split-method", default="paper", choices=["paper", "official"],
                        help="paper: 7:1:2 by patient (§IV.A); official: NIH's lists (needs --lists)")
    parser.add_argument("--lists", help="folder with train_val_list.txt and test_list.txt (official)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the patient shuffle")
    cli.rename(parser, "--method", "--split-method")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        splits = make_split(read_label_file(args.labels), args.split_method, args.seed, args.lists)
        out = Path(args.out)
        write_splits(splits, out / "splits")
        summary = split_summary(splits, args.split_method, args.seed)
        (out / "split_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        for name, part in summary["splits"].items():
            print(f"{name:5s} {part['images']:7d} images {part['patients']:6d} patients "
                  f"Hernia {part['positives']['Hernia']}")

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
