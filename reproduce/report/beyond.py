"""The report's subcommands beyond the AUC (docs/beyond-auc.md), called by `reproduce.report.cli`:

    python -m reproduce.report operating-points --runs KEY=RUN … --out DIR   (+ RUN/predictions_val.csv)
    python -m reproduce.report calibration --runs KEY=RUN … --out DIR [--recalibrate platt]
    python -m reproduce.report subgroups --runs KEY=RUN … --labels Data_Entry_2017_v2020.csv.gz --out DIR

Each reads only predictions CSVs (the split's, and validation's where a threshold or a
recalibration is fitted) and, for subgroups, the label file; computes with `operating_points`,
`calibration`, `subgroups`; writes its tables and figure into DIR and returns what
report_config.json records about its inputs. No TensorFlow.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from common.checksums import sha256_file
from data_prep.labels import read_label_file
from common.provenance import portable_path
from data_prep.schema import CLASSES
from reproduce.report import beyond_figures, calibration, operating_points, subgroups
from reproduce.report.predictions import (SYNTHETIC_NOTE, ReportError, align_runs, arrays,
                                          predictions_path, read_predictions)
from reproduce.report.table1 import DELONG_PAIR

VALIDATION = "val"


def read_split(runs: dict[str, Path], split: str) -> dict[str, pd.DataFrame]:
    """Every run's predictions of one split, aligned (same images, labels, patients)."""
    return align_runs({k: read_predictions(run, split) for k, run in runs.items()}, runs, split)


def read_validation(runs: dict[str, Path], test: dict[str, pd.DataFrame], split: str, why: str) -> dict:
    """Every run's validation predictions, refused when missing (saying why they are needed) or
    when they share an image or a patient with the evaluated split."""
    for key, run in runs.items():
        if not predictions_path(run, VALIDATION).is_file():
            raise ReportError(f"{predictions_path(run, VALIDATION)}: validation predictions not found; "
                              f"{why} (python -m reproduce.evaluate --runs {run} --data SHARDS --split val)")
    val = read_split(runs, VALIDATION)
    first_val, first_test = next(iter(val.values())), next(iter(test.values()))
    for column, what in (("image_index", "images"), ("patient_id", "patients")):
        shared = set(first_val[column]) & set(first_test[column])
        if shared:
            raise ReportError(f"the {VALIDATION} and {split} predictions of {next(iter(runs))} share "
                              f"{len(shared)} {what} (e.g. {sorted(shared)[0]}): not two splits of one "
                              "patient-wise split")
    return val


def require_positives(frame: pd.DataFrame, split: str, min_positives: int, what: str) -> None:
    """Refuses a split where no class has min_positives positives and as many negatives: every
    cell of the report would be empty."""
    labels = arrays(frame)[0]
    enough = np.minimum(labels.sum(axis=0), len(labels) - labels.sum(axis=0)) >= min_positives
    if not enough.any():
        raise ReportError(f"no class has {min_positives} positives and {min_positives} negatives among the "
                          f"{len(frame)} images of split {split!r}: {what} would show no number (a larger "
                          "split, or a lower --min-positives)")


def title(synthetic: bool, split: str, frame: pd.DataFrame) -> str:
    data = SYNTHETIC_NOTE if synthetic else "ChestX-ray14 (NIH)"
    return (f"data: {data}; split: {split}; {len(frame)} images, "
            f"{frame['patient_id'].nunique()} patients")


def _write_table(table: pd.DataFrame, path: Path, synthetic: bool) -> None:
    table = table.copy()
    table.insert(0, "data", "synthetic" if synthetic else "ChestX-ray14")
    table.to_csv(path, index=False, float_format="%.4f", na_rep="", lineterminator="\n")


def _triples(frames: dict) -> dict:
    return {k: (*arrays(f), f["patient_id"].to_numpy()) for k, f in frames.items()}


def first_per_key(by_key: dict, labels: dict) -> dict[str, str]:
    """{key: the label of its lowest seed's run}: the run a figure draws for a key."""
    return {key: labels[(key, next(iter(by_seed)))] for key, by_seed in by_key.items()}


