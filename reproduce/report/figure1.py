"""Figure 1 of Mo & Cai (2019): ROC curves of the 14 classes, one panel per Table I run.

Caption of Figure 1: "(a) to (c): ... weighted cross entropy loss. VGG16, ResNet50, DenseNet121.
(d) ... with our proposed loss, using pre-trained DenseNet121." Called by `reproduce.report.cli`;
matplotlib (Agg backend, no display) is imported here only. With several training seeds per run,
each panel draws the lowest seed's curves (it says which) and states the sd over seeds of the
panel's mean AUC. The files are byte-identical run to run (no creation date in the PDF).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; works headless
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import patheffects  # noqa: E402
import numpy as np  # noqa: E402

from data_prep.schema import CLASSES  # noqa: E402
from reproduce import metrics  # noqa: E402
from reproduce.paper import FIGURE1_PANELS  # noqa: E402
from reproduce.report import seeds  # noqa: E402
from reproduce.report.predictions import SYNTHETIC_NOTE, arrays  # noqa: E402

PANELS = FIGURE1_PANELS  # Figure 1's panels in caption order: (key, panel title)
# Our choice: each class has its own colour AND its own line style, the same in every panel, so
# two curves never look alike even in grey print or to a colour-blind reader. Colours: tab10
# without its grey (grey is the chance line) + 5 dark ones; dash patterns: 14 distinct on/off runs.
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#bcbd22", "#17becf", "#000000", "#800000", "#000075", "#469990", "#b8860b")
_DASHES = ("-", (0, (6, 2)), (0, (1, 1.5)), (0, (6, 2, 1, 2)), (0, (12, 3)), (0, (3, 1, 1, 1, 1, 1)),
           (0, (3, 3)), (0, (10, 2, 2, 2)), (0, (1, 3)), (0, (6, 2, 1, 2, 1, 2)),
           (0, (4, 1, 4, 1, 1, 1)), (0, (12, 2, 1, 2)), (0, (2, 4, 6, 4)), (0, (8, 1, 1, 1, 1, 1, 1, 1)))
# Our choice: no creation date in the PDF, so regenerating a figure from the same predictions
# writes the same bytes (the PNG carries only the matplotlib version).
_PDF_METADATA = {"CreationDate": None}


def class_style(j: int) -> dict:
    return {"color": _COLOURS[j], "linestyle": _DASHES[j]}


def draw_panel(ax, curves: dict | None, title: str, seed_note: tuple[str, str] = ("", "")) -> None:
    """One panel: 14 ROC curves, the chance diagonal on top of them, the legend (class + AUC)
    outside the axes on the right; or an empty frame saying 'not run'."""
    ax.set_title(title, fontsize=11)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("False positive rate")
    ax.set_ylabel("True positive rate")
    ax.grid(alpha=0.3)
    if curves is None:
        ax.text(0.5, 0.5, "not run", ha="center", va="center", fontsize=16, color="0.5",
                transform=ax.transAxes)
        return
    for j, name in enumerate(CLASSES):
        c = curves[name]
        auc = "n/a" if np.isnan(c["auc"]) else f"{c['auc']:.3f}"
        ax.plot(c["fpr"], c["tpr"], linewidth=1.3, label=f"{name.replace('_', ' ')} {auc}",
                **class_style(j))
    # Drawn last, with a thin white halo: visible even where the curves hug the diagonal (panel d).
    ax.plot([0, 1], [0, 1], color="0.3", linewidth=1.1, linestyle=(0, (4, 3)), zorder=5,
            label="chance (AUC 0.5)", path_effects=[patheffects.withStroke(linewidth=2.6, foreground="white")])
    mean = metrics.mean_auc({n: curves[n]["auc"] for n in CLASSES})
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7, title_fontsize=7.5,
              title=f"AUC{seed_note[0]} (mean {mean:.3f}){seed_note[1]}", frameon=False, handlelength=3.2,
              labelspacing=0.3)


def figure1(curves_by_key: dict[str, dict], title: str, seed_notes: dict | None = None):
    """The 2×2 figure; a panel whose run is missing is drawn empty with 'not run'.

    `seed_notes`: {key: (which seed, the sd over seeds)}: texts for the legend's title."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 9.2), layout="constrained")
    for ax, (key, panel_title) in zip(axes.ravel(), PANELS):
        draw_panel(ax, curves_by_key.get(key), panel_title, (seed_notes or {}).get(key, ("", "")))
    fig.suptitle(title, fontsize=13)
    return fig


def seed_note(by_seed: dict) -> tuple[str, str]:
    """(', seed S', the mean AUC's mean ± sd over seeds) for a key with several seeds."""
    if len(by_seed) < 2:
        return "", ""
    means = [metrics.mean_auc(metrics.roc_auc_per_class(*arrays(df), CLASSES)) for df in by_seed.values()]
    spread = seeds.seed_summary(means)
    first = next(iter(by_seed))
    return (f", seed {first}", f"\nmean over seeds {seeds.seeds_text(by_seed)}: "
            f"{spread['mean']:.3f} ± {spread['sd']:.3f} sd")


def write_figure1(aligned: dict, out: Path, synthetic: bool, split: str) -> list[Path]:
    """ROC curves from each run's predictions → out/figure1.png (150 dpi) and out/figure1.pdf.

    `aligned`: {key: frame} or {key: {training seed: frame}} (the lowest seed is drawn)."""
    groups = {k: v for k, v in seeds.as_seed_groups(aligned).items() if k in dict(PANELS)}
    curves = {key: metrics.roc_curve_per_class(*arrays(next(iter(g.values()))), CLASSES)
              for key, g in groups.items()}
    notes = {key: seed_note(g) for key, g in groups.items()}
    n = len(next(iter(next(iter(seeds.as_seed_groups(aligned).values())).values())))
    data = SYNTHETIC_NOTE if synthetic else "ChestX-ray14"
    fig = figure1(curves, f"Figure 1 reproduction: ROC curves, {data}\n{split} split, {n} images",
                  notes)
    paths = [out / "figure1.png", out / "figure1.pdf"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1], metadata=_PDF_METADATA)
    plt.close(fig)
    return paths
