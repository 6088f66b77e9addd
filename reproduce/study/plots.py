"""The figures of the Eq. (2) study: the per-class term of Eq. (2) against cross-entropy, and the
label relations (real label file vs each loss's scores). matplotlib only here (Agg, no display).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data_prep.schema import CLASSES


def plot_ewl_term(path: Path) -> None:
    """−p log p (Eq. (2), one true class) vs −log p (CE): value, d/dp, and d/dz of the true
    class's own logit under a 14-way softmax (descent lowers the logit where this is > 0)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = np.linspace(1e-3, 1 - 1e-3, 999)
    curves = [("value", -p * np.log(p), -np.log(p), (0, 2)),
              ("d/dp", -(1 + np.log(p)), -1 / p, (-2, 2)),
              ("d/dz_c (own logit, 14-way softmax)", -(1 + np.log(p)) * p * (1 - p), -(1 - p), (-1.05, 0.3))]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (title, ewl, ce, ylim) in zip(axes, curves):
        ax.axvspan(0, 1 / np.e, color="tab:red", alpha=0.07, lw=0)
        ax.plot(p, ewl, label="Eq. (2) term  −p log p")
        ax.plot(p, ce, "--", label="cross-entropy  −log p")
        ax.axhline(0, color="k", lw=0.6)
        for x, name in ((1 / np.e, "1/e"), (1 / 14, "1/14")):
            ax.axvline(x, color="gray", ls=":")
            ax.text(x, 0.02, name, transform=ax.get_xaxis_transform(), ha="left", fontsize=8)
        ax.set(title=title, xlabel="p of a true class", ylim=ylim)
    axes[0].legend(fontsize=8)
    fig.suptitle("Eq. (2) per true class: in the shaded region p < 1/e, gradient descent LOWERS p"
                 " (d/dz_c > 0); cross-entropy always raises it")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


SHORT = ("Atel", "Card", "Cons", "Edem", "Effu", "Emph", "Fibr", "Hern", "Infi", "Mass", "Nodu",
         "PlTh", "Pnia", "Ptx")  # axis labels, CLASSES order


def _heatmap(ax, matrix, title):
    """One matrix on the figure's one colour scale (−1 … 1, `_SCALE`); the diagonal is blank."""
    off = np.where(np.eye(len(CLASSES), dtype=bool), np.nan, matrix)  # diagonal is 1 by definition
    im = ax.imshow(off, **_SCALE)
    ax.set_title(title, fontsize=9)
    ax.set_xticks(range(len(CLASSES)), SHORT, rotation=90, fontsize=6)
    ax.set_yticks(range(len(CLASSES)), SHORT, fontsize=6)
    return im


# Our choice: one colour scale for every panel, so equal colours mean equal values everywhere
# (the real-label phi values are small, |phi| <= ~0.2, and look pale on it: that is the point).
_SCALE = {"cmap": "RdBu_r", "vmin": -1.0, "vmax": 1.0}
CAPTION = ("r = Pearson correlation between a panel's 91 off-diagonal entries and those of the REAL "
           "label file's phi (top left). Reference bar: r of the phi of the test split's own labels, "
           "i.e. what score correlations mirroring the test labels exactly would reach.\n"
           "One colour scale (−1 … 1) for every panel; the diagonal (1 by definition) is blank.")


def plot_relations(label_phi, matrices: dict, rows: list, path: Path, data_note: str) -> None:
    """`relations_figure` → `path` (PNG, 110 dpi)."""
    import matplotlib.pyplot as plt

    fig = relations_figure(label_phi, matrices, rows, data_note)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def relations_figure(label_phi, matrices: dict, rows: list, data_note: str):
    """Real-label phi, each loss's score correlations (one colour scale, one colour bar), and the
    one number per loss as labelled bars beside the test labels' own (the reference)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    n_rows = (len(matrices) + 2 + cols - 1) // cols
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.2 * cols, 3.6 * n_rows + 0.6), squeeze=False,
                             layout="constrained")
    flat = list(axes.flat)
    im = _heatmap(flat[0], label_phi, "REAL label file: phi (what r compares with)")
    for ax, (loss, row) in zip(flat[1:], zip(matrices, rows[1:])):
        _heatmap(ax, matrices[loss], f"{loss}: score correlation, r = "
                 f"{row['agreement_with_real_labels']:.2f}")
    _bars(flat[len(matrices) + 1], rows)
    for ax in flat[len(matrices) + 2:]:
        ax.axis("off")
    fig.colorbar(im, ax=flat[:len(matrices) + 1], shrink=0.6, label="phi (labels) / Pearson r (scores)")
    fig.suptitle(f"Label relations, {data_note}")
    fig.supxlabel(CAPTION, fontsize=8.5, x=0.01, ha="left")
    return fig


def _bars(ax, rows: list) -> None:
    """r per loss as horizontal bars, each labelled with its value; the reference bar in black."""
    names = [row["loss"] for row in rows]
    values = [row["agreement_with_real_labels"] for row in rows]
    colours = ["black" if "reference" in name else "tab:gray" for name in names]
    bars = ax.barh(names, values, color=colours)
    ax.bar_label(bars, labels=[f"{v:+.2f}" for v in values], padding=3, fontsize=8)
    ax.axvline(0, color="k", lw=0.6)
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=8)
    ax.set(xlim=(-1, 1), xlabel="r with the real label file's phi",
           title="r per loss (black: the reference)")
