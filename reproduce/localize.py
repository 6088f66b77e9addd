"""Grad-CAM boxes scored against radiologists' boxes: Wang et al. 2017's weakly supervised
localization (the paper's reference [5]; its Tables 4, 7 and 19), for trained Table I runs.

    python -m reproduce.localize --runs RUN [RUN ...] --data SHARDS --bbox BBOX_CSV --out DIR
                                 [--split test] [--checkpoint best|last] [--threshold 0.706]
                                 [--examples 8] [--synthetic]

For every image of split --split of the TFRecord folder SHARDS that has boxes in BBOX_CSV (NIH's
BBox_List_2017.csv[.gz]: 984 boxes, 8 classes; or the phantom's, one box per drawn finding), the
Grad-CAM heatmap (`reproduce.gradcam`, before its ReLU: the CAM Wang et al. box) of each
boxed class becomes one box
(`reproduce.report.localization.heatmap_box`), scored by IoU and IoBB against each true box of
that class. The images come from the same TFRecords and pipeline as `reproduce.evaluate`'s.
Writes DIR/localization.csv (per run and class: boxes, accuracy at IoU and IoBB > 0.1, 0.25,
0.5, 0.75, 0.9, Wang et al.'s published accuracy beside ours; and the reference run
`whole_image`, one box covering the whole image), DIR/localization_boxes.csv (every
true box with its predicted box, IoU, IoBB), DIR/localization.png (examples: image, heatmap, true
and predicted box, IoU) and DIR/localization_config.json. A Grad-CAM box is not a detector's
box: docs/use-a-model.md.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from common import cli, quiet
from common.checksums import sha256_file
from data_prep.labels import read_bbox_file
from common.provenance import portable_path, provenance
from data_prep.schema import CLASSES, SPLITS
from reproduce import run_data
from reproduce.report import localization as loc
from reproduce.report.predictions import SYNTHETIC_NOTE, read_run_config

DEFAULT_EXAMPLES = 8  # our choice: the figure's rows, the first box of up to 8 classes


def split_images(data_dir: Path, split: str, config, keep: set) -> dict:
    """{image_index: uint8 [S, S, 1]} of the split's records in `keep`, read as evaluate reads
    them (make_eval_dataset: the run's image_size), after checking the shards."""
    from data_prep.shards import verify_shards
    from reproduce.data import make_eval_dataset, read_manifest

    verify_shards(data_dir, read_manifest(data_dir), [split])
    found, total = {}, 0
    for images, _, ids, _ in make_eval_dataset(data_dir, split, config):
        for image, image_id in zip(images.numpy(), ids.numpy()):
            total += 1
            if image_id.decode() in keep:
                found[image_id.decode()] = image
    return found, total


def check_data(runs: list, configs: dict, data_dir: Path, other_data: bool) -> dict:
    """{run: record}: every run checked against SHARDS before anything is read or written."""
    from reproduce.data import read_manifest

    manifest, sha = read_manifest(data_dir), sha256_file(data_dir / "manifest.json")
    return {name: run_data.check_trained_on(config, run, data_dir, manifest, sha, other_data)
            for (name, config), run in zip(configs.items(), runs)}


def boxes_in_split(bbox: pd.DataFrame, found: dict, total: int, args) -> pd.DataFrame:
    """The true boxes of the split's images; none is an error naming both files."""
    boxes = bbox[bbox["image_index"].isin(found.keys())]
    if boxes.empty:
        raise ValueError(f"{args.bbox}: none of its {bbox['image_index'].nunique()} boxed images is "
                         f"in split {args.split!r} of {args.data} ({total} images): localization "
                         "needs boxed images in the evaluated split")
    counts = boxes["label"].value_counts()
    per_class = ", ".join(f"{c} {counts[c]}" for c in CLASSES if c in counts)
    print(f"{boxes['image_index'].nunique()} of the {total} images of split {args.split!r} have "
          f"boxes in {args.bbox}: {len(boxes)} boxes ({per_class})")
    return boxes.sort_values(["image_index", "label"], kind="stable").reset_index(drop=True)


def predicted_boxes(model, images: dict, pairs: list, threshold: float, batch: int, keep: set):
    """{(image_index, class): box} from each pair's Grad-CAM; the heatmaps of the pairs in `keep`."""
    from reproduce.gradcam import GradCAM

    gradcam, boxes, heatmaps = GradCAM(model), {}, {}
    with cli.progress(total=len(pairs), desc="heatmaps", unit="map") as bar:
        for start in range(0, len(pairs), batch):
            chunk = pairs[start:start + batch]
            maps = gradcam(np.stack([images[i] for i, _ in chunk]), [CLASSES.index(c) for _, c in chunk],
                           relu=False)  # Wang et al.'s CAM, min-max normalised by heatmap_box
            for pair, heatmap in zip(chunk, maps):
                boxes[pair] = loc.heatmap_box(heatmap, threshold)
                if pair in keep:
                    heatmaps[pair] = heatmap
            bar.update(len(chunk))
    return boxes, heatmaps


def localize_run(run: Path, args, bbox: pd.DataFrame, examples: list | None, decoded: dict):
    """One run: (scored boxes, its images and heatmaps of the example pairs, the example list).
    `decoded` keeps the split's images per image size, so runs of one size decode them once."""
    from reproduce.config import Config
    from reproduce.engine.inference import load_checkpoint

    config = Config.load(run / "config.json")
    model = load_checkpoint(run / f"{args.checkpoint or config.checkpoint}.keras", config)
    if config.image_size not in decoded:
        decoded[config.image_size] = split_images(Path(args.data), args.split, config,
                                                  set(bbox["image_index"]))
    images, total = decoded[config.image_size]
    boxes = boxes_in_split(bbox, images, total, args) if examples is None else bbox
    if examples is None:  # the first box of each class (CLASSES order), up to --examples
        firsts = boxes.drop_duplicates("label").set_index("label").reindex(CLASSES).dropna()
        examples = [(i, c) for c, i in firsts["image_index"].items()][:args.examples]
    pairs = list(dict.fromkeys(zip(boxes["image_index"], boxes["label"])))
    predicted, heatmaps = predicted_boxes(model, images, pairs, args.threshold,
                                          config.val_batch_size, set(examples))
    shown = {pair: (images[pair[0]][..., 0], heatmaps[pair]) for pair in examples}
    return loc.score_boxes(boxes, predicted), shown, examples, boxes


def grid_examples(examples, scored: dict, shown: dict) -> list[dict]:
    """The figure's rows: per example pair, its first true box and every run's view of it."""
    rows = []
    for image_index, name in examples:
        entry = {"image_index": image_index, "class": name, "image": {}, "heatmap": {}, "pred": {},
                 "iou": {}}
        for run, frame in scored.items():
            first = frame[(frame["image_index"] == image_index) & (frame["label"] == name)].iloc[0]
            entry["truth"] = tuple(first[["x", "y", "w", "h"]])
            entry["pred"][run] = tuple(first[["pred_x", "pred_y", "pred_w", "pred_h"]])
            entry["iou"][run] = float(first["iou"])
            entry["image"][run], entry["heatmap"][run] = shown[run][(image_index, name)]
        rows.append(entry)
    return rows


def run_localize(args) -> None:
    runs = [Path(r) for r in args.runs]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"two runs share a folder name ({', '.join(names)}): results are keyed by it")
    configs = {name: read_run_config(run) for name, run in zip(names, runs)}
    args.synthetic = run_data.synthetic(configs, asserted=args.synthetic)
    args.data_checks = check_data(runs, configs, Path(args.data), args.other_data)
    bbox = read_bbox_file(args.bbox)
    data = "synthetic" if args.synthetic else "ChestX-ray14"
    wang = loc.read_wang_table()
    scored, shown, tables, examples, decoded = {}, {}, [], None, {}
    for name, run in zip(names, runs):
        scored[name], shown[name], examples, bbox = localize_run(run, args, bbox, examples, decoded)
        tables.append(loc.comparison(loc.accuracy_table(scored[name]), wang, name, data))
        print(summary_line(name, tables[-1]))
    reference = loc.score_boxes(bbox, loc.whole_image_boxes(bbox))
    tables.append(loc.comparison(loc.accuracy_table(reference), wang, loc.REFERENCE, data))
    print(summary_line(f"{loc.REFERENCE} (reference: one box = the whole image)", tables[-1]))
    write_outputs(args, pd.concat(tables, ignore_index=True), scored,
                  grid_examples(examples, scored, shown), configs, data)


