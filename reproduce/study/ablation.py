"""Ablation of Eq. (2): the literal loss, weighted CE and each of its readings, same model
(`python -m reproduce.ablation`, `make ablation`, is the program).

For each loss — "wce" (Eq. (1)), "ewl" (Eq. (2) as printed) and every reading of
`reproduce.losses.readings` — RUNS/<model>_<loss> is trained and evaluated on the test split
(`reproduce.engine`), unless its predictions_test.csv already exists (`make demo` leaves wce and
ewl there). `run_ablation` writes OUT/ablation.csv (one row per loss: mean AUC with its
patient-bootstrap 95% CI, per-class AUC, per-class DeLong p vs weighted CE, classes significantly
better/worse), OUT/label_relations.csv and .png (`reproduce.study.relations` against the REAL
label file) and OUT/ewl_term.png.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from data_prep.schema import CLASSES
from reproduce import metrics, run_data
from reproduce.report.predictions import align_runs, arrays, read_predictions, read_run_config
from reproduce.study import relations
from reproduce.study.plots import plot_ewl_term, plot_relations

BASELINE, LITERAL = "wce", "ewl"
ALPHA = 0.05  # our choice: two-sided DeLong p < 0.05 per class, no multiplicity correction
#               (14 tests; the counts are descriptive, the p values are all in the CSV)
READING_TEXT = {
    "wce": "Eq. (1) weighted CE, sigmoid head (baseline)",
    "ewl": "Eq. (2) as printed, softmax head (the paper's proposed loss)",
    "ewl_neg": "Eq. (2) sign flipped: minimise sum l p log p, softmax head",
    "softmax_ce": "softmax CE, multi-hot targets normalised to sum 1, softmax head",
    "wce_ewl": "Eq. (1) + 1.0 * Eq. (2) on softmax of the same logits, sigmoid head",
    "ewl_sigmoid": "Eq. (2) as printed on a sigmoid head",
}


class AblationError(ValueError):
    """Bad input to the ablation: a run that is not what its folder name says, mismatched sets."""


# --- runs ----------------------------------------------------------------------------------------
def ensure_predictions(config, data_dir: Path, run_dir: Path, preset_name=None) -> Path:
    """Train and evaluate the run unless RUN/predictions_test.csv exists (and matches `config`)."""
    pred = run_dir / "predictions_test.csv"
    saved = run_dir / "config.json"
    if pred.is_file():
        if saved.is_file():  # every Config field must match: a paper-preset run is not a demo one
            old = json.loads(saved.read_text())
            diff = [f"{k} is {old.get(k)!r}, expected {v!r}" for k, v in config.to_dict().items()
                    if k in old and old[k] != v]
            if diff:
                raise AblationError(f"{saved}: not this ablation's run ({'; '.join(diff[:3])}); "
                                    "delete the run folder to retrain it")
            _check_data(old, run_dir, data_dir)
        return pred
    import keras

    from reproduce.engine.inference import evaluate_run
    from reproduce.engine.training import train

    print(f"[ablation] training {run_dir.name} ({config.loss}) ...", flush=True)
    train(config, data_dir, run_dir, preset_name=preset_name)
    result = Path(evaluate_run(run_dir, data_dir, split="test"))
    keras.backend.clear_session()  # the next run starts from a fresh graph and fresh memory
    return result if result.is_file() else pred


def _check_data(config: dict, run_dir: Path, data_dir: Path) -> None:
    """A run whose predictions are reused must have been trained (and evaluated) on --data."""
    from common.checksums import sha256_file
    from reproduce.data import read_manifest

    run_data.check_trained_on(config, run_dir, data_dir, read_manifest(data_dir),
                              sha256_file(Path(data_dir) / "manifest.json"), other_data=False)


def checkpoint_of(run_dir: Path) -> str:
    """Which checkpoint the predictions came from (RUN/metrics_test.json), "" if unknown.

    It matters here: the default "best" (best validation mean AUC) can pick an early epoch of a
    loss whose training drives the AUC down, e.g. the literal Eq. (2)."""
    path = run_dir / "metrics_test.json"
    return str(json.loads(path.read_text()).get("checkpoint", "")) if path.is_file() else ""


def ablation_row(loss: str, df: pd.DataFrame, base: pd.DataFrame, n_resamples: int, seed: int) -> dict:
    y, scores = arrays(df)
    boot = metrics.bootstrap_auc_ci(y, scores, df["patient_id"].to_numpy(), list(CLASSES),
                                    n_resamples=n_resamples, seed=seed)
    row = {"loss": loss, "reading": READING_TEXT.get(loss, loss), "mean_auc": boot["mean"]["auc"],
           "mean_ci_low": boot["mean"]["ci_low"], "mean_ci_high": boot["mean"]["ci_high"]}
    row.update({f"auc_{c}": boot["per_class"][c]["auc"] for c in CLASSES})
    if loss == BASELINE:
        tests = {c: {"p_value": float("nan"), "difference": 0.0} for c in CLASSES}
    else:
        tests = metrics.delong_per_class(y, scores, arrays(base)[1], list(CLASSES))
    row.update({f"p_{c}": tests[c]["p_value"] for c in CLASSES})
    significant = [tests[c] for c in CLASSES if tests[c]["p_value"] < ALPHA]
    row["n_better"] = sum(t["difference"] > 0 for t in significant)
    row["n_worse"] = sum(t["difference"] < 0 for t in significant)
    row["n_auc_below_half"] = sum(boot["per_class"][c]["auc"] < 0.5 for c in CLASSES)
    return row


def relation_rows(frames: dict[str, pd.DataFrame], label_phi: np.ndarray) -> tuple[list, dict]:
    """One agreement number per loss (vs the REAL label file), and the score matrices."""
    test_y, _ = arrays(frames[BASELINE])
    test_phi = relations.phi_matrix(test_y)
    rows = [{"loss": "test labels (reference)",
             "agreement_with_real_labels": relations.relation_agreement(test_phi, label_phi),
             "agreement_with_test_labels": 1.0}]
    matrices = {}
    for loss, df in frames.items():
        corr = relations.column_correlation(arrays(df)[1])
        matrices[loss] = corr
        rows.append({"loss": loss,
                     "agreement_with_real_labels": relations.relation_agreement(corr, label_phi),
                     "agreement_with_test_labels": relations.relation_agreement(corr, test_phi)})
    return rows, matrices


def run_ablation(args) -> tuple[pd.DataFrame, pd.DataFrame]:
    from data_prep.labels import label_matrix, read_label_file
    from reproduce.config import preset

    label_phi = relations.phi_matrix(label_matrix(read_label_file(args.labels)))
    base_config = preset(args.preset).override(model=args.model)
    frames, run_dirs = {}, {}
    for loss in [BASELINE, LITERAL] + [r for r in args.readings if r not in (BASELINE, LITERAL)]:
        run_dirs[loss] = args.runs_dir / f"{args.model}_{loss}"
        ensure_predictions(base_config.override(loss=loss), args.data, run_dirs[loss], args.preset)
        frames[loss] = read_predictions(run_dirs[loss], "test")
    # The same checks as Table I: one image set, same labels and patients, baseline first.
    frames = align_runs(frames, run_dirs, "test")
    configs = {loss: read_run_config(run) for loss, run in run_dirs.items()}
    run_data.check_same_data(configs)
    synthetic = run_data.synthetic(configs, asserted=args.synthetic)  # a fact of the data
    note = "SYNTHETIC set (phantom), not NIH images" if synthetic else "REAL ChestX-ray14"
    table = pd.DataFrame([ablation_row(loss, df, frames[BASELINE], args.n_resamples, args.bootstrap_seed)
                          for loss, df in frames.items()])
    table.insert(2, "checkpoint", [checkpoint_of(run_dirs[loss]) for loss in frames])
    rows, matrices = relation_rows(frames, label_phi)
    relation_table = pd.DataFrame(rows)
    for df in (table, relation_table):
        df.insert(1, "data", note)
        df.insert(2, "model", args.model)
        df.insert(3, "preset", args.preset)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "ablation.csv", index=False, float_format="%.6g")
    relation_table.to_csv(args.out / "label_relations.csv", index=False, float_format="%.6g")
    plot_relations(label_phi, matrices, rows, args.out / "label_relations.png", note)
    plot_ewl_term(args.out / "ewl_term.png")
    return table, relation_table