def run_operating_points(args, runs: dict, by_key: dict, labels: dict) -> dict:
    if args.split == VALIDATION:
        raise ReportError("operating points choose thresholds on the val split; --split must be another")
    test = read_split(runs, args.split)
    val = read_validation(runs, test, args.split, "operating points choose their thresholds there")
    require_positives(next(iter(val.values())), VALIDATION, args.min_positives, "every threshold")
    print(f"operating points: {len(runs)} run(s), thresholds on {len(next(iter(val.values())))} validation "
          f"images, applied to {len(next(iter(test.values())))} {args.split} images ...", flush=True)
    results = operating_points.evaluate_runs(_triples(val), _triples(test), CLASSES, args.n_resamples,
                                             args.bootstrap_seed, args.min_positives)
    table = operating_points.frame(results, CLASSES)
    _write_table(table, args.out / "operating_points.csv", args.synthetic)
    text = operating_points.markdown(table, title(args.synthetic, args.split, next(iter(test.values()))),
                                     args.min_positives)
    (args.out / "operating_points.md").write_text(text)
    shown = {key: arrays(test[label]) for key, label in first_per_key(by_key, labels).items()}
    n_test = len(next(iter(test.values())))
    fig = beyond_figures.pr_figure(shown, f"Precision-recall curves, {_data(args)}\n{args.split} split, "
                                   f"{n_test} images{_seed_note(by_key)}", args.min_positives)
    paths = beyond_figures.save(fig, args.out, "pr_curves")
    _summarise_operating_points(table)
    return {"val_predictions_sha256": _shas(runs, VALIDATION), "figures": [p.name for p in paths]}


def _summarise_operating_points(table: pd.DataFrame) -> None:
    """One line per run: how often the 0.95-sensitivity threshold of validation keeps 0.95 on test."""
    for run, t in table[(table["rule"] == "sens95") & ~table["too_few_positives"]].groupby("run", sort=False):
        kept = int((t["sensitivity"] >= 0.95).sum())
        print(f"{run}: sens95 thresholds keep sensitivity >= 0.95 on test for {kept} of {len(t)} classes; "
              f"median specificity {t['specificity'].median():.3f}, median flagged per 1,000 "
              f"{t['flagged_per_1000'].median():.0f}")


def run_calibration(args, runs: dict, by_key: dict, labels: dict) -> dict:
    if args.split == VALIDATION and args.recalibrate != "none":
        raise ReportError(f"--recalibrate {args.recalibrate} is fitted on the val split; --split must be another")
    test = read_split(runs, args.split)
    require_positives(next(iter(test.values())), args.split, args.min_positives, "calibration")
    val = (read_validation(runs, test, args.split, f"--recalibrate {args.recalibrate} is fitted there")
           if args.recalibrate != "none" else {})
    results = {k: calibration.evaluate_run(arrays(f), arrays(val[k]) if val else None, CLASSES,
                                           args.recalibrate, calibration.N_BINS, args.min_positives)
               for k, f in test.items()}
    table = calibration.frame(results, CLASSES, args.recalibrate)
    _write_table(table, args.out / "calibration.csv", args.synthetic)
    text = calibration.markdown(table, title(args.synthetic, args.split, next(iter(test.values()))),
                                args.recalibrate, calibration.N_BINS, args.min_positives)
    (args.out / "calibration.md").write_text(text)
    drawn = first_per_key(by_key, labels)
    fig = beyond_figures.reliability_figure({k: results[r]["curves"] for k, r in drawn.items()},
                                            {k: results[r]["head"] for k, r in drawn.items()},
                                            f"Reliability ({calibration.N_BINS} equal-mass bins), "
                                            f"{_data(args)}, {args.split} split{_seed_note(by_key)}")
    paths = beyond_figures.save(fig, args.out, "reliability")
    for run, r in results.items():
        print(f"{run} ({r['head']} head): pooled Brier {r['pooled']['brier']:.4f}, ECE "
              f"{r['pooled']['ece']:.4f}; mean score {r['pooled']['mean_score']:.4f} vs prevalence "
              f"{r['pooled']['prevalence']:.4f}")
    return {"n_bins": calibration.N_BINS, "recalibrate": args.recalibrate, "figures": [p.name for p in paths],
            **({"val_predictions_sha256": _shas(runs, VALIDATION)} if val else {})}


