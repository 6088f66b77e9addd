"""AUC by sex, age band, view and visit: does a model rank as well for women as for men, for
bedside (AP) films as for PA, for the elderly (Larrazabal et al. 2020; Seyyed-Kalantari et al.
2020, 2021; Oakden-Rayner et al. 2020)? And is Eq. (2)'s change against weighted CE the same in
every subgroup? (docs/beyond-auc.md)

- `demographics`: each predicted image's sex, age band, view and visit from the label file
  (`data_prep.labels.read_label_file`); images missing there or with another patient are refused.
- `subgroup_masks`: the groups (our choices): all images; sex female / male; age 0–19, 20–39,
  40–59, 60–79, 80+ (CheXclusion's bands; ages above MAX_AGE are recording errors of NIH's 2017
  release and are left out of the bands); view PA / AP; visit first image (`Follow-up #` 0) /
  follow-up.
- `evaluate_subgroups`: per group and run, each class's AUC with a patient-bootstrap CI
  (`metrics.bootstrap_auc_resamples`, resampling the group's own patients) and the positives
  behind it; a class with fewer than `min_positives` positives or negatives in the group is shown
  as such, never as a number. The group's mean AUC is over the attribute's common classes: those
  shown in every group of the attribute that shows any, so two groups' means average the same
  findings. For each (Eq. (2), weighted CE) pair: the paired difference per class and of the mean,
  with a CI over the same resamples, and DeLong's p per class.
Pure NumPy / pandas; no TensorFlow, no printing.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from reproduce import metrics
from reproduce.report.predictions import ReportError, arrays

MAX_AGE = 100  # our choice: the oldest plausible age; above it NIH's 2017 release has a few (errors)
AGE_BANDS = ((0, 19, "0-19"), (20, 39, "20-39"), (40, 59, "40-59"), (60, 79, "60-79"), (80, MAX_AGE, "80+"))
SEXES = {"F": "female", "M": "male"}
VIEWS = ("PA", "AP")
VISITS = ("first image", "follow-up")
ATTRIBUTES = ("all", "sex", "age", "view", "visit")
MEAN = "mean"


def demographics(frame: pd.DataFrame, labels: pd.DataFrame, source) -> pd.DataFrame:
    """sex, age_band, view, visit (one row per row of `frame`, same order) from the label file's
    rows of its images. Refuses images missing from the label file and a different patient id."""
    table = labels.set_index("image_index")
    missing = ~frame["image_index"].isin(table.index)
    if missing.any():
        raise ReportError(f"{int(missing.sum())} of the {len(frame)} predicted images are not in {source}, "
                          f"e.g. {frame['image_index'][missing].iloc[0]} (another label file?)")
    rows = table.loc[frame["image_index"]].reset_index()
    differ = rows["patient_id"].to_numpy() != frame["patient_id"].to_numpy()
    if differ.any():
        i = int(np.flatnonzero(differ)[0])
        raise ReportError(f"{rows['image_index'][i]}: patient {frame['patient_id'].iloc[i]} in the predictions "
                          f"but {rows['patient_id'][i]} in {source}")
    age = rows["age"].to_numpy()
    band = np.full(len(rows), None, dtype=object)
    for low, high, name in AGE_BANDS:
        band[(age >= low) & (age <= high)] = name
    return pd.DataFrame({"sex": rows["gender"].map(SEXES), "age": band, "view": rows["view"],
                         "visit": np.where(rows["follow_up"].to_numpy() == 0, VISITS[0], VISITS[1]),
                         "age_unknown": age > MAX_AGE})


def subgroup_masks(demo: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    """{(attribute, group): boolean mask over the images}, in ATTRIBUTES order."""
    groups = {("all", "all images"): np.ones(len(demo), dtype=bool)}
    for attribute, names in (("sex", SEXES.values()), ("age", [b[2] for b in AGE_BANDS]),
                             ("view", VIEWS), ("visit", VISITS)):
        for name in names:
            groups[(attribute, name)] = (demo[attribute] == name).to_numpy()
    return groups


def shown_classes(labels, class_names, min_positives: int) -> list[str]:
    """Classes with at least min_positives positives and as many negatives in these labels."""
    pos = np.asarray(labels).sum(axis=0)
    neg = len(labels) - pos
    return [c for j, c in enumerate(class_names) if min(pos[j], neg[j]) >= max(min_positives, 1)]


def common_classes(shown: dict, attribute: str, class_names) -> list[str]:
    """The classes shown in every group of `attribute` that shows any (class order)."""
    sets = [set(v) for (a, _), v in shown.items() if a == attribute and v]
    return [c for c in class_names if sets and all(c in s for s in sets)]


def _summary(boot, point, names, mean_names, alpha) -> dict:
    """Per class {auc, ci_low, ci_high}; mean over mean_names with its CI (complete resamples)."""
    out = {"per_class": {}, "mean": {"auc": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}}
    for j, name in enumerate(names):
        low, high, _ = metrics.percentile_ci(boot[:, j], alpha)
        out["per_class"][name] = {"auc": point[j], "ci_low": low, "ci_high": high}
    cols = [names.index(c) for c in mean_names]
    if cols:
        means = boot[:, cols].mean(axis=1)  # NaN where a class is undefined in a resample
        low, high, _ = metrics.percentile_ci(means, alpha)
        out["mean"] = {"auc": float(np.mean(np.asarray(point)[cols])), "ci_low": low, "ci_high": high}
    return out


def _group_boot(frame, mask, names, class_names, n_resamples, seed):
    """(AUC point per shown class, [B, shown] bootstrap AUCs) of one run in one group."""
    if not names:  # nothing to resample (a group without enough positives, or without images)
        return [], np.zeros((n_resamples, 0))
    labels, scores = arrays(frame)
    cols = [class_names.index(c) for c in names]
    y, s = labels[mask][:, cols], scores[mask][:, cols]
    point = metrics.roc_auc_per_class(y, s, names)
    boot, _ = metrics.bootstrap_auc_resamples(y, s, frame["patient_id"].to_numpy()[mask], names, point,
                                              n_resamples, seed)
    return [point[n] for n in names], boot


def evaluate_subgroups(frames: dict, demo: pd.DataFrame, class_names, n_resamples: int, seed: int,
                       min_positives: int, pairs=(), alpha: float = 0.05) -> dict:
    """frames: {run: predictions frame} (aligned, rows as `demo`); pairs: [(run_a, run_b)] for the
    paired difference a − b. Returns {"groups": {(attribute, group): {images, patients, positives,
    shown, mean_classes}}, "runs": {run: {(attribute, group): summary}}, "pairs": {(a, b): {...}}}."""
    class_names = list(class_names)
    first = next(iter(frames.values()))
    labels, patients = arrays(first)[0], first["patient_id"].to_numpy()
    masks = subgroup_masks(demo)
    shown = {g: shown_classes(labels[m], class_names, min_positives) for g, m in masks.items()}
    groups = {g: {"images": int(m.sum()), "patients": int(np.unique(patients[m]).size),
                  "positives": dict(zip(class_names, labels[m].sum(axis=0).astype(int).tolist())),
                  "shown": shown[g], "mean_classes": common_classes(shown, g[0], class_names) if shown[g] else []}
              for g, m in masks.items()}
    results = {"groups": groups, "runs": {r: {} for r in frames}, "pairs": {p: {} for p in pairs},
               "age_unknown": int(demo["age_unknown"].sum()), "min_positives": min_positives}
    for g, mask in masks.items():
        names = shown[g]
        boots = {r: _group_boot(f, mask, names, class_names, n_resamples, seed) for r, f in frames.items()}
        for run, (point, boot) in boots.items():
            results["runs"][run][g] = _summary(boot, point, names, groups[g]["mean_classes"], alpha)
        for a, b in pairs:
            results["pairs"][(a, b)][g] = _paired(frames[a], frames[b], mask, names, class_names,
                                                  boots[a], boots[b], groups[g]["mean_classes"], alpha)
    return results


def _paired(frame_a, frame_b, mask, names, class_names, boot_a, boot_b, mean_names, alpha) -> dict:
    """a − b per shown class (bootstrap CI over the same resamples, DeLong p) and of the mean."""
    diff = _summary(boot_a[1] - boot_b[1], np.subtract(boot_a[0], boot_b[0]), names, mean_names, alpha)
    labels = arrays(frame_a)[0][mask]
    for name in names:
        j = class_names.index(name)
        test = metrics.delong_test(labels[:, j], arrays(frame_a)[1][mask, j], arrays(frame_b)[1][mask, j])
        diff["per_class"][name]["p_value"] = test["p_value"]
    return diff


# --- the tables (subgroups.csv, subgroups_gaps.csv, subgroups_ewl_vs_wce.csv, subgroups.md) ----------
def frame(results: dict, class_names) -> pd.DataFrame:
    """One row per (run, attribute, group, class then `mean`): images, patients, positives, AUC and
    CI (empty with too_few_positives), and for `mean` the classes it averages."""
    rows = []
    for run, by_group in results["runs"].items():
        for g, summary in by_group.items():
            info = results["groups"][g]
            base = {"run": run, "attribute": g[0], "group": g[1], "images": info["images"],
                    "patients": info["patients"]}
            for name in class_names:
                cell = summary["per_class"].get(name, {})
                rows.append(base | {"class": name, "positives": info["positives"][name], **_auc(cell),
                                    "too_few_positives": name not in info["shown"], "classes_in_mean": ""})
            mean = info["mean_classes"]
            # no number for the mean: too few positives of every class (flagged), or no class
            # common to the attribute's groups (not flagged; classes_in_mean empty)
            rows.append(base | {"class": MEAN, "positives": sum(info["positives"][c] for c in mean),
                                **_auc(summary["mean"] if mean else {}), "too_few_positives": not info["shown"],
                                "classes_in_mean": "|".join(mean)})
    return pd.DataFrame(rows)


def _auc(cell: dict) -> dict:
    return {k: cell.get(k, float("nan")) for k in ("auc", "ci_low", "ci_high")}


def gaps_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Per (run, class incl. mean, attribute): the groups with a number, the highest and the lowest
    AUC and their gap (rows only where at least two groups have a number)."""
    rows = []
    shown = table[(table["attribute"] != "all") & table["auc"].notna()]
    for (run, name, attribute), g in shown.groupby(["run", "class", "attribute"], sort=False):
        if len(g) < 2:
            continue
        hi, lo = g.loc[g["auc"].idxmax()], g.loc[g["auc"].idxmin()]
        rows.append({"run": run, "class": name, "attribute": attribute, "groups_shown": len(g),
                     "highest_group": hi["group"], "highest_auc": hi["auc"], "lowest_group": lo["group"],
                     "lowest_auc": lo["auc"], "gap": hi["auc"] - lo["auc"]})
    return pd.DataFrame(rows, columns=["run", "class", "attribute", "groups_shown", "highest_group",
                                       "highest_auc", "lowest_group", "lowest_auc", "gap"])


