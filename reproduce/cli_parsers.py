"""The command lines of reproduce.train and reproduce.evaluate, importable without Keras or
TensorFlow: `--help` and `--version` of those two answer in about a second instead of after the
10–15 s TensorFlow import (train.py and evaluate.py call `answer_without_tensorflow` before
their imports). Each program's description is its module's docstring, read from the source."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

from common import cli
from data_prep.schema import SPLITS
from reproduce import config as config_module
from reproduce.config import PRESETS

HERE = Path(__file__).resolve().parent


def _doc(module: str) -> str | None:
    return ast.get_docstring(ast.parse((HERE / f"{module}.py").read_text()), clean=False)


def train_parser():
    p = cli.make_parser("reproduce.train", _doc("train"))
    p.add_argument("--data", required=True, metavar="SHARDS", help="TFRecord folder of data_prep.build (manifest.json)")
    p.add_argument("--out", required=True, help="run folder (created; an unfinished run resumes)")
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS),
                   help="starting values of every field: paper (the paper's settings), demo, smoke")
    p.add_argument("--verify-shards", action="store_true",
                   help="also check every shard's SHA-256 against manifest.json (size and record "
                        "count are always checked)")
    config_module.add_arguments(p)
    return p


def evaluate_parser():
    parser = cli.make_parser("reproduce.evaluate", _doc("evaluate"))
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


def answer_without_tensorflow(build_parser, argv=None) -> None:
    """--help / --version: answered (and the process exits) before anything heavy is imported."""
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help", "--version") for a in argv):
        build_parser().parse_args(argv)