def run_subgroups(args, runs: dict, by_key: dict, labels: dict) -> dict:
    test = read_split(runs, args.split)
    first = next(iter(test.values()))
    require_positives(first, args.split, args.min_positives, "every subgroup")
    demo = subgroups.demographics(first, read_label_file(args.labels), args.labels)
    pairs = _pairs(by_key, labels)
    print(f"subgroups: {len(runs)} run(s) on {len(first)} {args.split} images, {args.n_resamples} "
          "patient-bootstrap resamples per group ...", flush=True)
    results = subgroups.evaluate_subgroups(test, demo, CLASSES, args.n_resamples, args.bootstrap_seed,
                                           args.min_positives, pairs)
    table = subgroups.frame(results, CLASSES)
    gaps = subgroups.gaps_frame(table)
    paired = subgroups.pairs_frame(results, CLASSES) if pairs else None
    _write_table(table, args.out / "subgroups.csv", args.synthetic)
    _write_table(gaps, args.out / "subgroups_gaps.csv", args.synthetic)
    pair_file = args.out / "subgroups_ewl_vs_wce.csv"
    if paired is None:
        pair_file.unlink(missing_ok=True)  # not an earlier report's pair beside this one
    else:
        _write_table(paired, pair_file, args.synthetic)
    text = subgroups.markdown(table, gaps, paired, title(args.synthetic, args.split, first), results)
    (args.out / "subgroups.md").write_text(text)
    drawn = set(first_per_key(by_key, labels).values())
    mean = table[(table["class"] == subgroups.MEAN) & table["run"].isin(drawn)]
    fig = beyond_figures.forest_figure(mean, f"Mean AUC per subgroup, {_data(args)}, {args.split} split"
                                       f"{_seed_note(by_key)}", args.min_positives)
    paths = beyond_figures.save(fig, args.out, "subgroups")
    print(text.split("\n## Largest gap")[0].split("\n## Mean AUC per subgroup\n")[-1].strip())
    return {"labels": portable_path(args.labels), "labels_sha256": sha256_file(args.labels),
            "pairs": [list(p) for p in pairs], "age_bands": [b[2] for b in subgroups.AGE_BANDS],
            "max_age": subgroups.MAX_AGE, "figures": [p.name for p in paths]}


def write_data_source(out: Path, what: str) -> None:
    """DIR/DATA_SOURCE.md for the synthetic set, unless table1 or another report wrote it."""
    path = Path(out) / "DATA_SOURCE.md"
    if not path.exists():
        path.write_text(f"# {SYNTHETIC_NOTE}\n\nThe `{what}` report in this folder was computed on "
                        "predictions of models trained on the project's synthetic ChestX-ray14 "
                        "(data_prep.phantom). It shows that the pipeline runs end to end; it says "
                        "nothing about real-data results.\n")


def _pairs(by_key: dict, labels: dict) -> list[tuple[str, str]]:
    """(Eq. (2) run, weighted-CE run) of every seed both DELONG_PAIR keys have."""
    a, b = DELONG_PAIR
    if a not in by_key or b not in by_key:
        return []
    return [(labels[(a, s)], labels[(b, s)]) for s in by_key[a] if s in by_key[b]]


def _data(args) -> str:
    return SYNTHETIC_NOTE if args.synthetic else "ChestX-ray14"


def _seed_note(by_key: dict) -> str:
    several = {k: next(iter(s)) for k, s in by_key.items() if len(s) > 1}
    return "" if not several else "; each key's lowest seed (" + ", ".join(
        f"{k} seed {s}" for k, s in several.items()) + ")"


def _shas(runs: dict, split: str) -> dict:
    return {k: sha256_file(predictions_path(r, split)) for k, r in runs.items()}


SUBCOMMANDS = {"operating-points": run_operating_points, "calibration": run_calibration,
               "subgroups": run_subgroups}
