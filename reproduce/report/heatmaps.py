"""Drawing heatmaps: one image's Grad-CAM overlay (`reproduce.predict --cam`) and the grid of
localization examples (`reproduce.localize`). matplotlib (Agg, files only) is imported here only.

Our choices: the heatmap is shown normalised to [0, 1] (its own maximum = 1: a Grad-CAM's scale
is not comparable between images or classes), in the "jet" colour map at 40% opacity over the
gray image the model saw; true boxes in green, predicted boxes in dashed red. Coordinates are
the 1024² frame of the NIH boxes, so a box is drawn where BBox_List_2017.csv puts it whatever
the model's input size.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; works headless
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from reproduce.report.localization import BBOX_FRAME, normalize  # noqa: E402

CMAP, ALPHA = "jet", 0.4
TRUE_BOX = {"edgecolor": "#00c000", "linewidth": 2.0, "fill": False}
PRED_BOX = {"edgecolor": "#ff2020", "linewidth": 2.0, "linestyle": "--", "fill": False}


def draw_heatmap(ax, image: np.ndarray, heatmap: np.ndarray, frame: int = BBOX_FRAME):
    """The gray image and its normalised heatmap over it, both spanning frame × frame."""
    extent = (0, frame, frame, 0)
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, extent=extent, interpolation="nearest")
    flat = np.ptp(heatmap) == 0  # e.g. an all-zero Grad-CAM: shown as no evidence, not as peak
    shown = ax.imshow(np.zeros_like(heatmap) if flat else normalize(heatmap), cmap=CMAP, vmin=0,
                      vmax=1, alpha=ALPHA, extent=extent, interpolation="bilinear")
    ax.set_xlim(0, frame)
    ax.set_ylim(frame, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    return shown


def write_overlay(image: np.ndarray, heatmap: np.ndarray, title: str, path: Path) -> Path:
    """One PNG: the image, its heatmap, a colour bar, the title (class and probability)."""
    fig, ax = plt.subplots(figsize=(4.8, 4.2), dpi=100)
    shown = draw_heatmap(ax, image, heatmap)
    ax.set_title(title, fontsize=9)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03, label="Grad-CAM (normalised)")
    fig.subplots_adjust(left=0.02, right=0.84, top=0.9, bottom=0.02)  # tight_layout: 2× slower
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def _box(ax, box, style) -> None:
    x, y, w, h = box
    ax.add_patch(Rectangle((x, y), w, h, **style))


def write_localization_grid(examples: list[dict], runs: list[str], title: str, path: Path) -> Path:
    """Columns = examples, rows = runs. Each example: {"image_index", "class", "truth" (x, y, w,
    h), and per run (the image as that run's model saw it): "image" {run: uint8 2-D}, "heatmap"
    {run: 2-D}, "pred" {run: box}, "iou" {run: float}}. Panel title: class, image, IoU."""
    rows, cols = len(runs), len(examples)
    height = 2.7 * rows + 1.0
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols + 0.4, height), dpi=100, squeeze=False)
    for r, run in enumerate(runs):
        for c, ex in enumerate(examples):
            ax = axes[r][c]
            draw_heatmap(ax, ex["image"][run], ex["heatmap"][run])
            _box(ax, ex["truth"], TRUE_BOX)
            _box(ax, ex["pred"][run], PRED_BOX)
            ax.set_title(f"{ex['class']}\n{ex['image_index']}, IoU {ex['iou'][run]:.2f}", fontsize=7)
        axes[r][0].set_ylabel(run, fontsize=9)
    fig.suptitle(f"{title}\ngreen: radiologist's box, red dashed: the box of the Grad-CAM heatmap "
                 "(rows: runs)", fontsize=9)
    fig.subplots_adjust(left=0.4 / fig.get_figwidth(), right=0.99, bottom=0.1 / height,
                        top=1 - 1.0 / height, wspace=0.06, hspace=0.3)  # room for 2-line titles
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
