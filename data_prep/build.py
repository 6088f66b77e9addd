"""ChestX-ray14 images -> sharded TFRecords, split CSVs and manifest.json.

    python -m data_prep.build --data-dir DIR --out SHARDS [--split-method paper|official] [--size 224]
        [--workers N] [--seed S] [--skip-bad] [--encoding raw|png] [--images-per-shard N]

DIR is the NIH layout: Data_Entry_2017_v2020.csv or Data_Entry_2017.csv (optionally .gz) at its
root, images in DIR/images/ or DIR/images_001/images/ ... DIR/images_012/images/ (as the NIH
archives unpack), and for --split-method official DIR/train_val_list.txt and DIR/test_list.txt.
Writes SHARDS/{train,val,test}-SSSSS-of-NNNNN.tfrecord, OUT/splits/*.csv, OUT/manifest.json
(docs/architecture.md). Interrupted builds resume: re-run the same command.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from common import cli, quiet
from data_prep import shards
from data_prep.images import ImageError
from data_prep.phantom.make import PHANTOM_MARK
from data_prep.labels import LabelFileError, label_matrix, read_label_file
from data_prep.schema import CLASSES, ENCODINGS, SPLITS
from data_prep.split import make_split, split_summary, write_splits

# Our choice when DIR holds both releases: the 2020 one, NIH's current file.
LABEL_FILES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017_v2020.csv.gz",
               "Data_Entry_2017.csv", "Data_Entry_2017.csv.gz")
# Our choice: 512 records of 224² raw (~26 MB) per shard -> ~150 train shards for ChestX-ray14:
# enough tasks to keep 16 workers busy and fine-grained resume, large enough for fast sequential reads.
DEFAULT_IMAGES_PER_SHARD = 512


def find_label_file(data_dir: Path) -> Path:
    for name in LABEL_FILES:
        if (data_dir / name).is_file():
            return data_dir / name
    raise LabelFileError(f"{data_dir}: no label file (expected one of {', '.join(LABEL_FILES)})")


def is_phantom(data_dir: Path) -> bool:
    """Whether DIR holds the synthetic ChestX-ray14: data_prep.phantom marks its output with
    phantom.json {"synthetic": true}; manifest.json carries the mark on to every run and report."""
    mark = data_dir / PHANTOM_MARK
    if not mark.is_file():
        return False
    try:
        return json.loads(mark.read_text()).get("synthetic") is True
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise LabelFileError(f"{mark}: not the JSON object data_prep.phantom writes") from None


def index_images(data_dir: Path) -> dict[str, Path]:
    """File name -> path for DIR/images/* and DIR/images_*/images/*; a name found twice is an error."""
    folders = [data_dir / "images"] + sorted(data_dir.glob("images_*/images"))
    found: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name in found:
                    raise ImageError(f"{folder / entry.name}: same file name as {found[entry.name]}")
                found[entry.name] = Path(entry.path)
    return found


def _resolve(df: pd.DataFrame, found: dict, data_dir: Path, skip_bad: bool):
    """Each labelled image's path; missing ones are an error, or skipped with --skip-bad."""
    present = df["image_index"].isin(found.keys()).to_numpy()
    missing = df["image_index"][~present].tolist()
    if missing and not skip_bad:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ImageError(f"{data_dir / 'images' / missing[0]}: image file not found under "
                         f"{data_dir}/images/ or {data_dir}/images_*/images/{more}; "
                         "--skip-bad skips missing images")
    skipped = [{"image_index": m, "path": str(data_dir / "images" / m), "reason": "image file not found"}
               for m in missing]
    return {name: str(found[name]) for name in df["image_index"][present]}, skipped


