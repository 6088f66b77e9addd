"""Predict one split with a trained run's checkpoint; write its predictions and AUCs (§IV.C).

    python -m reproduce.evaluate --run RUN --data SHARDS [--split [val] test] [--checkpoint best|last]

RUN/predictions_<split>.csv: one row per image in record order — image_index, patient_id,
label_<Class> ×14, score_<Class> ×14 (classes as data_prep.schema.CLASSES, Table I order).
RUN/metrics_<split>.json: per-class AUC, Table I's mean, 95% CIs (bootstrap over patients),
the checkpoint, the split, the number of images, and the run's resolved config.
"""
from __future__ import annotations

import json
import logging
import sys

from common import cli, quiet
from data_prep.schema import SPLITS


class _NewModelRetracing(logging.Filter):
    """TensorFlow counts traces per Python function, not per tf.function: evaluating several runs
    in one process traces `forward` once per new model, which is expected, not the retracing
    problem its warning is about."""

    def filter(self, record) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


NEW_MODEL_RETRACING = _NewModelRetracing()  # one instance: addFilter adds it at most once


def build_parser():
    parser = cli.make_parser("reproduce.evaluate", __doc__)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", help="run folder of reproduce.train")
    which.add_argument("--runs", nargs="+", metavar="RUN",
                       help="several run folders, evaluated one after another in one process (one "
                            "TensorFlow start-up; each writes what --run RUN alone writes)")
    parser.add_argument("--data", required=True, metavar="SHARDS", help="TFRecord folder of data_prep.build")
    parser.add_argument("--split", nargs="+", default=["test"], choices=SPLITS, metavar="SPLIT",
                        help="which splits to predict, each into its own predictions_<split>.csv "
                             "(Table I: test; val for the reports beyond the AUC)")
    parser.add_argument("--checkpoint", choices=["best", "last"],
                        help="which checkpoint (default: the run's config.checkpoint, best)")
    parser.add_argument("--verify-shards", action="store_true",
                        help="also check every shard's SHA-256 against manifest.json (size and "
                             "record count are always checked)")
    parser.add_argument("--other-data", action="store_true",
                        help="evaluate shards other than the build the run was trained on, on "
                             "purpose (refused otherwise: another split can put training patients "
                             "in the test split); recorded in metrics_<split>.json")
    return parser


def _fmt(value) -> str:
    return "nan" if value is None else f"{value:.4f}"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)  # --help and --version end here, before TensorFlow

    def body():
        tf = quiet.start_tensorflow()
        import keras

        from reproduce.engine.inference import evaluate_run

        runs = args.runs or [args.run]
        if len(runs) > 1:
            tf.get_logger().addFilter(NEW_MODEL_RETRACING)
        for run in runs:
            for split in dict.fromkeys(args.split):
                out = evaluate_run(run, args.data, split, args.checkpoint, args.verify_shards,
                                   args.other_data)
                summary = json.loads((out.parent / f"metrics_{split}.json").read_text())
                ci = summary["ci95"]["mean"]
                print(f"{out}: {summary['n_images']} images, {split} mean AUC "
                      f"{_fmt(summary['mean_auc'])} (95% CI {_fmt(ci['ci_low'])}–"
                      f"{_fmt(ci['ci_high'])}, {summary['checkpoint']} checkpoint)")
                keras.backend.clear_session()  # the next model starts from a clean graph

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
