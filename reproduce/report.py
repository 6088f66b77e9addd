"""Table I and Figure 1 of Mo & Cai (2019) from prediction CSVs.

    python -m reproduce.report {table1,figure1,all} --runs KEY=RUN [--runs KEY=RUN ...] --out DIR
                               [--split test] [--synthetic] [--n-resamples 1000] [--seed 0]

Reads only RUN/predictions_<split>.csv and RUN/config.json of each run (never TensorFlow).
KEY is one of Table I's own columns (vgg16_wce, resnet50_wce, densenet121_wce, densenet121_ewl)
or any other lower-case name (an ablation run: a column in table1.csv, no paper value, no panel).
Writes DIR/table1.csv (layout of results/paper_table1.csv), DIR/table1_comparison.csv,
DIR/table1.md, DIR/figure1.png/.pdf, DIR/configs/KEY.json and DIR/report_config.json.
table1.csv has exactly the layout of results/paper_table1.csv; table1_comparison.csv has a `data`
column naming the source; with --synthetic, DIR/DATA_SOURCE.md also says so, so no file there can
be mistaken for a real-data result.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from data_prep.checksums import sha256_file
from data_prep.schema import CLASSES  # module-level import of schema is TF-free (TF imported lazily)
from reproduce import metrics

# Table I's four columns produced by this package (§IV.D), in the paper's left-to-right order.
PAPER_KEYS = ("vgg16_wce", "resnet50_wce", "densenet121_wce", "densenet121_ewl")
PAPER_TABLE = Path(__file__).resolve().parents[1] / "results" / "paper_table1.csv"
AVE = "AVE"  # Table I's last row: unweighted mean over the 14 classes
SYNTHETIC_NOTE = "synthetic ChestX-ray14 (phantom) — not real-data results"
KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")
DELONG_PAIR = ("densenet121_ewl", "densenet121_wce")  # §IV.D: the proposed loss vs its baseline


class ReportError(Exception):
    """Bad input; the CLI prints it as one `error: ...` line."""


# --- inputs ---------------------------------------------------------------------------------------
def parse_runs(items: list[str]) -> dict[str, Path]:
    """`KEY=RUN` strings → {key: run dir}; bad or repeated keys fail."""
    runs: dict[str, Path] = {}
    for item in items:
        key, sep, path = item.partition("=")
        if not sep or not path or not KEY_RE.match(key):
            raise ReportError(f"--runs {item!r}: expected KEY=RUN with KEY like {PAPER_KEYS[0]}")
        if key in runs:
            raise ReportError(f"--runs: key {key!r} given twice")
        runs[key] = Path(path)
    # Table I's column order for the paper's runs, then any ablation runs in the order given.
    order = [k for k in PAPER_KEYS if k in runs] + [k for k in runs if k not in PAPER_KEYS]
    return {k: runs[k] for k in order}


def prediction_columns() -> list[str]:
    return (["image_index", "patient_id"] + [f"label_{c}" for c in CLASSES]
            + [f"score_{c}" for c in CLASSES])


def read_predictions(run: Path, split: str) -> pd.DataFrame:
    """RUN/predictions_<split>.csv, checked: all columns, labels 0/1, finite scores, unique images."""
    path = run / f"predictions_{split}.csv"
    if not path.is_file():
        raise ReportError(f"{path}: predictions file not found (run reproduce.evaluate --split {split})")
    try:
        df = pd.read_csv(path, dtype={"image_index": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: not a readable CSV ({exc})".splitlines()[0]) from None
    missing = [c for c in prediction_columns() if c not in df.columns]
    if missing:
        raise ReportError(f"{path}: missing column(s) {', '.join(missing[:4])}"
                          + (f" and {len(missing) - 4} more" if len(missing) > 4 else ""))
    if df.empty:
        raise ReportError(f"{path}: no rows")
    labels = df[[f"label_{c}" for c in CLASSES]]
    scores = df[[f"score_{c}" for c in CLASSES]].apply(pd.to_numeric, errors="coerce")
    if not labels.isin([0, 1]).all().all():
        raise ReportError(f"{path}: label_* columns must hold only 0 and 1")
    if not np.isfinite(scores.to_numpy(dtype=np.float64)).all():
        raise ReportError(f"{path}: score_* columns must be finite numbers")
    repeated = df["image_index"][df["image_index"].duplicated()]
    if len(repeated):
        raise ReportError(f"{path}: image_index {repeated.iloc[0]} repeated")
    return df


def read_run_config(run: Path, synthetic: bool) -> dict:
    """RUN/config.json (copied next to the results); a run trained on the phantom needs --synthetic."""
    path = run / "config.json"
    if not path.is_file():
        raise ReportError(f"{path}: run config not found (every reported number must be traceable)")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc})") from None
    # Our choice: a guard against passing off phantom runs as real-data results.
    if not synthetic and any(isinstance(v, str) and "phantom" in v.lower() for v in config.values()):
        raise ReportError(f"{path}: run mentions 'phantom' (synthetic data); pass --synthetic")
    return config


def align_runs(frames: dict[str, pd.DataFrame], runs: dict[str, Path], split: str) -> dict[str, pd.DataFrame]:
    """All runs sorted by image_index; they must cover the same images with the same labels
    (DeLong pairs images; Table I's columns compare models on one test set)."""
    label_cols = [f"label_{c}" for c in CLASSES]
    keys = list(frames)
    ref_key = keys[0]
    ref = frames[ref_key].sort_values("image_index").reset_index(drop=True)
    out = {ref_key: ref}
    for key in keys[1:]:
        df = frames[key].sort_values("image_index").reset_index(drop=True)
        a, b = set(ref["image_index"]), set(df["image_index"])
        if a != b:
            raise ReportError(f"runs {ref_key} ({runs[ref_key]}) and {key} ({runs[key]}) were evaluated on "
                              f"different image sets for split {split!r}: {len(a)} vs {len(b)} images, "
                              f"{len(a & b)} in common")
        same_labels = np.array_equal(ref[label_cols].to_numpy(float), df[label_cols].to_numpy(float))
        if not same_labels or not np.array_equal(ref["patient_id"].to_numpy(), df["patient_id"].to_numpy()):
            raise ReportError(f"runs {ref_key} and {key}: same images but different labels/patient ids")
        out[key] = df
    return out


# --- tables ---------------------------------------------------------------------------------------
def read_paper_table(path: Path = PAPER_TABLE) -> pd.DataFrame:
    if not path.is_file():
        raise ReportError(f"{path}: paper Table I transcription not found")
    return pd.read_csv(path, index_col="pathology")


def evaluate_runs(aligned: dict[str, pd.DataFrame], n_resamples: int, seed: int) -> dict:
    """Per run: AUC per class, AVE and bootstrap CIs; plus DeLong of DELONG_PAIR when both given."""
    label_cols = [f"label_{c}" for c in CLASSES]
    score_cols = [f"score_{c}" for c in CLASSES]
    first = next(iter(aligned.values()))
    labels, patients = first[label_cols].to_numpy(), first["patient_id"].to_numpy()
    results = {"runs": {}, "delong": None, "n_images": int(len(first)),
               "n_patients": int(pd.Series(patients).nunique())}
    for key, df in aligned.items():
        results["runs"][key] = metrics.bootstrap_auc_ci(labels, df[score_cols].to_numpy(), patients,
                                                        CLASSES, n_resamples=n_resamples, seed=seed)
    if all(k in aligned for k in DELONG_PAIR):
        a, b = (aligned[k][score_cols].to_numpy() for k in DELONG_PAIR)
        results["delong"] = metrics.delong_per_class(labels, a, b, CLASSES)
    return results


def table1_frame(results: dict) -> pd.DataFrame:
    """Ours in Table I's layout: rows = 14 classes + AVE, columns = run keys (4-decimal values)."""
    data = {}
    for key, r in results["runs"].items():
        data[key] = [r["per_class"][c]["auc"] for c in CLASSES] + [r["mean"]["auc"]]
    frame = pd.DataFrame(data, index=pd.Index(list(CLASSES) + [AVE], name="pathology"))
    return frame.round(4)


def comparison_frame(results: dict, paper: pd.DataFrame) -> pd.DataFrame:
    """Long table: one row per (pathology, run): paper, ours, CI, ours − paper, DeLong p."""
    rows = []
    for key, r in results["runs"].items():
        for name in list(CLASSES) + [AVE]:
            ours = r["mean"] if name == AVE else r["per_class"][name]
            ref = float(paper.loc[name, key]) if key in paper.columns else float("nan")
            p = float("nan")
            if results["delong"] is not None and name != AVE and key in DELONG_PAIR:
                p = results["delong"][name]["p_value"]
            rows.append({"pathology": name, "run": key, "paper": ref, "ours": ours["auc"],
                         "ci_low": ours["ci_low"], "ci_high": ours["ci_high"],
                         "ours_minus_paper": ours["auc"] - ref, "delong_p_ewl_vs_wce": p,
                         "n_resamples_used": ours["n_resamples_used"]})
    return pd.DataFrame(rows)


def source_line(synthetic: bool, split: str, results: dict) -> str:
    data = SYNTHETIC_NOTE if synthetic else "ChestX-ray14 (NIH)"
    return f"data: {data}; split: {split}; {results['n_images']} images, {results['n_patients']} patients"


def table1_markdown(results: dict, paper: pd.DataFrame, synthetic: bool, split: str) -> str:
    """Readable Table I: 'ours [95% CI] (paper)' per run, DeLong p of ewl vs wce if both ran."""
    keys = list(results["runs"])
    head = ["Pathology"] + keys + (["DeLong p (ewl vs wce)"] if results["delong"] else [])
    lines = [f"# Table I reproduction — {source_line(synthetic, split, results)}", "",
             "Cells: our AUC [95% patient-bootstrap CI] (paper's Table I value).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in list(CLASSES) + [AVE]:
        cells = [name]
        for key in keys:
            r = results["runs"][key]
            v = r["mean"] if name == AVE else r["per_class"][name]
            ref = f" ({paper.loc[name, key]:.4f})" if key in paper.columns else ""
            cells.append(f"{v['auc']:.4f} [{v['ci_low']:.4f}, {v['ci_high']:.4f}]{ref}")
        if results["delong"]:
            cells.append("" if name == AVE else f"{results['delong'][name]['p_value']:.3g}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _write_csv(frame: pd.DataFrame, path: Path, index: bool) -> None:
    frame.to_csv(path, index=index, float_format="%.4f", lineterminator="\n")


def write_table1(results: dict, paper: pd.DataFrame, out: Path, synthetic: bool, split: str) -> str:
    # table1.csv keeps paper_table1.csv's exact layout, so the source goes in a column of the
    # comparison, in table1.md's title, and (synthetic) in DATA_SOURCE.md beside them.
    _write_csv(table1_frame(results), out / "table1.csv", index=True)
    comparison = comparison_frame(results, paper)
    comparison.insert(0, "data", "synthetic" if synthetic else "ChestX-ray14")
    _write_csv(comparison, out / "table1_comparison.csv", index=False)
    text = table1_markdown(results, paper, synthetic, split)
    (out / "table1.md").write_text(text)
    if synthetic:
        (out / "DATA_SOURCE.md").write_text(
            f"# {SYNTHETIC_NOTE}\n\nEvery table and figure in this folder was computed on the "
            "project's synthetic ChestX-ray14 (data_prep.phantom: drawn images labelled with real "
            "NIH label rows). It shows that the pipeline runs end to end; it says nothing about "
            f"the paper's real-data numbers.\n\n{source_line(synthetic, split, results)}\n")
    return text


# --- CLI ------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m reproduce.report", description=__doc__.split("\n")[0])
    p.add_argument("what", choices=("table1", "figure1", "all"))
    p.add_argument("--runs", action="append", required=True, metavar="KEY=RUN",
                   help=f"a run folder; KEY in {', '.join(PAPER_KEYS)} or an ablation name")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--split", default="test", help="which predictions_<split>.csv to read")
    p.add_argument("--synthetic", action="store_true", help="runs used the phantom: say so everywhere")
    p.add_argument("--n-resamples", type=int, default=1000, help="patient bootstrap resamples (our choice)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (our choice)")
    p.add_argument("--paper-table", type=Path, default=PAPER_TABLE)
    return p


def run_report(args: argparse.Namespace) -> None:
    runs = parse_runs(args.runs)
    if args.n_resamples < 1:
        raise ReportError("--n-resamples must be >= 1")
    paper = read_paper_table(args.paper_table)
    for run in runs.values():
        read_run_config(run, args.synthetic)
    frames = {k: read_predictions(run, args.split) for k, run in runs.items()}
    aligned = align_runs(frames, runs, args.split)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "configs").mkdir(exist_ok=True)
    for key, run in runs.items():
        shutil.copyfile(run / "config.json", args.out / "configs" / f"{key}.json")
    results = {"n_images": len(next(iter(aligned.values())))}
    if args.what in ("table1", "all"):
        results = evaluate_runs(aligned, args.n_resamples, args.seed)
        print(write_table1(results, paper, args.out, args.synthetic, args.split))
    if args.what in ("figure1", "all"):
        from reproduce import figures  # matplotlib only when a figure is asked for

        for path in figures.write_figure1(aligned, args.out, args.synthetic, args.split):
            print(f"wrote {path}")
    record = {
        "command": args.what, "argv": args.argv, "runs": {k: str(v) for k, v in runs.items()},
        "out": str(args.out), "split": args.split, "synthetic": args.synthetic,
        "n_resamples": args.n_resamples, "seed": args.seed, "alpha": 0.05,
        "paper_table": str(args.paper_table), "n_images": results["n_images"],
        "predictions_sha256": {k: sha256_file(r / f"predictions_{args.split}.csv") for k, r in runs.items()},
        "run_configs": {k: f"configs/{k}.json" for k in runs},
    }
    write_report_config(args.out / "report_config.json", args.what, record)


def write_report_config(path: Path, what: str, record: dict) -> None:
    """{"table1": args, "figure1": args}: `make table1` then `make figure1` into one DIR keep both."""
    try:
        saved = json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        saved = {}
    saved = {k: v for k, v in saved.items() if k in ("table1", "figure1")} if isinstance(saved, dict) else {}
    for output in (("table1", "figure1") if what == "all" else (what,)):
        saved[output] = record
    path.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in report_config.json
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default", metrics.DegenerateClassWarning)
            run_report(args)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
