"""Table I of Mo & Cai (2019) from prediction CSVs: per-class AUC beside the paper's values.

table1.csv has exactly the layout of the paper's Table I as transcribed in `paper_table1.csv`
(package data beside this module), each cell our AUC — with several training seeds per run, the
mean over seeds. table1_seeds.csv has every run's own AUC (one row per pathology, run, seed);
table1_comparison.csv adds patient-bootstrap CIs, the sd over seeds, ours − paper and the DeLong p
of densenet121_ewl vs densenet121_wce; table1_ewl_vs_wce.csv is that difference paired by seed
(`seeds.paired_difference`); table1.md is the same for reading, with the data source in its title
(and, for the synthetic set, in DATA_SOURCE.md beside them).
"""
from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import pandas as pd

from data_prep.schema import CLASSES
from reproduce import metrics
from reproduce.paper import DELONG_PAIR  # §IV.D: the proposed loss vs its baseline
from reproduce.report import seeds
from reproduce.report.predictions import SYNTHETIC_NOTE, ReportError, arrays

PAPER_TABLE = "paper_table1.csv"  # package data of reproduce.report
AVE = "AVE"  # Table I's last row: unweighted mean over the 14 classes
ROWS = (*CLASSES, AVE)
PAIR_FILE = "table1_ewl_vs_wce.csv"


def read_paper_table(path: Path | None = None) -> pd.DataFrame:
    """The paper's Table I as printed (package data), or a transcription at `path`."""
    if path is None:
        with resources.files("reproduce.report").joinpath(PAPER_TABLE).open() as fh:
            return pd.read_csv(fh, index_col="pathology")
    if not Path(path).is_file():
        raise ReportError(f"{path}: paper Table I transcription not found")
    return pd.read_csv(path, index_col="pathology")


def evaluate_runs(aligned: dict, n_resamples: int, seed: int) -> dict:
    """`aligned`: {key: frame} (one run per key) or {key: {training seed: frame}}.

    Per key: AUC per class and AVE, each the mean over seeds with its sd and the patient-bootstrap
    CI of that mean ("runs"); every seed's own values ("seeds"); DeLong of DELONG_PAIR for every
    seed both have, and their difference paired by seed ("paired"), when both keys are given."""
    groups = seeds.as_seed_groups(aligned)
    first = next(iter(next(iter(groups.values())).values()))
    labels, patients = arrays(first)[0], first["patient_id"].to_numpy()
    results = {"runs": {}, "seeds": {}, "delong": None, "delong_by_seed": {}, "paired": None,
               "n_images": int(len(first)), "n_patients": int(pd.Series(patients).nunique()),
               "positives": {c: int(labels[:, j].sum()) for j, c in enumerate(CLASSES)},
               "several_seeds": any(len(g) > 1 for g in groups.values())}
    for key, by_seed in groups.items():
        boot = metrics.bootstrap_auc_ci_runs(labels, [arrays(df)[1] for df in by_seed.values()],
                                             patients, CLASSES, n_resamples=n_resamples, seed=seed)
        results["seeds"][key] = dict(zip(by_seed, boot["runs"]))
        results["runs"][key] = _with_spread(boot["mean_over_runs"], boot["runs"])
    if all(k in groups for k in DELONG_PAIR):
        _compare_pair(results, groups, labels)
    return results


def _with_spread(mean: dict, runs: list[dict]) -> dict:
    """The seed-mean bootstrap result with `sd_over_seeds`, `n_seeds`, min/max in every cell."""
    for name in ROWS:
        cell = mean["mean"] if name == AVE else mean["per_class"][name]
        values = [r["mean"]["auc"] if name == AVE else r["per_class"][name]["auc"] for r in runs]
        s = seeds.seed_summary(values)
        cell.update(sd_over_seeds=s["sd"], n_seeds=s["n"], min_over_seeds=s["min"],
                    max_over_seeds=s["max"])
    return mean


