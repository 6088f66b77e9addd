"""Table I's models against radiologists: AUCs on expert-adjudicated labels of the same images.

Majkowska et al. (Radiology 2019) had three radiologists adjudicate four findings on 4,376
ChestX-ray14 images (`data_prep.labels.read_expert_labels`). For the images of the evaluated split
that have such labels, every run is scored twice on the SAME images: against the radiologists and
against NIH's text-mined labels (Table I's reference), with patient-bootstrap CIs as in Table I,
plus DeLong of densenet121_ewl vs densenet121_wce on both. `label_agreement` measures the label
noise itself (NIH vs radiologists, Cohen's kappa). Reads prediction CSVs only; no TensorFlow.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from data_prep.labels import EXPERT_FINDINGS, read_expert_labels, read_label_file
from data_prep.schema import CLASSES
from reproduce import metrics
from reproduce.report.predictions import SYNTHETIC_NOTE, ReportError, align_runs, arrays, predictions_path
from reproduce.report.table1 import DELONG_PAIR

# Our choice (docs/paper_map.md): each expert finding is scored by the MAX of the Table I classes
# that name it (the score analogue of "any of them", a monotone OR), and its NIH label is the OR of
# the same classes. Airspace opacity = the NIH terms for filled airspaces (consolidation,
# pneumonia, infiltration, edema); atelectasis (collapse) is left out.
SCORED = {
    "Pneumothorax": ("Pneumothorax",),
    "Nodule or mass": ("Nodule", "Mass"),
    "Airspace opacity": ("Consolidation", "Pneumonia", "Infiltration", "Edema"),
}
UNSCORED = tuple(f for f in EXPERT_FINDINGS if f not in SCORED)  # Fracture: no Table I class
AUC_COLUMNS = ["run", "finding", "images", "positives_expert", "positives_nih", "auc_expert",
               "auc_expert_ci_low", "auc_expert_ci_high", "auc_nih", "auc_nih_ci_low",
               "auc_nih_ci_high", "delong_p_ewl_vs_wce_expert", "delong_p_ewl_vs_wce_nih"]


def per_finding(matrix14) -> np.ndarray:
    """[N, 14] in CLASSES order → [N, 3] in SCORED order: max over each finding's classes
    (on 0/1 labels the max is the OR)."""
    matrix14 = np.asarray(matrix14)
    return np.stack([matrix14[:, [CLASSES.index(c) for c in cols]].max(axis=1)
                     for cols in SCORED.values()], axis=1)


def label_agreement(nih, expert) -> dict:
    """How NIH's labels of one finding disagree with the radiologists' on the same images."""
    nih, expert = np.asarray(nih).astype(int), np.asarray(expert).astype(int)
    return {"images": int(nih.size), "positives_expert": int(expert.sum()),
            "positives_nih": int(nih.sum()),
            "nih_pos_expert_neg": int(((nih == 1) & (expert == 0)).sum()),
            "nih_neg_expert_pos": int(((nih == 0) & (expert == 1)).sum()),
            "both_pos": int(((nih == 1) & (expert == 1)).sum()),
            "both_neg": int(((nih == 0) & (expert == 0)).sum()),
            "kappa": metrics.cohen_kappa(nih, expert)}


def agreement_frame(nih3, expert3) -> pd.DataFrame:
    """One row per scored finding: label_agreement of NIH [N, 3] vs expert [N, 3]."""
    rows = [{"finding": f, "nih_classes": "|".join(SCORED[f]),
             **label_agreement(np.asarray(nih3)[:, j], np.asarray(expert3)[:, j])}
            for j, f in enumerate(SCORED)]
    return pd.DataFrame(rows)


def file_agreement(expert_path, nih_path) -> pd.DataFrame:
    """The label noise of the real files, no image needed: agreement_frame over every expert row."""
    expert = read_expert_labels(expert_path)
    nih = read_label_file(nih_path).set_index("image_index")
    unknown = sorted(set(expert["image_index"]) - set(nih.index))
    if unknown:
        raise ReportError(f"{expert_path}: {len(unknown)} images not in {nih_path}, e.g. {unknown[0]}")
    labels14 = nih.loc[expert["image_index"], list(CLASSES)].to_numpy()
    return agreement_frame(per_finding(labels14), expert[list(SCORED)].to_numpy())


def expert_subset(frames: dict, runs: dict, expert: pd.DataFrame, split: str, source) -> tuple:
    """(each run's predictions on the split's expert-labelled images, those images' expert rows),
    all sorted by image_index. Refuses: no such image; a run lacking some of them; runs on
    different images or labels (align_runs); a patient id that differs from the expert file's."""
    seen = set().union(*(set(f["image_index"]) for f in frames.values()))
    wanted = sorted(seen & set(expert["image_index"]))
    if not wanted:
        raise ReportError(f"none of the {len(seen)} images of split {split!r} has a label in {source} "
                          "(Google's expert images are in the val/test splits of ChestX-ray14)")
    for key, frame in frames.items():
        lacking = sorted(set(wanted) - set(frame["image_index"]))
        if lacking:
            raise ReportError(f"run {key} ({predictions_path(runs[key], split)}) lacks {len(lacking)} "
                              f"of the {len(wanted)} expert-labelled images of split {split!r}, "
                              f"e.g. {lacking[0]}")
    aligned = align_runs(frames, runs, split)
    subsets = {k: f[f["image_index"].isin(wanted)].reset_index(drop=True) for k, f in aligned.items()}
    rows = expert.set_index("image_index").loc[wanted].reset_index()
    first = next(iter(subsets.values()))
    differ = first["patient_id"].to_numpy() != rows["patient_id"].to_numpy()
    if differ.any():
        i = int(np.flatnonzero(differ)[0])
        raise ReportError(f"{rows['image_index'][i]}: patient {first['patient_id'][i]} in the predictions "
                          f"but {rows['patient_id'][i]} in {source}")
    return subsets, rows


def evaluate_expert(subsets: dict, rows: pd.DataFrame, n_resamples: int, seed: int) -> dict:
    """Per run, both references on the same images: bootstrap AUC CIs (same seed, so the same
    patient resamples for both) and, for DELONG_PAIR, per-finding DeLong p on each reference."""
    first = next(iter(subsets.values()))
    labels = {"expert": rows[list(SCORED)].to_numpy(np.int64), "nih": per_finding(arrays(first)[0])}
    patients = first["patient_id"].to_numpy()
    names = list(SCORED)
    results = {"runs": {}, "delong": {}, "n_images": int(len(rows)),
               "n_patients": int(pd.Series(patients).nunique()),
               "unscored": {f: int(rows[f].sum()) for f in UNSCORED},
               "agreement": agreement_frame(labels["nih"], labels["expert"])}
    for key, frame in subsets.items():
        scores = per_finding(arrays(frame)[1])
        results["runs"][key] = {ref: metrics.bootstrap_auc_ci(y, scores, patients, names, n_resamples, seed)
                                for ref, y in labels.items()}
    if all(k in subsets for k in DELONG_PAIR):
        a, b = (per_finding(arrays(subsets[k])[1]) for k in DELONG_PAIR)
        results["delong"] = {ref: metrics.delong_per_class(y, a, b, names) for ref, y in labels.items()}
    return results


def _auc_row(results: dict, key: str, finding: str) -> dict:
    agree = results["agreement"].set_index("finding").loc[finding]
    row = {"run": key, "finding": finding, "images": results["n_images"],
           "positives_expert": int(agree["positives_expert"]), "positives_nih": int(agree["positives_nih"])}
    for ref in ("expert", "nih"):
        cell = results["runs"][key][ref]["per_class"][finding]
        row.update({f"auc_{ref}": cell["auc"], f"auc_{ref}_ci_low": cell["ci_low"],
                    f"auc_{ref}_ci_high": cell["ci_high"]})
        pair = results["delong"].get(ref)
        row[f"delong_p_ewl_vs_wce_{ref}"] = pair[finding]["p_value"] if pair and key in DELONG_PAIR else np.nan
    return row


def auc_frame(results: dict) -> pd.DataFrame:
    """expert_auc.csv: one row per (run, finding); Fracture rows carry counts only (no AUC)."""
    rows = []
    for key in results["runs"]:
        rows += [_auc_row(results, key, f) for f in SCORED]
        rows += [{"run": key, "finding": f, "images": results["n_images"], "positives_expert": n}
                 for f, n in results["unscored"].items()]
    frame = pd.DataFrame(rows, columns=AUC_COLUMNS)
    for col in ("images", "positives_expert", "positives_nih"):
        frame[col] = frame[col].astype("Int64")  # counts stay integers; Fracture's NIH count is empty
    return frame


def source_line(synthetic: bool, split: str, results: dict, n_split: int) -> str:
    data = SYNTHETIC_NOTE if synthetic else "ChestX-ray14 (NIH) with Majkowska et al. 2019 expert labels"
    return (f"data: {data}; split: {split}; {results['n_images']} of its {n_split} images have expert "
            f"labels ({results['n_patients']} patients)")


def expert_markdown(results: dict, synthetic: bool, split: str, n_split: int) -> str:
    """Readable summary: per finding and run, AUC vs radiologists and vs NIH labels, then agreement."""
    lines = [f"# Against radiologists — {source_line(synthetic, split, results, n_split)}", "",
             "Cells: AUC [95% patient-bootstrap CI], same images for both references.", "",
             "| Finding | run | vs radiologists | vs NIH labels | positives (radiologists / NIH) |",
             "|---|---|---|---|---|"]
    for row in auc_frame(results).itertuples():
        if row.finding in UNSCORED:
            continue
        cells = [f"{getattr(row, f'auc_{r}'):.4f} [{getattr(row, f'auc_{r}_ci_low'):.4f}, "
                 f"{getattr(row, f'auc_{r}_ci_high'):.4f}]" for r in ("expert", "nih")]
        lines.append(f"| {row.finding} | {row.run} | {cells[0]} | {cells[1]} | "
                     f"{row.positives_expert} / {row.positives_nih} |")
    for ref, pair in results["delong"].items():
        ps = ", ".join(f"{f} {pair[f]['p_value']:.3g}" for f in SCORED)
        who = "the radiologists'" if ref == "expert" else "NIH's"
        lines.append(f"\nDeLong p, {DELONG_PAIR[0]} vs {DELONG_PAIR[1]}, on {who} labels: {ps}")
    lines += ["", "Label noise on these images (NIH vs radiologists):", "",
              "| Finding | NIH+ expert− | NIH− expert+ | Cohen's kappa |", "|---|---|---|---|"]
    lines += [f"| {r.finding} | {r.nih_pos_expert_neg} | {r.nih_neg_expert_pos} | {r.kappa:.3f} |"
              for r in results["agreement"].itertuples()]
    lines += [f"\n{f}: {n} of the {results['n_images']} images positive for the radiologists; no Table I "
              "class, so no AUC." for f, n in results["unscored"].items()]
    return "\n".join(lines) + "\n"


def write_expert(results: dict, out: Path, synthetic: bool, split: str, n_split: int) -> str:
    """DIR/expert_auc.csv, DIR/expert_agreement.csv, DIR/expert.md; returns the Markdown."""
    data = "synthetic" if synthetic else "ChestX-ray14"
    for name, frame in (("expert_auc.csv", auc_frame(results)), ("expert_agreement.csv", results["agreement"])):
        frame = frame.copy()
        frame.insert(0, "data", data)
        frame.to_csv(out / name, index=False, float_format="%.4f", lineterminator="\n")
    text = expert_markdown(results, synthetic, split, n_split)
    (out / "expert.md").write_text(text)
    if synthetic and not (out / "DATA_SOURCE.md").exists():  # table1 may have written it already
        (out / "DATA_SOURCE.md").write_text(
            f"# {SYNTHETIC_NOTE}\n\nThe expert-label comparison in this folder scores models trained on "
            "the project's synthetic ChestX-ray14 (data_prep.phantom) against real radiologist labels of "
            "the real images the phantom stands in for. It shows that the pipeline runs end to end; it "
            f"says nothing about real-data results.\n\n{source_line(synthetic, split, results, n_split)}\n")
    return text