def pairs_frame(results: dict, class_names) -> pd.DataFrame:
    """One row per (pair, attribute, group, class then `mean`): AUC(a) − AUC(b) with its CI over
    the same patient resamples, DeLong p per class; empty where too few positives."""
    rows = []
    for (a, b), by_group in results["pairs"].items():
        for g, diff in by_group.items():
            info = results["groups"][g]
            for name in (*class_names, MEAN):
                cell = diff["mean"] if name == MEAN else diff["per_class"].get(name, {})
                few = not info["shown"] if name == MEAN else name not in info["shown"]
                rows.append({"run_a": a, "run_b": b, "attribute": g[0], "group": g[1], "class": name,
                             "positives": (sum(info["positives"][c] for c in info["mean_classes"])
                                           if name == MEAN else info["positives"][name]),
                             "difference": cell.get("auc", float("nan")),
                             "ci_low": cell.get("ci_low", float("nan")),
                             "ci_high": cell.get("ci_high", float("nan")),
                             "delong_p": cell.get("p_value", float("nan")), "too_few_positives": few})
    return pd.DataFrame(rows)


NO_COMMON = "no common class"


def _cell(r, few: str, key: str = "auc", signed: bool = False) -> str:
    if r["too_few_positives"] or not np.isfinite(r[key]):
        return few if r["too_few_positives"] else NO_COMMON
    fmt = "{:+.3f}" if signed else "{:.3f}"
    return f"{fmt.format(r[key])} [{fmt.format(r['ci_low'])}, {fmt.format(r['ci_high'])}]"