def seed_auc(results: dict, key: str, seed, name: str) -> dict:
    """One run's {auc, ci_low, ci_high, ...} for a class or AVE."""
    run = results["seeds"][key][seed]
    return run["mean"] if name == AVE else run["per_class"][name]


def _compare_pair(results: dict, groups: dict, labels) -> None:
    """DeLong of ewl vs wce per seed both have; mean paired difference, t-interval, agreement."""
    a, b = DELONG_PAIR
    common = [s for s in groups[a] if s in groups[b]]
    results["delong_by_seed"] = {
        s: metrics.delong_per_class(labels, arrays(groups[a][s])[1], arrays(groups[b][s])[1], CLASSES)
        for s in common}
    if len(groups[a]) == len(groups[b]) == len(common) == 1:  # one run each: today's single p
        results["delong"] = results["delong_by_seed"][common[0]]
    rows = {}
    for name in ROWS:
        diff = seeds.paired_difference([seed_auc(results, a, s, name)["auc"] for s in common],
                                       [seed_auc(results, b, s, name)["auc"] for s in common])
        if name != AVE:  # DeLong compares one class's two AUCs; there is none for their mean
            diff.update(seeds.delong_agreement([results["delong_by_seed"][s][name] for s in common],
                                               diff["mean_difference"]))
        rows[name] = diff
    results["paired"] = {"seeds": common, "rows": rows}


# --- frames (the CSV files) ------------------------------------------------------------------------
def table1_frame(results: dict) -> pd.DataFrame:
    """Ours in Table I's layout: rows = 14 classes + AVE, columns = run keys (4-decimal values,
    the mean over seeds when a key has several)."""
    data = {}
    for key, r in results["runs"].items():
        data[key] = [r["per_class"][c]["auc"] for c in CLASSES] + [r["mean"]["auc"]]
    frame = pd.DataFrame(data, index=pd.Index(list(ROWS), name="pathology"))
    return frame.round(4)


def comparison_frame(results: dict, paper: pd.DataFrame) -> pd.DataFrame:
    """Long table: one row per (pathology, run): paper, ours (mean over seeds), sd over seeds,
    n seeds, CI of ours, ours − paper, DeLong p (one run per key only)."""
    rows = []
    for key, r in results["runs"].items():
        for name in ROWS:
            ours = r["mean"] if name == AVE else r["per_class"][name]
            ref = float(paper.loc[name, key]) if key in paper.columns else float("nan")
            p = float("nan")
            if results["delong"] is not None and name != AVE and key in DELONG_PAIR:
                p = results["delong"][name]["p_value"]
            rows.append({"pathology": name, "run": key, "paper": ref, "ours": ours["auc"],
                         "sd_over_seeds": ours["sd_over_seeds"], "n_seeds": ours["n_seeds"],
                         "ci_low": ours["ci_low"], "ci_high": ours["ci_high"],
                         "ours_minus_paper": ours["auc"] - ref, "delong_p_ewl_vs_wce": p,
                         "n_resamples_used": ours["n_resamples_used"]})
    return pd.DataFrame(rows)


def seeds_frame(results: dict) -> pd.DataFrame:
    """One row per (pathology incl. AVE, run, seed): that run's AUC, CI, DeLong p of ewl vs wce."""
    rows = []
    for name in ROWS:
        for key, by_seed in results["seeds"].items():
            for seed in by_seed:
                cell = seed_auc(results, key, seed, name)
                tests = results["delong_by_seed"].get(seed) if key in DELONG_PAIR else None
                rows.append({"pathology": name, "run": key, "seed": seed, "auc": cell["auc"],
                             "ci_low": cell["ci_low"], "ci_high": cell["ci_high"],
                             "delong_p_ewl_vs_wce": tests[name]["p_value"] if tests and name != AVE
                             else float("nan")})
    frame = pd.DataFrame(rows)
    frame["seed"] = frame["seed"].astype("Int64")  # a run without a recorded seed: empty cell
    return frame