def plan_tasks(splits: dict, paths: dict, out: Path, size: int, encoding: str, seed: int,
               images_per_shard: int, skip_bad: bool) -> list[shards.ShardTask]:
    """Shuffle each split's images with the seed, cut into shards of `images_per_shard`."""
    tasks = []
    for k, name in enumerate(SPLITS):
        frame = splits[name]
        frame = frame[frame["image_index"].isin(paths.keys())]
        # Our choice: records are pre-shuffled (seeded, per split), so one tf.data shuffle buffer
        # already sees many patients; image_index order would put a patient's images side by side.
        order = np.random.default_rng([seed, k]).permutation(len(frame))
        labels = label_matrix(frame)[order]
        items = [(idx, paths[idx], int(pid), tuple(int(v) for v in lab)) for idx, pid, lab in
                 zip(frame["image_index"].to_numpy()[order], frame["patient_id"].to_numpy()[order], labels)]
        count = -(-len(items) // images_per_shard)
        for s in range(count):
            chunk = tuple(items[s * images_per_shard:(s + 1) * images_per_shard])
            tasks.append(shards.ShardTask(str(out), name, s, count, size, encoding, skip_bad, chunk))
    return tasks


def _plan_record(tasks, size, encoding, split, seed, images_per_shard) -> dict:
    return {"size": size, "encoding": encoding, "split": {"method": split, "seed": seed},
            "images_per_shard": images_per_shard,
            "shards": {t.name: [item[0] for item in t.items] for t in tasks}}


def build_dataset(data_dir, out, split="paper", size=224, workers=1, seed=0, skip_bad=False,
                  encoding="raw", lists_dir=None, images_per_shard=DEFAULT_IMAGES_PER_SHARD) -> dict:
    """Build OUT from DIR (see the module docstring) and return the manifest."""
    data_dir, out = Path(data_dir), Path(out)
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; expected one of {ENCODINGS}")
    if size < 1 or images_per_shard < 1 or workers < 1:
        raise ValueError("--size, --images-per-shard and --workers must be >= 1")
    df = read_label_file(find_label_file(data_dir))
    # Split all labelled images first, then drop missing ones: a patient's split never depends on
    # which files happen to be present.
    splits = make_split(df, split, seed, lists_dir if lists_dir is not None else data_dir)
    paths, skipped = _resolve(df, index_images(data_dir), data_dir, skip_bad)
    tasks = plan_tasks(splits, paths, out, size, encoding, seed, images_per_shard, skip_bad)
    out.mkdir(parents=True, exist_ok=True)
    shards.check_plan(out, _plan_record(tasks, size, encoding, split, seed, images_per_shard))
    with cli.progress(total=sum(len(t.items) for t in tasks), desc="images", unit="img") as bar:
        results = shards.write_shards(tasks, workers, bar.update)
    by_split = {name: [d for t, d in zip(tasks, results) if t.split == name] for name in SPLITS}
    bad = {s["image_index"] for d in results for s in d["skipped"]}
    skipped += [s for d in results for s in d["skipped"]]
    written = {name: f[f["image_index"].isin(paths.keys()) & ~f["image_index"].isin(bad)]
               for name, f in splits.items()}  # the splits as the shards hold them
    write_splits(written, out / "splits")
    result = shards.manifest(size, encoding, CLASSES, split_summary(written, split, seed), by_split,
                             skipped, synthetic=is_phantom(data_dir))
    shards.write_json_atomic(out / "manifest.json", result)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser("data_prep.build", __doc__)
    parser.add_argument("--data-dir", required=True,
                        help="NIH layout: label CSV + images/ or images_*/images/")
    parser.add_argument("--out", required=True, metavar="SHARDS",
                        help="output folder for shards, splits/, manifest.json")
    parser.add_argument("--split-method", default="paper", choices=["paper", "official"],
                        help="paper: 7:1:2 by patient (§IV.A); official: NIH's lists, val = 1/8 of train_val")
    parser.add_argument("--size", type=int, default=224, help='§IV.B "downscaled the images to 224×224"')
    parser.add_argument("--workers", type=int, default=1, help="processes, one shard per task")
    parser.add_argument("--seed", type=int, default=0, help="seeds the patient split and record order")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip missing/corrupt images (listed in the manifest) instead of stopping")
    parser.add_argument("--encoding", default="raw", choices=list(ENCODINGS),
                        help="raw: fastest tf.data reads (make bench-data); png: smaller files")
    parser.add_argument("--images-per-shard", type=int, default=DEFAULT_IMAGES_PER_SHARD,
                        help="records per shard file (the unit of parallel work and of resume)")
    cli.rename(parser, "--split", "--split-method")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        quiet.start_tensorflow()  # writes the TFRecords
        result = build_dataset(args.data_dir, args.out, args.split_method, args.size, args.workers, args.seed,
                               args.skip_bad, args.encoding, images_per_shard=args.images_per_shard)
        for name, part in result["splits"].items():
            print(f"{name:5s} {part['images']:7d} images {part['patients']:6d} patients "
                  f"{len(part['shards']):4d} shards")
        print(f"skipped {len(result['skipped'])} images; wrote {Path(args.out) / 'manifest.json'}")

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