def markdown(table: pd.DataFrame, gaps: pd.DataFrame, pairs: pd.DataFrame | None, title: str,
             results: dict) -> str:
    """subgroups.md: mean AUC per group and run, the largest gaps, the paired difference, then
    every class's AUC per group."""
    few = f"n<{results['min_positives']}"
    runs = list(dict.fromkeys(table["run"]))
    mean = table[table["class"] == MEAN]
    lines = [f"# Subgroups — {title}", "",
             f"Cells: AUC [95% patient-bootstrap CI]; `{few}`: fewer than {results['min_positives']} "
             "positives (or negatives) in the group, so no number. A group's mean is over its "
             "attribute's common classes (shown in every group of the attribute that shows any). "
             f"Images with an age above {MAX_AGE} (recording errors): {results['age_unknown']}, in no "
             "age band. Definitions: docs/beyond-auc.md.", "", "## Mean AUC per subgroup", "",
             "| attribute | group | images | patients | classes in the mean | " + " | ".join(runs) + " |",
             "|---|---|---|---|---|" + "---|" * len(runs)]
    for (attribute, group), g in mean.groupby(["attribute", "group"], sort=False):
        r0 = g.iloc[0]
        k = len(r0["classes_in_mean"].split("|")) if r0["classes_in_mean"] else 0
        lines.append(f"| {attribute} | {group} | {r0['images']} | {r0['patients']} | {k} | "
                     + " | ".join(_cell(r, few) for _, r in g.iterrows()) + " |")
    lines += ["", "## Largest gap between the groups of an attribute", "",
              "| Pathology | run | attribute | gap | highest | lowest |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['class']} | {r['run']} | {r['attribute']} | {r['gap']:.3f} | {r['highest_group']} "
              f"{r['highest_auc']:.3f} | {r['lowest_group']} {r['lowest_auc']:.3f} |" for _, r in gaps.iterrows()]
    if pairs is not None and len(pairs):
        lines += _pairs_markdown(pairs, few)
    lines += ["", "## AUC per class and subgroup", "",
              "| Pathology | attribute | group | positives | " + " | ".join(runs) + " |",
              "|---|---|---|---|" + "---|" * len(runs)]
    per_class = table[table["class"] != MEAN]
    for (name, attribute, group), g in per_class.groupby(["class", "attribute", "group"], sort=False):
        lines.append(f"| {name} | {attribute} | {group} | {g.iloc[0]['positives']} | "
                     + " | ".join(_cell(r, few) for _, r in g.iterrows()) + " |")
    return "\n".join(lines) + "\n"


def _pairs_markdown(pairs: pd.DataFrame, few: str) -> list[str]:
    lines = []
    for (a, b), p in pairs.groupby(["run_a", "run_b"], sort=False):
        lines += ["", f"## {a} − {b} per subgroup", "",
                  "Mean: difference of the mean AUCs [95% CI over the same patient resamples]; "
                  "classes: those with DeLong p < 0.05 (sign of the difference).", "",
                  "| attribute | group | mean difference | classes with DeLong p < 0.05 |", "|---|---|---|---|"]
        for (attribute, group), g in p.groupby(["attribute", "group"], sort=False):
            m = g[g["class"] == MEAN].iloc[0]
            sig = g[(g["class"] != MEAN) & (g["delong_p"] < 0.05)]
            named = ", ".join(f"{r['class']} ({'+' if r['difference'] > 0 else '−'})" for _, r in sig.iterrows())
            lines.append(f"| {attribute} | {group} | {_cell(m, few, 'difference', True)} | {named or 'none'} |")
    return lines
