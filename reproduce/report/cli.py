"""Table I and Figure 1 of Mo & Cai (2019) from prediction CSVs, and the same runs against radiologists.

    python -m reproduce.report {table1,figure1,all} --runs KEY=RUN [KEY=RUN ...] --out DIR
                               [--split test] [--synthetic] [--n-resamples 1000] [--bootstrap-seed 0]
    python -m reproduce.report expert --runs KEY=RUN [KEY=RUN ...] --expert-labels FILE --out DIR
                               [--split test] [--synthetic] [--n-resamples 1000] [--bootstrap-seed 0]

Reads only RUN/predictions_<split>.csv and RUN/config.json of each run (never TensorFlow).
KEY is one of Table I's own columns (vgg16_wce, resnet50_wce, densenet121_wce, densenet121_ewl)
or any other lower-case name (an ablation run: a column in table1.csv, no paper value, no panel).
The same KEY given several times means several training seeds of that run (each run's seed is its
config.json `seed`): table1.csv then holds the mean over seeds (`reproduce.report.seeds`).
Writes DIR/table1.csv (layout of the paper's Table I), DIR/table1_comparison.csv,
DIR/table1_seeds.csv, DIR/table1_ewl_vs_wce.csv, DIR/table1.md, DIR/figure1.png/.pdf,
DIR/configs/RUN.json and DIR/report_config.json; with --synthetic, DIR/DATA_SOURCE.md says so, so
no file there can be mistaken for a real-data result.
`expert` scores the runs on the split's images that radiologists labelled (Majkowska et al. 2019,
google2019_nih-chest-xray-labels.csv.gz) against both label sets: DIR/expert_auc.csv,
DIR/expert_agreement.csv, DIR/expert.md (reproduce/report/expert.py); a key with several seeds
is scored run by run (KEY_s<seed>).
`operating-points`, `calibration` and `subgroups` look beyond the AUC (reproduce/report/beyond.py,
docs/beyond-auc.md): thresholds chosen on RUN/predictions_val.csv and applied to the split;
Brier, ECE and reliability (--recalibrate: fitted on validation); AUC by sex, age, view and visit
from the label file (--labels). A key with several seeds is reported run by run (KEY_s<seed>).
"""
from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

from common import cli
from common.checksums import sha256_file
from common.provenance import portable_path, provenance
from data_prep.schema import SPLITS
from reproduce import metrics, run_data
from reproduce.report import beyond, expert, seeds, table1
from reproduce.report.calibration import METHODS
from reproduce.report.predictions import (KEY_RE, MIN_POSITIVES, PAPER_KEYS, ReportError, predictions_path,
                                          read_predictions, read_run_config)


def parse_runs(items: list[str]) -> dict[str, list[Path]]:
    """`KEY=RUN` strings → {key: [run dirs]}, Table I's keys in the paper's order; a key given
    several times (one run per training seed) keeps its runs in the order given."""
    runs: dict[str, list[Path]] = {}
    for item in items:
        key, sep, path = item.partition("=")
        if not sep or not path or not KEY_RE.match(key):
            raise ReportError(f"--runs {item!r}: expected KEY=RUN with KEY like {PAPER_KEYS[0]}")
        if Path(path) in runs.get(key, []):
            raise ReportError(f"--runs: {key}={path} given twice")
        runs.setdefault(key, []).append(Path(path))
    # Table I's column order for the paper's runs, then any ablation runs in the order given.
    order = [k for k in PAPER_KEYS if k in runs] + [k for k in runs if k not in PAPER_KEYS]
    return {k: runs[k] for k in order}


def build_parser():
    p = cli.make_parser("reproduce.report", __doc__)
    p.add_argument("what", choices=("table1", "figure1", "all", "expert", *beyond.SUBCOMMANDS),
                   help="which output to write")
    p.add_argument("--runs", action="extend", nargs="+", required=True, metavar="KEY=RUN",
                   help=f"run folders, several after one --runs or one per --runs; KEY in "
                        f"{', '.join(PAPER_KEYS)} or an ablation name; a KEY given several times "
                        "= one run per training seed")
    p.add_argument("--out", required=True, type=Path, help="folder for the tables and figures")
    p.add_argument("--split", default="test", choices=SPLITS, help="which predictions_<split>.csv to read")
    p.add_argument("--synthetic", action="store_true",
                   help="runs used the phantom: say so everywhere (also found without it: runs "
                        "trained on the phantom record it in config.json; for runs of older code)")
    p.add_argument("--n-resamples", type=int, default=1000, help="patient-bootstrap resamples (our choice)")
    p.add_argument("--bootstrap-seed", type=int, default=0, help="bootstrap seed (our choice)")
    p.add_argument("--paper-table", type=Path,
                   help="another transcription of the paper's Table I (default: the package's)")
    p.add_argument("--expert-labels", type=Path, metavar="FILE",
                   help="expert: google2019_nih-chest-xray-labels.csv[.gz] (make labels fetches it)")
    p.add_argument("--labels", type=Path, metavar="FILE",
                   help="subgroups: the label file with age, sex, view and follow-up of the images "
                        "(Data_Entry_2017_v2020.csv[.gz]; the demo: its phantom's own)")
    p.add_argument("--min-positives", type=int, default=MIN_POSITIVES,
                   help="operating-points, calibration, subgroups: no number from fewer positives "
                        "(or negatives) than this, only a flag (our choice)")
    p.add_argument("--recalibrate", default="none", choices=METHODS,
                   help="calibration: per-class recalibration fitted on RUN/predictions_val.csv "
                        "(Platt or isotonic), scored on the split")
    cli.rename(p, "--seed", "--bootstrap-seed")
    return p