def paired_frame(results: dict) -> pd.DataFrame:
    """One row per pathology (incl. AVE): densenet121_ewl − densenet121_wce paired by seed."""
    paired = results["paired"]
    text = seeds.seeds_text(paired["seeds"]).replace(",", "")  # "0 1 2"
    frame = pd.DataFrame([{"pathology": name, "seeds": text, **row} for name, row in paired["rows"].items()])
    for column in [c for c in frame.columns if c.startswith(("n_", "delong_n_"))]:
        frame[column] = frame[column].astype("Int64")  # AVE has no DeLong count: empty cell
    return frame


# --- Markdown ------------------------------------------------------------------------------------
def source_line(synthetic: bool, split: str, results: dict) -> str:
    data = SYNTHETIC_NOTE if synthetic else "ChestX-ray14 (NIH)"
    return f"data: {data}; split: {split}; {results['n_images']} images, {results['n_patients']} patients"


def _num(value: float, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _auc_text(value: float, name: str, results: dict) -> str:
    """4 decimals, or why there is no AUC: a test split with no positives (or no negatives)."""
    if not math.isnan(value) or name == AVE:
        return _num(value)
    positives = results["positives"][name]
    return ("n/a (no positives)" if positives == 0 else
            "n/a (no negatives)" if positives == results["n_images"] else "n/a")


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(cells) + " |" for cells in rows])


def _cell(results: dict, key: str, name: str, paper: pd.DataFrame) -> tuple[dict, str]:
    """A key's result for one Table I row, and the paper's value as ' (0.dddd)' when it has one."""
    r = results["runs"][key]
    ref = f" ({paper.loc[name, key]:.4f})" if key in paper.columns else ""
    return (r["mean"] if name == AVE else r["per_class"][name]), ref


def _single_markdown(results: dict, paper: pd.DataFrame) -> list[str]:
    """One run per key: 'ours [95% CI] (paper)' per cell, DeLong p of ewl vs wce if both ran."""
    keys = list(results["runs"])
    head = ["Pathology"] + keys + (["DeLong p (ewl vs wce)"] if results["delong"] else [])
    rows = []
    for name in ROWS:
        cells = [name]
        for key in keys:
            v, ref = _cell(results, key, name, paper)
            ci = f" [{_num(v['ci_low'])}, {_num(v['ci_high'])}]" if not math.isnan(v["auc"]) else ""
            cells.append(f"{_auc_text(v['auc'], name, results)}{ci}{ref}")
        if results["delong"]:
            p = results["delong"].get(name, {}).get("p_value", float("nan"))
            cells.append("" if name == AVE else "n/a" if math.isnan(p) else f"{p:.3g}")
        rows.append(cells)
    return ["Cells: our AUC [95% patient-bootstrap CI] (paper's Table I value).", "",
            *_table(head, rows)]


def _seeds_markdown(results: dict, paper: pd.DataFrame) -> list[str]:
    """Several seeds: 'mean ± sd (paper)' per cell, the spread of AVE, the paired comparison."""
    keys = list(results["runs"])
    head = ["Pathology"] + [f"{k} (seeds {seeds.seeds_text(results['seeds'][k])})" for k in keys]
    rows = []
    for name in ROWS:
        cells = [name]
        for key in keys:
            v, ref = _cell(results, key, name, paper)
            sd = f" ± {_num(v['sd_over_seeds'])}" if v["n_seeds"] > 1 and not math.isnan(v["auc"]) else ""
            cells.append(f"{_auc_text(v['auc'], name, results)}{sd}{ref}")
        rows.append(cells)
    return ["Cells: our AUC, mean ± sd over training seeds (paper's Table I value); sd is the "
            "sample standard deviation (n − 1). Each seed's AUC is in table1_seeds.csv, the 95% "
            "patient-bootstrap CI of each mean in table1_comparison.csv.", "",
            *_table(head, rows), "", *_spread_markdown(results), *_paired_markdown(results)]


