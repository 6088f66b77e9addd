"""The three backbones of Table I (§IV.D: VGG16, ResNet50, DenseNet121) with a 14-way head.

Model = backbone (keras.applications, include_top=False) → global average pooling → Dense(14)
with the head activation the loss needs (`loss_registry.head_activation`: sigmoid for Eq. (1),
softmax for Eq. (2), §III.B). §IV.D "pre-trained baseline models": ImageNet weights by default;
all layers are fine-tuned (§V "we fine-tuned the pre-trained model").

Offline, "imagenet" weights must already be in the Keras cache; if the file is absent we fail at
once with `ImagenetWeightsUnavailable` instead of letting Keras try (and time out) a download.
"""
from __future__ import annotations

import os
from pathlib import Path

import keras

from data_prep.schema import NUM_CLASSES
from reproduce.loss_registry import head_activation

# keras.applications module and constructor per family, and the exact notop file name that
# keras.applications.<family> downloads into $KERAS_HOME/models (see its WEIGHTS_PATH_NO_TOP).
_FAMILIES = {
    "vgg16": ("vgg16", "VGG16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "resnet50": ("resnet", "ResNet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "densenet121": ("densenet", "DenseNet121",
                    "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"),
}


class ImagenetWeightsUnavailable(RuntimeError):
    """The ImageNet notop weights file is not in the Keras cache (we run offline)."""


def preprocess_fn(model_name: str):
    """The input normalisation the backbone's weights expect, on float RGB in [0, 255].

    §IV.B "normalized with the same mean, standard deviation": keras.applications.<family>
    .preprocess_input (vgg16/resnet50: "caffe", RGB→BGR minus the ImageNet mean; densenet121:
    "torch", /255 then ImageNet mean/std). "tiny" (tests only): x/127.5 − 1, our choice.
    """
    if model_name == "tiny":
        return lambda x: x / 127.5 - 1.0
    if model_name not in _FAMILIES:
        raise ValueError(f"unknown model {model_name!r}; expected one of {(*_FAMILIES, 'tiny')}")
    module = getattr(keras.applications, _FAMILIES[model_name][0])
    return module.preprocess_input


def keras_cache_dirs() -> list[Path]:
    """Where keras.applications looks for weights: $KERAS_HOME (or ~/.keras) /models, and the
    /tmp/.keras/models fallback Keras uses when that folder is not writable."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return [Path(home) / "models", Path("/tmp/.keras/models")]


def imagenet_weights_path(model_name: str) -> Path:
    """The cached ImageNet notop file for a family, or ImagenetWeightsUnavailable (no download)."""
    if model_name not in _FAMILIES:
        raise ValueError(f"no ImageNet weights for model {model_name!r} (tiny is for tests)")
    file_name = _FAMILIES[model_name][2]
    for folder in keras_cache_dirs():
        if (folder / file_name).is_file():
            return folder / file_name
    raise ImagenetWeightsUnavailable(
        f"ImageNet weights for {model_name} not found and we are offline: place "
        f"{file_name} in {keras_cache_dirs()[0]} (the Keras cache, $KERAS_HOME/models or "
        f"~/.keras/models), or use --weights none or --weights PATH")


def tiny_backbone(input_shape) -> keras.Model:
    """A 2-conv CNN for tests and smoke runs (not in the paper): seconds on a CPU."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    return keras.Model(inputs, x, name="tiny")


def _application_backbone(model_name: str, input_shape, weights: str) -> keras.Model:
    module_name, constructor, _ = _FAMILIES[model_name]
    build = getattr(getattr(keras.applications, module_name), constructor)
    if weights == "imagenet":
        # Pass the cached file's path: Keras loads it by topology and never tries the network.
        return build(include_top=False, weights=str(imagenet_weights_path(model_name)),
                     input_shape=input_shape)
    return build(include_top=False, weights=None, input_shape=input_shape)


def _make_backbone(config, input_shape) -> keras.Model:
    """The feature extractor named by config.model, with config.weights loaded."""
    weights = config.weights
    if weights not in ("imagenet", "none") and not Path(weights).is_file():
        raise FileNotFoundError(f"{weights}: backbone weights file not found")
    if config.model == "tiny":
        if weights == "imagenet":
            raise ValueError("model 'tiny' has no ImageNet weights; use weights='none' or a file")
        backbone = tiny_backbone(input_shape)
    else:
        backbone = _application_backbone(config.model, input_shape,
                                         "imagenet" if weights == "imagenet" else "none")
    if weights not in ("imagenet", "none"):
        backbone.load_weights(weights)
    return backbone


def build_model(config, backbone=None) -> keras.Model:
    """Backbone → global average pooling → Dense(14, head activation), input (S, S, 3).

    `backbone`: optional callable(input_shape) -> keras.Model replacing config.model's (tests);
    config.weights is then not applied. The head runs in float32 even under mixed precision
    (a float16 softmax/sigmoid and log in the loss underflow). Every layer is trainable.
    """
    input_shape = (config.image_size, config.image_size, 3)
    features = backbone(input_shape) if backbone is not None else _make_backbone(config, input_shape)
    inputs = keras.Input(input_shape, name="image")
    x = features(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    init = keras.initializers.GlorotUniform(seed=config.seed)  # our choice: seeded head init
    outputs = keras.layers.Dense(NUM_CLASSES, activation=head_activation(config.loss),
                                 kernel_initializer=init, dtype="float32", name="predictions")(x)
    model = keras.Model(inputs, outputs, name=f"{config.model}_{config.loss}")
    model.trainable = True  # §V "we fine-tuned the pre-trained model": propagates to every layer
    return model
