"""reproduce.report.beyond_figures: the PR figure in Figure 1's layout and styles, the reliability
panels (classes faint, pooled bold), the forest plot saying why a group has no number, and the
same bytes from the same inputs."""
import numpy as np
import pandas as pd

from data_prep.schema import CLASSES
from reproduce.report import beyond_figures as bf
from reproduce.report import calibration
from reproduce.report.figure1 import PANELS, class_style


def _data(seed=0, n=120):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 14)) < 0.2).astype(int)
    y[:, CLASSES.index("Hernia")] = 0
    y[:3, CLASSES.index("Hernia")] = 1  # 3 positives: below the minimum, no curve
    return y, np.clip(0.4 * y + 0.6 * rng.random((n, 14)), 0, 1)


def test_pr_figure_layout_styles_and_too_few():
    fig = bf.pr_figure({"densenet121_ewl": _data()}, "t", min_positives=10)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == [title for _, title in PANELS]
    assert [t.get_text() for t in axes[0].texts] == ["not run"]
    lines = axes[3].get_lines()
    assert len(lines) == 14 and [line.get_color() for line in lines] == [class_style(j)["color"] for j in range(14)]
    hernia = lines[CLASSES.index("Hernia")]
    assert len(hernia.get_xdata()) == 0 and hernia.get_label() == "Hernia n<10"
    bf.plt.close(fig)
    assert bf.panels_for(["tiny_a", "tiny_b"]) == [("tiny_a", "tiny_a"), ("tiny_b", "tiny_b")]


def test_reliability_figure_one_panel_per_run_pooled_bold():
    y, s = _data()
    curves = {run: calibration.evaluate_run((y, s), class_names=CLASSES)["curves"] for run in ("a", "b")}
    fig = bf.reliability_figure(curves, {"a": "sigmoid", "b": "softmax"}, "t")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["a (sigmoid head)", "b (softmax head)"]
    widths = sorted(line.get_linewidth() for line in axes[0].get_lines())
    assert widths[-1] == 2.4 and sum(w == 0.9 for w in widths) == 13  # Hernia has no curve
    bf.plt.close(fig)


def test_forest_figure_says_why_a_group_has_no_number(tmp_path):
    rows = pd.DataFrame({"run": ["a"] * 3, "attribute": ["all", "age", "age"], "group": ["all images", "0-19", "80+"],
                         "images": [100, 5, 8], "auc": [0.8, np.nan, np.nan], "ci_low": [0.7, np.nan, np.nan],
                         "ci_high": [0.9, np.nan, np.nan], "too_few_positives": [False, True, False],
                         "classes_in_mean": ["Mass|Nodule", "", ""]})
    fig = bf.forest_figure(rows, "t", 10)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["n<10", "no class common to the attribute's groups"]
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "all: all images (100 images, 2 classes)"
    outside = rows.assign(ci_low=[0.82, np.nan, np.nan])  # a small group's percentile CI can miss its point
    bf.plt.close(bf.forest_figure(outside, "t", 10))
    first = bf.save(fig, tmp_path, "one")
    again = bf.save(bf.forest_figure(rows, "t", 10), tmp_path, "two")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