def _spread_markdown(results: dict) -> list[str]:
    rows = []
    for key, by_seed in results["seeds"].items():
        ave = results["runs"][key]["mean"]
        per_seed = ", ".join(_num(r["mean"]["auc"]) for r in by_seed.values())
        rows.append([key, seeds.seeds_text(by_seed), per_seed,
                     f"{_num(ave['auc'])} ± {_num(ave['sd_over_seeds'])}",
                     _num(ave["max_over_seeds"] - ave["min_over_seeds"])])
    return ["## Spread over training seeds of the mean AUC (AVE)", "",
            *_table(["run", "seeds", "AVE of each seed", "mean ± sd", "range (max − min)"], rows), ""]


def _paired_markdown(results: dict) -> list[str]:
    if results["paired"] is None:
        return []
    a, b = DELONG_PAIR
    common = results["paired"]["seeds"]
    rows = []
    for name, d in results["paired"]["rows"].items():
        agree = "" if name == AVE else (f"{d['delong_n_significant_same_sign']} of {d['delong_n_tests']}"
                                        f" ({d['delong_n_significant_opposite']} opposite)")
        rows.append([name, f"{_num(d['mean_difference'], True)} [{_num(d['t_low'], True)}, "
                           f"{_num(d['t_high'], True)}]", agree])
    return [f"## {a} − {b}, paired by seed (seeds {seeds.seeds_text(common)})", "",
            f"Mean of the per-seed AUC differences [95% Student-t interval, {len(common)} pairs, "
            f"{max(len(common) - 1, 0)} degrees of freedom; n/a with one pair]. DeLong: the seeds "
            "whose two-sided test has p < 0.05 with the same sign as the mean difference (with the "
            "opposite sign in brackets); none for AVE.", "",
            *_table(["Pathology", "mean difference [95% t-interval]", "DeLong p < 0.05, same sign"], rows)]


def table1_markdown(results: dict, paper: pd.DataFrame, synthetic: bool, split: str) -> str:
    body = (_seeds_markdown if results["several_seeds"] else _single_markdown)(results, paper)
    return "\n".join([f"# Table I reproduction — {source_line(synthetic, split, results)}", "", *body]) + "\n"


# --- files ---------------------------------------------------------------------------------------
def _write_csv(frame: pd.DataFrame, path: Path, index: bool) -> None:
    # NaN (an AUC of a class without positives) is an empty cell, never the text "nan".
    frame.to_csv(path, index=index, float_format="%.4f", na_rep="", lineterminator="\n")


def write_table1(results: dict, paper: pd.DataFrame, out: Path, synthetic: bool, split: str) -> str:
    # table1.csv keeps paper_table1.csv's exact layout, so the source goes in a column of the
    # comparison, in table1.md's title, and (synthetic) in DATA_SOURCE.md beside them.
    data = "synthetic" if synthetic else "ChestX-ray14"
    _write_csv(table1_frame(results), out / "table1.csv", index=True)
    for name, frame in (("table1_comparison.csv", comparison_frame(results, paper)),
                        ("table1_seeds.csv", seeds_frame(results)),
                        (PAIR_FILE, paired_frame(results) if results["paired"] else None)):
        if frame is None:
            (out / name).unlink(missing_ok=True)  # not an earlier report's pair beside this one
            continue
        frame.insert(0, "data", data)
        _write_csv(frame, out / name, index=False)
    text = table1_markdown(results, paper, synthetic, split)
    (out / "table1.md").write_text(text)
    if synthetic:
        (out / "DATA_SOURCE.md").write_text(
            f"# {SYNTHETIC_NOTE}\n\nEvery table and figure in this folder was computed on the "
            "project's synthetic ChestX-ray14 (data_prep.phantom: drawn images labelled with real "
            "NIH label rows). It shows that the pipeline runs end to end; it says nothing about "
            f"the paper's real-data numbers.\n\n{source_line(synthetic, split, results)}\n")
    return text