def _runs_by_seed(args) -> dict:
    """--runs checked, as {key: {seed: run}}: each run's config.json read, all trained on one
    build of the data (`run_data.check_same_data`); args.synthetic set from the data (a run
    trained on the phantom labels every output synthetic, whatever the folder is called)."""
    groups = parse_runs(args.runs)
    if args.n_resamples < 1:
        raise ReportError("--n-resamples must be >= 1")
    configs = {run: read_run_config(run) for paths in groups.values() for run in paths}
    run_data.check_same_data(configs)
    args.synthetic = run_data.synthetic(configs, asserted=args.synthetic)
    args.departures = {portable_path(run): run_data.departures(c, run) for run, c in configs.items()}
    _print_departures(args.departures)
    return seeds.group_by_seed(groups, configs)


def _print_departures(departures: dict) -> None:
    """One note line per set of departures from §IV.B (runs of a demo share one line)."""
    by_text: dict[str, list[str]] = {}
    for run, found in departures.items():
        if found:
            by_text.setdefault("; ".join(found), []).append(run)
    for text, runs in by_text.items():
        print(f"note: {', '.join(runs)} depart{'s' if len(runs) == 1 else ''} from the paper's "
              f"settings (§IV.B): {text}")


def _copy_configs(out: Path, runs: dict) -> None:
    """Each run's config.json beside the report, as configs/<label>.json."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "configs").mkdir(exist_ok=True)
    for label, run in runs.items():
        shutil.copyfile(run / "config.json", out / "configs" / f"{label}.json")


def run_report(args) -> None:
    runs = _runs_by_seed(args)  # {key: {seed: run}}
    paper = table1.read_paper_table(args.paper_table)
    frames = {k: {s: read_predictions(run, args.split) for s, run in by_seed.items()}
              for k, by_seed in runs.items()}
    aligned = seeds.align_seed_runs(frames, runs, args.split)
    labelled = {seeds.run_label(k, s, len(by_seed)): run for k, by_seed in runs.items()
                for s, run in by_seed.items()}  # KEY, or KEY_s<seed> for a key with several seeds
    _copy_configs(args.out, labelled)
    n_images = len(next(iter(next(iter(aligned.values())).values())))
    if args.what in ("table1", "all"):
        print(f"Table I: {len(labelled)} run(s) on {n_images} images, {args.n_resamples} "
              "patient-bootstrap resamples ...", flush=True)
        results = table1.evaluate_runs(aligned, args.n_resamples, args.bootstrap_seed)
        print(table1.write_table1(results, paper, args.out, args.synthetic, args.split))
    if args.what in ("figure1", "all"):
        from reproduce.report import figure1  # matplotlib only when a figure is asked for

        for path in figure1.write_figure1(aligned, args.out, args.synthetic, args.split):
            print(f"wrote {path}")
    record = {
        "command": args.what, "argv": [_portable_arg(a) for a in args.argv],
        "runs": {k: portable_path(v) for k, v in labelled.items()},
        "seeds": {k: list(by_seed) for k, by_seed in runs.items()},
        "out": portable_path(args.out), "split": args.split, "synthetic": args.synthetic,
        "n_resamples": args.n_resamples, "bootstrap_seed": args.bootstrap_seed, "alpha": 0.05,
        "paper_table": portable_path(args.paper_table) if args.paper_table else
        f"reproduce/report/{table1.PAPER_TABLE}", "n_images": n_images,
        "predictions_sha256": {k: sha256_file(predictions_path(r, args.split)) for k, r in labelled.items()},
        "run_configs": {k: f"configs/{k}.json" for k in labelled}, "departures": args.departures,
        "provenance": provenance(),
    }
    write_report_config(args.out / "report_config.json", args.what, record)


def run_expert(args) -> None:
    """`expert`: the runs on the split's expert-labelled images, against radiologists and NIH labels."""
    by_key = _runs_by_seed(args)
    labels = expert.read_expert_labels(args.expert_labels)
    runs = {seeds.run_label(k, s, len(by_seed)): run
            for k, by_seed in by_key.items() for s, run in by_seed.items()}
    frames = {k: read_predictions(run, args.split) for k, run in runs.items()}
    subsets, rows = expert.expert_subset(frames, runs, labels, args.split, args.expert_labels)
    n_split = len(next(iter(frames.values())))
    print(f"{len(rows)} of the {n_split} images of split {args.split!r} have expert labels "
          f"({rows['patient_id'].nunique()} patients)")
    results = expert.evaluate_expert(subsets, rows, args.n_resamples, args.bootstrap_seed)
    _copy_configs(args.out, runs)
    print(expert.write_expert(results, args.out, args.synthetic, args.split, n_split))
    record = {
        "command": "expert", "argv": [_portable_arg(a) for a in args.argv],
        "runs": {k: portable_path(v) for k, v in runs.items()}, "out": portable_path(args.out),
        "split": args.split, "synthetic": args.synthetic, "n_resamples": args.n_resamples,
        "bootstrap_seed": args.bootstrap_seed, "alpha": 0.05, "n_images": len(rows), "n_split_images": n_split,
        "expert_labels": portable_path(args.expert_labels),
        "expert_labels_sha256": sha256_file(args.expert_labels),
        "scores": {f: f"max({', '.join(c)})" for f, c in expert.SCORED.items()},
        "predictions_sha256": {k: sha256_file(predictions_path(r, args.split)) for k, r in runs.items()},
        "run_configs": {k: f"configs/{k}.json" for k in runs}, "departures": args.departures,
        "provenance": provenance(),
    }
    write_report_config(args.out / "report_config.json", "expert", record)