def summary_line(name: str, table: pd.DataFrame) -> str:
    every = table[table["class"] == loc.ALL].set_index(["measure", "threshold"])["accuracy"]
    parts = [f"{m.upper() if m == 'iou' else 'IoBB'} > {t}: {every[(m, t)]:.3f}"
             for m in loc.MEASURES for t in (0.1, 0.5)]
    return f"{name}: {int(table['boxes'].iloc[-1])} boxes; accuracy {', '.join(parts)}"


def write_outputs(args, table, scored: dict, rows: list, configs: dict, data: str) -> None:
    from reproduce.report.heatmaps import write_localization_grid

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "localization.csv", index=False, float_format="%.4f")
    boxes = pd.concat([f.assign(run=r) for r, f in scored.items()], ignore_index=True)
    boxes.to_csv(out / "localization_boxes.csv", index=False, float_format="%.3f")
    title = (f"Grad-CAM boxes vs radiologists' boxes, split {args.split}, heatmap threshold "
             f"{args.threshold:.3f}" + (f"\n{SYNTHETIC_NOTE}" if args.synthetic else ""))
    write_localization_grid(rows, list(scored), title, out / "localization.png")
    record = {"argv": [portable_path(a) for a in args.argv], "data": data,
              "runs": {r: portable_path(p) for r, p in zip(scored, args.runs)},
              "data_dir": portable_path(args.data), "split": args.split,
              "bbox": portable_path(args.bbox), "bbox_sha256": sha256_file(args.bbox),
              "checkpoint": args.checkpoint, "threshold": args.threshold,
              "wang2017": f"reproduce/report/{loc.WANG_TABLE}", "run_configs": configs,
              "data_checks": args.data_checks,
              "provenance": provenance()}
    (out / "localization_config.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(f"wrote {out / 'localization.csv'}, {out / 'localization_boxes.csv'}, {out / 'localization.png'}")


def build_parser():
    p = cli.make_parser("reproduce.localize", __doc__)
    p.add_argument("--runs", required=True, action="extend", nargs="+", metavar="RUN",
                   help="run folders of reproduce.train, several after one --runs or one per "
                        "--runs (results keyed by folder name)")
    p.add_argument("--data", required=True, metavar="SHARDS", help="TFRecord folder of data_prep.build")
    p.add_argument("--bbox", required=True, type=Path,
                   help="BBox_List_2017.csv[.gz] (NIH's, or the phantom's)")
    p.add_argument("--out", required=True, type=Path, help="folder for localization.csv/.png")
    p.add_argument("--split", default="test", choices=SPLITS, help="the evaluated split")
    p.add_argument("--checkpoint", choices=["best", "last"],
                   help="which checkpoint (default: each run's config.checkpoint, best)")
    p.add_argument("--threshold", type=float, default=loc.HEATMAP_THRESHOLD,
                   help="heatmap level (of its normalised range) a box covers; Wang et al.'s "
                        "upper level 180/255 (our choice of one level)")
    p.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES,
                   help="rows of localization.png (the first box of each class)")
    p.add_argument("--synthetic", action="store_true",
                   help="runs used the phantom: say so everywhere (also found without it, from "
                        "the runs' config.json; for runs of older code)")
    p.add_argument("--other-data", action="store_true",
                   help="SHARDS other than the build the runs were trained on, on purpose "
                        "(refused otherwise); recorded in localization_config.json")
    cli.rename(p, "--run", "--runs")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in localization_config.json
    if not 0 < args.threshold <= 1 or args.examples < 1:
        parser.error("--threshold must be in (0, 1] and --examples >= 1")

    def body():
        quiet.start_tensorflow()
        run_localize(args)

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
