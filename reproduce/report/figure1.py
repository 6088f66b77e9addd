"""Figure 1 of Mo & Cai (2019): ROC curves of the 14 classes, one panel per Table I run.

Caption of Figure 1: "(a) to (c): ... weighted cross entropy loss. VGG16, ResNet50, DenseNet121.
(d) ... with our proposed loss, using pre-trained DenseNet121." Called by `reproduce.report.cli`;
matplotlib (Agg backend, no display) is imported here only.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; works headless
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from data_prep.schema import CLASSES  # noqa: E402
from reproduce import metrics  # noqa: E402
from reproduce.report.predictions import SYNTHETIC_NOTE, arrays  # noqa: E402

# Figure 1's panels in caption order: (key, panel title).
PANELS = (
    ("vgg16_wce", "(a) VGG16, weighted CE"),
    ("resnet50_wce", "(b) ResNet50, weighted CE"),
    ("densenet121_wce", "(c) DenseNet121, weighted CE"),
    ("densenet121_ewl", "(d) DenseNet121, proposed loss (Eq. 2)"),
)
# Our choice for 14 curves: 7 colours of the colour-blind-safe tab10 × 2 line styles, so that no two
# classes share both colour and style; the legend lists each class with its AUC.
_COLOURS = [plt.get_cmap("tab10")(i) for i in (0, 1, 2, 3, 4, 6, 9)]
_STYLES = ("-", "--")


def class_style(j: int) -> dict:
    return {"color": _COLOURS[j % len(_COLOURS)], "linestyle": _STYLES[j // len(_COLOURS)]}


def draw_panel(ax, curves: dict | None, title: str) -> None:
    """One panel: 14 ROC curves + chance diagonal, or an empty frame saying 'not run'."""
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
    ax.plot([0, 1], [0, 1], color="0.6", linewidth=0.8, linestyle=":", label="chance (0.5)")
    for j, name in enumerate(CLASSES):
        c = curves[name]
        label = f"{name.replace('_', ' ')} {c['auc']:.3f}"
        ax.plot(c["fpr"], c["tpr"], linewidth=1.3, label=label, **class_style(j))
    mean = np.nanmean([curves[n]["auc"] for n in CLASSES])
    ax.legend(loc="lower right", fontsize=7, title=f"AUC (mean {mean:.3f})", title_fontsize=7.5,
              framealpha=0.9, handlelength=2.2, labelspacing=0.25)


def figure1(curves_by_key: dict[str, dict], title: str):
    """The 2×2 figure; a panel whose run is missing is drawn empty with 'not run'."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 11))
    for ax, (key, panel_title) in zip(axes.ravel(), PANELS):
        draw_panel(ax, curves_by_key.get(key), panel_title)
    fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    return fig


def write_figure1(aligned: dict[str, pd.DataFrame], out: Path, synthetic: bool, split: str) -> list[Path]:
    """ROC curves from each run's predictions → out/figure1.png (150 dpi) and out/figure1.pdf."""
    curves = {key: metrics.roc_curve_per_class(*arrays(df), CLASSES)
              for key, df in aligned.items() if key in dict(PANELS)}
    n = len(next(iter(aligned.values())))
    data = SYNTHETIC_NOTE if synthetic else "ChestX-ray14"
    fig = figure1(curves, f"Figure 1 reproduction: ROC curves, {data}\n{split} split, {n} images")
    paths = [out / "figure1.png", out / "figure1.pdf"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths
