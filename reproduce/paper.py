"""The paper's grid, in one place: the runs of Table I and the panels of Figure 1 (§IV.D), the pair
its proposed loss is compared on, and the backbones the benchmarks time. No Keras, no TensorFlow:
the report, the benchmarks and the programs all read it (and tests/repo check the Makefile's
PAPER_KEYS against it).
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Run:
    """One column of Table I and one panel of Figure 1."""

    key: str  # <model>_<loss>: the run folder's name, the report's --runs KEY
    model: str
    loss: str
    panel: str  # Figure 1's panel title


# Table I's four columns made by this package, in the paper's left-to-right order; Figure 1's
# panels (a)–(d) in the same order (its caption).
TABLE1 = (
    Run("vgg16_wce", "vgg16", "wce", "(a) VGG16, weighted CE"),
    Run("resnet50_wce", "resnet50", "wce", "(b) ResNet50, weighted CE"),
    Run("densenet121_wce", "densenet121", "wce", "(c) DenseNet121, weighted CE"),
    Run("densenet121_ewl", "densenet121", "ewl", "(d) DenseNet121, proposed loss (Eq. 2)"),
)
TABLE1_KEYS = tuple(run.key for run in TABLE1)
FIGURE1_PANELS = tuple((run.key, run.panel) for run in TABLE1)
# §IV.D: the proposed loss against its baseline, the same DenseNet121 with weighted CE (DeLong).
PROPOSED, BASELINE = "densenet121_ewl", "densenet121_wce"
DELONG_PAIR = (PROPOSED, BASELINE)
# §III "DenseNet121 is utilized as baseline": timed first by the benchmarks, then the others.
BENCHMARKED = ("densenet121", "resnet50", "vgg16")


def table1_models() -> dict[str, str]:
    """{Table I key: its backbone}: the runs whose hours the benchmarks project."""
    return {run.key: run.model for run in TABLE1}
