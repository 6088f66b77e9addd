"""Ablation of Eq. (2): the literal loss, weighted CE and each of its readings, same model.

    python -m reproduce.ablation --data SHARDS --runs-dir RUNS --labels LABELFILE --out OUT [--synthetic]
                                 [--readings R ...] [--preset demo] [--model densenet121]
    (`make ablation`: demo preset, DenseNet121 on the synthetic set.)

For each loss — "wce" (Eq. (1)), "ewl" (Eq. (2) as printed) and every reading of
`reproduce.losses.readings` — RUNS/<model>_<loss> is trained and evaluated on the test split,
unless its predictions_test.csv already exists (`make demo` leaves wce and ewl there). Writes
OUT/ablation.csv (one row per loss: mean AUC with its patient-bootstrap 95% CI, per-class AUC,
per-class DeLong p vs weighted CE, classes significantly better/worse), OUT/label_relations.csv
and .png (`reproduce.study.relations` against the REAL label file) and OUT/ewl_term.png.
`--figure-only` writes just ewl_term.png (docs/figures/ewl_term.png is made that way). The work
is reproduce/study/ablation.py.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import cli, quiet
from reproduce.losses import reading_names


def build_parser():
    from reproduce.backbones import names
    from reproduce.config import PRESETS

    ap = cli.make_parser("reproduce.ablation", __doc__)
    ap.add_argument("--data", type=Path, metavar="SHARDS", help="TFRecord folder (data_prep.build output)")
    ap.add_argument("--runs-dir", type=Path, help="folder of run folders <model>_<loss>")
    ap.add_argument("--labels", type=Path, help="the REAL Data_Entry_2017*.csv(.gz) (label relations)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the tables and figures")
    ap.add_argument("--readings", action="extend", nargs="+", choices=reading_names(), metavar="READING",
                    help=f"readings of Eq. (2) to train beside wce and ewl, several after one "
                         f"--readings or one per --readings; any of {', '.join(reading_names())} "
                         "(default: all)")
    ap.add_argument("--preset", default="demo", choices=sorted(PRESETS), help="training preset")
    ap.add_argument("--model", default="densenet121", choices=names(), help="backbone of every run")
    ap.add_argument("--n-resamples", type=int, default=1000, help="patient-bootstrap resamples")
    ap.add_argument("--bootstrap-seed", type=int, default=0, help="bootstrap seed")
    ap.add_argument("--synthetic", action=argparse.BooleanOptionalAction, default=False,
                    help="--data is the phantom: say so everywhere (also found without it: runs "
                         "trained on the phantom record it in config.json; for runs of older code)")
    ap.add_argument("--figure-only", action="store_true", help="write OUT/ewl_term.png and stop")
    cli.rename(ap, "--runs", "--runs-dir")
    cli.rename(ap, "--seed", "--bootstrap-seed")
    cli.rename(ap, "--real", "--no-synthetic")
    return ap


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.figure_only and not (args.data and args.runs_dir and args.labels):
        parser.error("--data, --runs-dir and --labels are required (unless --figure-only)")
    args.readings = args.readings or list(reading_names())
    return args


def main(argv=None) -> int:
    args = parse_args(argv)

    def body():
        from reproduce.study.ablation import plot_ewl_term, run_ablation

        args.out.mkdir(parents=True, exist_ok=True)
        if args.figure_only:
            plot_ewl_term(args.out / "ewl_term.png")
            print(f"wrote {args.out / 'ewl_term.png'}")
            return
        quiet.start_tensorflow()  # the runs it trains and evaluates
        table, relation_table = run_ablation(args)
        shown = table[["loss", "mean_auc", "mean_ci_low", "mean_ci_high", "n_better", "n_worse",
                       "n_auc_below_half"]]
        agreement = relation_table[["loss", "agreement_with_real_labels"]]
        print(shown.merge(agreement, on="loss").to_string(index=False))
        print(f"wrote {args.out / 'ablation.csv'}, label_relations.csv/.png, ewl_term.png")

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
