"""Table I of Mo & Cai (2019) from prediction CSVs: per-class AUC beside the paper's values.

table1.csv has exactly the layout of the paper's Table I as transcribed in `paper_table1.csv`
(package data beside this module); table1_comparison.csv adds patient-bootstrap CIs, ours − paper
and the DeLong p of densenet121_ewl vs densenet121_wce; table1.md is the same for reading, with
the data source in its title (and, for the synthetic set, in DATA_SOURCE.md beside them).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

from data_prep.schema import CLASSES
from reproduce import metrics
from reproduce.report.predictions import SCORE_COLUMNS, SYNTHETIC_NOTE, ReportError, arrays

PAPER_TABLE = "paper_table1.csv"  # package data of reproduce.report
AVE = "AVE"  # Table I's last row: unweighted mean over the 14 classes
DELONG_PAIR = ("densenet121_ewl", "densenet121_wce")  # §IV.D: the proposed loss vs its baseline


def read_paper_table(path: Path | None = None) -> pd.DataFrame:
    """The paper's Table I as printed (package data), or a transcription at `path`."""
    if path is None:
        with resources.files("reproduce.report").joinpath(PAPER_TABLE).open() as fh:
            return pd.read_csv(fh, index_col="pathology")
    if not Path(path).is_file():
        raise ReportError(f"{path}: paper Table I transcription not found")
    return pd.read_csv(path, index_col="pathology")


def evaluate_runs(aligned: dict[str, pd.DataFrame], n_resamples: int, seed: int) -> dict:
    """Per run: AUC per class, AVE and bootstrap CIs; plus DeLong of DELONG_PAIR when both given."""
    first = next(iter(aligned.values()))
    labels, patients = arrays(first)[0], first["patient_id"].to_numpy()
    results = {"runs": {}, "delong": None, "n_images": int(len(first)),
               "n_patients": int(pd.Series(patients).nunique())}
    for key, df in aligned.items():
        results["runs"][key] = metrics.bootstrap_auc_ci(labels, df[SCORE_COLUMNS].to_numpy(), patients,
                                                        CLASSES, n_resamples=n_resamples, seed=seed)
    if all(k in aligned for k in DELONG_PAIR):
        a, b = (arrays(aligned[k])[1] for k in DELONG_PAIR)
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
