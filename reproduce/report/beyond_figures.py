"""The three figures beyond the AUC (matplotlib only here; Agg, files only; docs/beyond-auc.md):

- `pr_figure`: precision-recall curves of the 14 classes, one panel per run, in the layout and
  class styles of Figure 1 (`figure1.PANELS`, `figure1.class_style`); the legend gives each
  class's AUPRC beside its prevalence, the AUPRC of a model that ranks at random;
- `reliability_figure`: one panel per run, observed frequency against mean score in the equal-mass
  bins of `calibration.reliability_bins`, the 14 classes faint and their pooled curve bold, the
  head (sigmoid or softmax) in the title;
- `forest_figure`: mean AUC with its 95% CI per subgroup and run (`subgroups.frame`'s `mean`
  rows), a group without a number written as such.
`save` writes PNG (150 dpi) and PDF without a creation date, so the same inputs give the same bytes.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; works headless
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import average_precision_score, precision_recall_curve  # noqa: E402

from data_prep.schema import CLASSES  # noqa: E402
from reproduce.report.calibration import POOLED  # noqa: E402
from reproduce.report.figure1 import PANELS, class_style  # noqa: E402

PDF_METADATA = {"CreationDate": None}
RUN_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#000000")


def panels_for(keys) -> list[tuple[str, str]]:
    """Figure 1's four panels when any of its keys ran, else one panel per run (in order)."""
    keys = list(keys)
    if any(k in dict(PANELS) for k in keys):
        return list(PANELS)
    return [(k, k) for k in keys]


def _grid(n: int, size: tuple[float, float]):
    cols = 2 if n == 4 else min(n, 3)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), layout="constrained",
                             squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()[:n]


def _square(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel=xlabel, ylabel=ylabel, aspect="equal")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)


def pr_figure(data: dict, title: str, min_positives: int):
    """data: {key: (labels [N, 14], scores [N, 14])}; a key missing from `data` is 'not run'."""
    panels = panels_for(data)
    fig, axes = _grid(len(panels), (6.8, 4.8))
    for ax, (key, panel_title) in zip(axes, panels):
        _square(ax, "Recall (sensitivity)", "Precision (PPV)", panel_title)
        if key not in data:
            ax.text(0.5, 0.5, "not run", ha="center", va="center", fontsize=16, color="0.5")
            continue
        labels, scores = data[key]
        for j, name in enumerate(CLASSES):
            y, n_pos = labels[:, j], int(labels[:, j].sum())
            if min(n_pos, y.size - n_pos) < max(min_positives, 1):
                ax.plot([], [], label=f"{name.replace('_', ' ')} n<{min_positives}", **class_style(j))
                continue
            precision, recall, _ = precision_recall_curve(y, scores[:, j])
            ap = average_precision_score(y, scores[:, j])
            ax.plot(recall, precision, linewidth=1.2, drawstyle="steps-post",
                    label=f"{name.replace('_', ' ')} {ap:.3f} ({y.mean():.3f})", **class_style(j))
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7, frameon=False, handlelength=3.2,
                  title="AUPRC (prevalence = chance)", title_fontsize=7.5, labelspacing=0.3)
    fig.suptitle(title, fontsize=13)
    return fig


def reliability_figure(curves: dict, heads: dict, title: str):
    """curves: {run: {class | All: calibration.reliability_bins}}; heads: {run: 'sigmoid'|'softmax'}."""
    fig, axes = _grid(len(curves), (4.4, 4.4))
    for ax, (run, by_class) in zip(axes, curves.items()):
        _square(ax, "Mean score in bin", "Observed frequency in bin", f"{run} ({heads[run]} head)")
        ax.plot([0, 1], [0, 1], color="0.4", linestyle=(0, (4, 3)), linewidth=1, label="perfect calibration")
        for j, name in enumerate(CLASSES):
            if name in by_class:
                b = by_class[name]
                ax.plot(b["prob_pred"], b["prob_true"], alpha=0.35, linewidth=0.9, color=class_style(j)["color"])
        pooled = by_class[POOLED]
        ax.plot(pooled["prob_pred"], pooled["prob_true"], color="black", linewidth=2.4, marker="o",
                markersize=3.5, label="14 classes pooled", zorder=5)
        ax.plot([], [], color="0.5", alpha=0.5, label="each class (faint)")
        ax.legend(loc="upper left", fontsize=7.5, frameon=False)
    fig.suptitle(title, fontsize=12)
    return fig


def forest_figure(mean_rows, title: str, min_positives: int):
    """mean_rows: subgroups.frame rows with class == 'mean' (run, attribute, group, auc, CI)."""
    groups = list(dict.fromkeys(zip(mean_rows["attribute"], mean_rows["group"])))
    runs = list(dict.fromkeys(mean_rows["run"]))
    fig, ax = plt.subplots(figsize=(8.5, 0.42 * len(groups) + 1.6), layout="constrained")
    offsets = np.linspace(-0.22, 0.22, len(runs)) if len(runs) > 1 else [0.0]
    indexed = mean_rows.set_index(["run", "attribute", "group"])
    for i, (run, dy) in enumerate(zip(runs, offsets)):
        for y, g in enumerate(groups):
            r = indexed.loc[(run, *g)]
            if np.isfinite(r["auc"]):
                # a percentile interval of few patients can exclude its point: no negative arm
                arms = np.nan_to_num([[r["auc"] - r["ci_low"]], [r["ci_high"] - r["auc"]]], nan=0.0).clip(0)
                ax.errorbar(r["auc"], y + dy, xerr=arms,
                            fmt="o", color=RUN_COLOURS[i % len(RUN_COLOURS)], markersize=4, capsize=2)
    ticks = []
    for y, g in enumerate(groups):
        rows = indexed.xs(g, level=("attribute", "group"))
        k = len(rows["classes_in_mean"].iloc[0].split("|")) if rows["classes_in_mean"].iloc[0] else 0
        ticks.append(f"{g[0]}: {g[1]} ({int(rows['images'].iloc[0])} images, {k} classes)")
        if not rows["auc"].notna().any():
            why = (f"n<{min_positives}" if rows["too_few_positives"].all()
                   else "no class common to the attribute's groups")
            ax.text(0.5, y, why, transform=ax.get_yaxis_transform(), ha="center", va="center",
                    color="0.45", fontsize=8)
    ax.set_yticks(range(len(groups)), ticks)
    ax.invert_yaxis()
    ax.axvline(0.5, color="0.6", linestyle=(0, (4, 3)), linewidth=1)
    ax.set_xlabel("Mean AUC over the attribute's common classes [95% patient-bootstrap CI]")
    ax.grid(axis="x", alpha=0.3)
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=RUN_COLOURS[i % len(RUN_COLOURS)])
               for i in range(len(runs))]
    ax.legend(handles, runs, loc="lower left", bbox_to_anchor=(0, 1.0), ncols=min(len(runs), 4),
              fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    return fig


def save(fig, out: Path, stem: str) -> list[Path]:
    paths = [Path(out) / f"{stem}.png", Path(out) / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1], metadata=PDF_METADATA)
    plt.close(fig)
    return paths
