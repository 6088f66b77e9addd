"""Predict the 14 classes of new images with a trained run, and show where the model looks.

    python -m reproduce.predict --run RUN [--checkpoint best|last] --out DIR [--cam] [--top-k 3]
                                PATH [PATH ...]

PATH: image files (PNG or JPEG of any size and mode: gray, RGB, RGBA, 16-bit; DICOM) or folders
(searched recursively for *.png, *.jpg, *.jpeg, *.dcm, *.dicom and extensionless DICOM files).
DIR/predictions.csv: one row per image read, in the order given (folders sorted): path, run,
checkpoint, score_<Class> ×14 (Table I order; sigmoid probabilities for Eq. (1), softmax for
Eq. (2)). With --cam, DIR/cam/<image>_<Class>.png for each of the image's top K classes: the
image as the model saw it, the Grad-CAM heatmap (reproduce.gradcam), the probability in the
title. DIR/predict_config.json: the arguments, the run's config, the provenance.

An image takes training's path into the model, no second copy of it: the file is decoded to 8-bit
gray and resized with INTER_AREA to the size the run's TFRecords stored (`data_prep.images`, as
`data_prep.build` does; DICOM: `data_prep.dicom` first), then serialized as a TFRecord example
and parsed by `reproduce.data.decode_and_resize`, which resizes to the run's image_size when it
differs from the stored size. A file that cannot be read is one `error:` line naming it; the
others are still predicted, and the exit status is 1 at the end (the summary counts them).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from common import cli, quiet
from common.provenance import portable_path, provenance
from data_prep.images import ImageError
from data_prep.schema import CLASSES, NUM_CLASSES
from reproduce.report.predictions import SCORE_COLUMNS

COLUMNS = ["path", "run", "checkpoint", *SCORE_COLUMNS]
DEFAULT_TOP_K = 3  # our choice: overlays for an image's three most probable classes


def cam_names(files: list[Path]) -> list[str]:
    """Overlay file stems: the image's stem, `stem~2`, `stem~3` … when two inputs share a stem."""
    seen: dict[str, int] = {}
    names = []
    for f in files:
        seen[f.stem] = seen.get(f.stem, 0) + 1
        names.append(f.stem if seen[f.stem] == 1 else f"{f.stem}~{seen[f.stem]}")
    return names


def write_cams(predictor, images, scores, names, cam_dir: Path, top_k: int) -> None:
    """For each image, its top-k classes' Grad-CAM overlays."""
    from reproduce.report.heatmaps import write_overlay

    top = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
    pairs = [(i, int(c)) for i in range(len(images)) for c in top[i]]
    maps = predictor.heatmaps(np.stack([images[i] for i, _ in pairs]), [c for _, c in pairs])
    for (i, c), heatmap in zip(pairs, maps):
        title = f"{names[i]}: {CLASSES[c]}, p = {scores[i, c]:.3f} (rank {list(top[i]).index(c) + 1})"
        if not heatmap.any():  # Grad-CAM's ReLU left nothing: no place raises this class's score
            title += "\nGrad-CAM zero everywhere: no positive evidence"
        write_overlay(images[i][..., 0], heatmap, title, cam_dir / f"{names[i]}_{CLASSES[c]}.png")


def predict_files(predictor, files, out: Path, cam: bool, top_k: int, report) -> tuple[pd.DataFrame, int]:
    """Predict every readable file (batches of config.val_batch_size); `report(message)` is called
    for each one that is not. Returns (predictions frame, number of failures)."""
    rows, failed, names = [], 0, cam_names(files)
    if cam:
        (out / "cam").mkdir(parents=True, exist_ok=True)
    batch = predictor.config.val_batch_size
    with cli.progress(total=len(files), desc="images", unit="img") as bar:
        for start in range(0, len(files), batch):
            good, images = [], []
            for k in range(start, min(start + batch, len(files))):
                try:
                    images.append(predictor.inputs(files[k]))
                    good.append(k)
                except (ImageError, OSError) as err:
                    failed += 1
                    report(cli.one_line(err))
                bar.update(1)
            if not good:
                continue
            scores = np.asarray(predictor.forward(np.stack(images)), np.float32)  # as evaluate
            # float32 scores written as float64, as evaluate's predictions_frame writes them
            rows += [[portable_path(files[k]), portable_path(predictor.run_dir), predictor.checkpoint,
                      *s.astype(np.float64)] for k, s in zip(good, scores)]
            if cam:
                write_cams(predictor, images, scores, [names[k] for k in good], out / "cam", top_k)
    return pd.DataFrame(rows, columns=COLUMNS), failed


def build_parser():
    p = cli.make_parser("reproduce.predict", __doc__)
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    p.add_argument("--run", required=True, help="run folder of reproduce.train")
    p.add_argument("--checkpoint", choices=["best", "last"],
                   help="which checkpoint (default: the run's config.checkpoint, best)")
    p.add_argument("--out", required=True, type=Path, help="folder for predictions.csv (and cam/)")
    p.add_argument("--cam", action="store_true", help="also write Grad-CAM overlays (DIR/cam/)")
    p.add_argument("--top-k", type=int, default=DEFAULT_TOP_K,
                   help="overlays for each image's K most probable classes (with --cam)")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in predict_config.json
    if not 1 <= args.top_k <= NUM_CLASSES:
        parser.error(f"--top-k must be between 1 and {NUM_CLASSES}")

    def body():
        quiet.start_tensorflow()
        from reproduce.predictor import Predictor, find_images

        files, problems = find_images(args.paths)
        for message in problems:
            print(f"error: {message}", file=sys.stderr)
        predictor = Predictor(args.run, args.checkpoint)
        args.out.mkdir(parents=True, exist_ok=True)
        frame, failed = predict_files(predictor, files, args.out, args.cam, args.top_k,
                                      lambda m: print(f"error: {m}", file=sys.stderr))
        failed += len(problems)
        if frame.empty:
            raise ValueError(f"no image could be read ({failed} failed); {args.out / 'predictions.csv'} "
                             "not written")
        write_outputs(frame, args, predictor, failed)
        print(f"{args.out / 'predictions.csv'}: {len(frame)} images predicted with {args.run} "
              f"({predictor.checkpoint} checkpoint){', overlays in ' + str(args.out / 'cam') if args.cam else ''}; "
              f"{failed} failed")
        return 1 if failed else 0

    return cli.run(body)


def write_outputs(frame: pd.DataFrame, args, predictor, failed: int) -> None:
    """predictions.csv (written whole, then renamed: never half a file) and predict_config.json."""
    target = args.out / "predictions.csv"
    partial = target.with_suffix(".csv.partial")
    frame.to_csv(partial, index=False)
    partial.replace(target)
    record = {"argv": [portable_path(a) for a in args.argv],
              "run": portable_path(predictor.run_dir), "checkpoint": predictor.checkpoint,
              "stored_size": predictor.stored_size, "stored_size_source": predictor.stored_size_source,
              "image_size": predictor.config.image_size, "images": len(frame), "failed": failed,
              "cam": args.cam, "top_k": args.top_k, "run_config": predictor.resolved,
              "provenance": provenance()}
    (args.out / "predict_config.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.exit(main())
