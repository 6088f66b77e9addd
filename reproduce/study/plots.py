"""The figures of the Eq. (2) study: the per-class term of Eq. (2) against cross-entropy, and the
label relations (real label file vs each loss's scores). matplotlib only here (Agg, no display).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data_prep.schema import CLASSES
from reproduce.study import relations

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


def _heatmap(fig, ax, matrix, title, vmax):
    off = np.where(np.eye(len(CLASSES), dtype=bool), np.nan, matrix)  # diagonal is 1 by definition
    im = ax.imshow(off, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    ax.set_title(title, fontsize=9)
    ax.set_xticks(range(len(CLASSES)), SHORT, rotation=90, fontsize=6)
    ax.set_yticks(range(len(CLASSES)), SHORT, fontsize=6)
    fig.colorbar(im, ax=ax, shrink=0.8)


def plot_relations(label_phi, matrices: dict, rows: list, path: Path, data_note: str) -> None:
    """Real-label phi, each loss's score correlations, and the one number per loss as bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    n_rows = (len(matrices) + 2 + cols - 1) // cols
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.2 * cols, 3.6 * n_rows), squeeze=False,
                             layout="constrained")
    flat = list(axes.flat)
    # Real phi values are small (|phi| <= ~0.2), so that panel gets its own colour scale.
    _heatmap(fig, flat[0], label_phi, "REAL label file: phi", float(np.nanmax(np.abs(
        relations.off_diagonal(label_phi)))))
    for ax, (loss, row) in zip(flat[1:], zip(matrices, rows[1:])):
        _heatmap(fig, ax, matrices[loss], f"{loss}: score corr., r = "
                 f"{row['agreement_with_real_labels']:.2f}", 1.0)
    bars = flat[len(matrices) + 1]
    names = [row["loss"].replace(" (reference)", "") for row in rows]
    bars.barh(names, [row["agreement_with_real_labels"] for row in rows], color="tab:gray")
    bars.axvline(0, color="k", lw=0.6)
    bars.invert_yaxis()
    bars.set(xlim=(-1, 1), title="r vs real phi (one number per loss)")
    for ax in flat[len(matrices) + 2:]:
        ax.axis("off")
    fig.suptitle(f"Label relations, {data_note}: r = Pearson r of the 91 off-diagonal entries")
    fig.savefig(path, dpi=110)
    plt.close(fig)
