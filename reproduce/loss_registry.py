"""Loss name (`Config.loss`) → the loss object and the head activation it needs.

The paper's two: "wce" (Eq. (1), sigmoid head) and "ewl" (Eq. (2), softmax head: §III.B
"Following the fully connected layer, softmax produced probability of each class"). The readings
of Eq. (2) studied in `reproduce.study.readings` are registered too (never defaults), so train,
evaluate and the ablation accept them by name.
"""
from __future__ import annotations

from reproduce import losses
from reproduce.study import readings

ACTIVATIONS = ("sigmoid", "softmax")


def _ewl(config, manifest):
    return losses.EntropyWeightingLoss(epsilon=config.epsilon)


# name -> (factory(config, manifest) -> keras Loss, head activation): the paper's two, then what
# register_loss adds; the readings of reproduce.study join at lookup time (_all), not at import,
# since this module may be imported while readings itself is still being imported.
_REGISTRY: dict = {"wce": (losses.wce_from_config, "sigmoid"), "ewl": (_ewl, "softmax")}
_BUILT_IN = ("wce", "ewl")


def _all() -> dict:
    """Every loss by name, in order: the paper's two, the readings, the ones registered later."""
    added = {k: v for k, v in _REGISTRY.items() if k not in _BUILT_IN}
    return {**{k: _REGISTRY[k] for k in _BUILT_IN}, **readings.LOSSES, **added}


def register_loss(name: str, factory, activation: str) -> None:
    """Add a loss: `factory(config, manifest) -> keras.losses.Loss`; `activation` of the head.

    The paper's two names cannot be replaced; other names may be registered again."""
    if name in _BUILT_IN:
        raise ValueError(f"loss {name!r} is built in and cannot be re-registered")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if not callable(factory):
        raise ValueError(f"factory for loss {name!r} is not callable")
    _REGISTRY[name] = (factory, activation)


def available_losses() -> tuple[str, ...]:
    """All registered loss names, the paper's two first."""
    return tuple(_all())


def _lookup(name: str):
    registry = _all()
    if name not in registry:
        raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(registry)}")
    return registry[name]


def head_activation(name: str) -> str:
    """The head activation a loss expects: "sigmoid" for wce, "softmax" for ewl (§III.B)."""
    return _lookup(name)[1]


def build_loss(config, manifest: dict | None = None):
    """The loss named by `config.loss`; `manifest` is needed only for wce_factors='dataset'."""
    return _lookup(config.loss)[0](config, manifest)
