"""Initial weights drawn with NumPy, so that one seed gives the same network on every Keras backend.

Keras draws an initializer's values with the backend's own random generator: the same seed gives
one set of weights under TensorFlow and another under JAX, and two runs on two backends would
differ from their first step. `draw_initial_weights` replaces every value a layer's initializer
drew by a NumPy draw from the same distribution (the initializer's own class and config:
Glorot/He/LeCun = VarianceScaling, zeros, ones, constants), seeded by (seed, variable position),
so the network a run starts from depends on its seed only (our choice; the paper fine-tunes
ImageNet weights, §IV.D, which are a file and the same everywhere; only the head and from-scratch
backbones are drawn). A variable whose initializer is not one of these is an error, never left
with the backend's draw.
"""
from __future__ import annotations

import keras
import numpy as np

# keras.initializers.TruncatedNormal / VarianceScaling: the std of a unit normal truncated to
# [-2, 2] is 0.87962566103423978; dividing by it keeps the requested variance.
_TRUNCATED_STD = 0.87962566103423978


class UnknownInitializer(ValueError):
    """A layer's variable has an initializer we cannot draw with NumPy."""


def fans(shape) -> tuple[int, int]:
    """(fan_in, fan_out) as keras.initializers compute them (dense: [in, out]; conv: [..., in, out])."""
    shape = tuple(int(d) for d in shape)
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def _truncated_normal(rng, shape, std):
    """Normal(0, std) redrawn outside ±2 std, as keras' truncated normal."""
    values = rng.standard_normal(shape)
    outside = np.abs(values) > 2.0
    while outside.any():
        values[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(values) > 2.0
    return values * std


def draw(initializer, shape, rng) -> np.ndarray:
    """Values of `initializer` for `shape`, from the NumPy generator `rng` (float64)."""
    config = initializer.get_config()
    if isinstance(initializer, keras.initializers.Zeros):
        return np.zeros(shape)
    if isinstance(initializer, keras.initializers.Ones):
        return np.ones(shape)
    if isinstance(initializer, keras.initializers.Constant):
        return np.full(shape, float(config["value"]))
    if isinstance(initializer, keras.initializers.VarianceScaling):
        fan_in, fan_out = fans(shape)
        # Attributes, not get_config(): GlorotUniform & co. report only their seed there.
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[initializer.mode]
        scale = initializer.scale / max(1.0, fan)
        if initializer.distribution == "uniform":
            limit = np.sqrt(3.0 * scale)
            return rng.uniform(-limit, limit, shape)
        if initializer.distribution == "truncated_normal":
            return _truncated_normal(rng, shape, np.sqrt(scale) / _TRUNCATED_STD)
        return rng.standard_normal(shape) * np.sqrt(scale)
    if isinstance(initializer, keras.initializers.RandomNormal):
        return config["mean"] + rng.standard_normal(shape) * config["stddev"]
    if isinstance(initializer, keras.initializers.RandomUniform):
        return rng.uniform(config["minval"], config["maxval"], shape)
    raise UnknownInitializer(f"no NumPy draw for initializer {type(initializer).__name__}")


def _layers(layer):
    for inner in getattr(layer, "layers", []):
        yield inner
        yield from _layers(inner)


def initialized_variables(layer) -> list[tuple[object, object]]:
    """(variable, initializer) for every `<name>_initializer` attribute whose `<name>` is a
    variable of the layer (kernel, bias, gamma, beta, moving_mean, moving_variance, …)."""
    pairs = []
    for attr, initializer in sorted(vars(layer).items()):
        if not (attr.endswith("_initializer") and isinstance(initializer, keras.initializers.Initializer)):
            continue
        variable = getattr(layer, attr[: -len("_initializer")], None)
        if isinstance(variable, keras.Variable):
            pairs.append((variable, initializer))
    return pairs


def draw_initial_weights(model: keras.Model, seed: int, skip=()) -> int:
    """Assign NumPy draws to every variable of `model` except those of the layers in `skip`
    (loaded weights: ImageNet or a file). Returns how many variables were drawn."""
    skipped = {id(v) for layer in skip for v in layer.weights}
    drawn = set()
    for layer in _layers(model):
        for variable, initializer in initialized_variables(layer):
            if id(variable) in skipped or id(variable) in drawn:
                continue
            # One generator per variable, keyed by its position: adding a layer elsewhere does
            # not change the draws of the others.
            rng = np.random.default_rng([seed, len(drawn)])
            variable.assign(draw(initializer, tuple(variable.shape), rng).astype(variable.dtype))
            drawn.add(id(variable))
    left = [v.path for v in model.weights if id(v) not in drawn and id(v) not in skipped]
    if left:
        raise UnknownInitializer(f"{len(left)} variable(s) have no initializer we can draw: {left[:3]}")
    return len(drawn)