def run_beyond(args) -> None:
    """operating-points, calibration, subgroups: every run of every key (KEY_s<seed> with several
    seeds), the subcommand's tables and figure, its entry in report_config.json."""
    by_key = _runs_by_seed(args)
    if args.min_positives < 1:
        raise ReportError("--min-positives must be >= 1")
    labels = {(k, s): seeds.run_label(k, s, len(by_seed)) for k, by_seed in by_key.items() for s in by_seed}
    runs = {labels[(k, s)]: run for k, by_seed in by_key.items() for s, run in by_seed.items()}
    _copy_configs(args.out, runs)
    extra = beyond.SUBCOMMANDS[args.what](args, runs, by_key, labels)
    record = {
        "command": args.what, "argv": [_portable_arg(a) for a in args.argv],
        "runs": {k: portable_path(v) for k, v in runs.items()}, "out": portable_path(args.out),
        "split": args.split, "synthetic": args.synthetic, "n_resamples": args.n_resamples,
        "bootstrap_seed": args.bootstrap_seed, "alpha": 0.05, "min_positives": args.min_positives,
        "predictions_sha256": {k: sha256_file(predictions_path(r, args.split)) for k, r in runs.items()},
        "run_configs": {k: f"configs/{k}.json" for k in runs}, "provenance": provenance(), **extra,
    }
    if args.synthetic:
        beyond.write_data_source(args.out, args.what)
    write_report_config(args.out / "report_config.json", args.what, record)


def _portable_arg(arg: str) -> str:
    key, sep, value = arg.partition("=")
    return f"{key}={portable_path(value)}" if sep and not arg.startswith("-") else portable_path(arg)


def write_report_config(path: Path, what: str, record: dict) -> None:
    """{"table1": args, "figure1": args, "expert": args}: `make table1` then `make figure1` (or
    `expert`) into one DIR keep both."""
    try:
        saved = json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        saved = {}
    outputs = ("table1", "figure1", "expert", *beyond.SUBCOMMANDS)
    saved = {k: v for k, v in saved.items() if k in outputs} if isinstance(saved, dict) else {}
    for output in (("table1", "figure1") if what == "all" else (what,)):
        saved[output] = record
    path.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in report_config.json
    if args.what == "expert" and args.expert_labels is None:
        parser.error("expert needs --expert-labels FILE (google2019_nih-chest-xray-labels.csv.gz)")
    if args.what == "subgroups" and args.labels is None:
        parser.error("subgroups needs --labels FILE (Data_Entry_2017_v2020.csv.gz: age, sex, view)")

    def body():
        with warnings.catch_warnings():
            warnings.simplefilter("default", metrics.DegenerateClassWarning)
            (run_expert if args.what == "expert" else run_beyond if args.what in beyond.SUBCOMMANDS
             else run_report)(args)

    return cli.run(body)
