"""Every loss a run can train with, one row each: its name (`Config.loss`), its class, the head
activation it needs, and where it comes from. No Keras here, so `--help` and the config's choices
read the table for free; `build_loss` imports a class only when a run needs it.

The paper's two (§III.B): "wce", Eq. (1), on a sigmoid head, and "ewl", Eq. (2), on a softmax head
("Following the fully connected layer, softmax produced probability of each class";
`reproduce/losses/paper.py`). Then the readings of Eq. (2) studied in
docs/entropy_weighting_loss.md (`reproduce/losses/readings.py`), never defaults. A new loss is a
class (a registered keras Loss with a `from_run(config, manifest)` classmethod) plus one row in
`LOSSES` (docs/architecture.md, "Add a loss").
"""
from __future__ import annotations

import dataclasses
import importlib

HEADS = ("sigmoid", "softmax")


@dataclasses.dataclass(frozen=True)
class LossEntry:
    """One loss: `cls` is "module:Class"; Class.from_run(config, manifest) builds it for a run."""

    name: str
    cls: str
    head: str
    source: str
    reading: bool = False  # a reading of Eq. (2) (reproduce.study's ablation trains them all)

    def load(self):
        """The class (its module imported, which registers it with Keras)."""
        module, _, name = self.cls.partition(":")
        return getattr(importlib.import_module(module), name)


_PAPER, _READINGS = "reproduce.losses.paper", "reproduce.losses.readings"
LOSSES = {entry.name: entry for entry in (
    LossEntry("wce", f"{_PAPER}:WeightedBinaryCrossentropy", "sigmoid", "§III.B Eq. (1)"),
    LossEntry("ewl", f"{_PAPER}:EntropyWeightingLoss", "softmax", "§III.B Eq. (2)"),
    LossEntry("ewl_neg", f"{_READINGS}:NegatedEntropyWeightingLoss", "softmax",
              "Eq. (2) with its sign flipped", reading=True),
    LossEntry("softmax_ce", f"{_READINGS}:NormalizedSoftmaxCrossentropy", "softmax",
              "softmax cross-entropy on normalised multi-hot targets", reading=True),
    LossEntry("wce_ewl", f"{_READINGS}:WeightedCEPlusEntropyWeighting", "sigmoid",
              "Eq. (1) + Eq. (2) on the softmax of the same logits", reading=True),
    # The literal Eq. (2) on the sigmoid head of the Eq. (1) model: what a Keras implementation
    # gets if only the loss is swapped (§IV.B "implemented by Keras"). Each class is then
    # independent: a sigmoid starts at 0.5 > 1/e, so true classes are pushed UP towards 1, and
    # absent classes get no gradient at all.
    LossEntry("ewl_sigmoid", f"{_PAPER}:EntropyWeightingLoss", "sigmoid",
              "Eq. (2) as printed on a sigmoid head", reading=True),
)}


def entry(name: str) -> LossEntry:
    """The row of `name`; ValueError naming the known ones."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")
    return LOSSES[name]


def names() -> tuple[str, ...]:
    """Every loss name, the paper's two first (the choices of --loss)."""
    return tuple(LOSSES)


def reading_names() -> tuple[str, ...]:
    """The readings of Eq. (2), in the table's order."""
    return tuple(name for name, e in LOSSES.items() if e.reading)


def head_activation(name: str) -> str:
    """The head activation a loss expects: "sigmoid" for wce, "softmax" for ewl (§III.B)."""
    return entry(name).head


def build_loss(config, manifest: dict | None = None):
    """The loss named by `config.loss`; `manifest` is needed only for wce_factors='dataset'."""
    return entry(config.loss).load().from_run(config, manifest)


def import_all() -> None:
    """Import every loss module of the table: what a .keras file may name (Keras registers a
    custom class when its module runs the class definition; `load_checkpoint` calls this)."""
    for module in dict.fromkeys(e.cls.partition(":")[0] for e in LOSSES.values()):
        importlib.import_module(module)
