"""The three backbones of Table I (§IV.D: VGG16, ResNet50, DenseNet121) with a 14-way head.

Model = uint8 gray image [S, S, 1] → `BackboneInput` (gray → RGB, the family's ImageNet
normalisation: §IV.B "normalized") → backbone (keras.applications, include_top=False) → global
average pooling → Dense(14) with the head activation the loss needs
(`losses.head_activation`: sigmoid for Eq. (1), softmax for Eq. (2), §III.B). The input
layer is part of the model, so it runs on the accelerator and every saved .keras file takes the
images exactly as the TFRecords (and `reproduce.predict`) give them. §IV.D "pre-trained baseline
models": ImageNet weights by default; all layers are fine-tuned (§V "we fine-tuned the
pre-trained model"). With more than one replica, BatchNormalization is synchronized
(`synchronize_batchnorm`), so its statistics are those of the global batch of 32.

"imagenet": the notop file keras.applications uses, from the Keras cache or downloaded there on
first use (`reproduce.weights`: verified against Keras' hash, one downloader per file, a timeout);
a failed download is `ImagenetWeightsUnavailable`, one line naming the URL, the file and the ways out.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import keras
from keras import ops

from data_prep.schema import NUM_CLASSES
from reproduce import backbones, init_weights, losses, weights as pretrained
from reproduce.weights import ImagenetWeightsUnavailable  # noqa: F401  (public here too)


def _constructor(record: backbones.Backbone):
    """The callable a record names ("module:callable")."""
    module, _, name = record.constructor.partition(":")
    return getattr(importlib.import_module(module), name)


def preprocess_fn(model_name: str):
    """The input normalisation the backbone's weights expect, on float RGB in [0, 255].

    §IV.B "normalized with the same mean, standard deviation": a keras.applications family's own
    preprocess_input (vgg16/resnet50: "caffe", RGB→BGR minus the ImageNet mean; densenet121:
    "torch", /255 then ImageNet mean/std); another backbone's record names the mode ("tiny", tests
    only: "tf", x/127.5 − 1, our choice).
    """
    record = backbones.backbone(model_name)
    if record.application:
        return importlib.import_module(record.constructor.partition(":")[0]).preprocess_input
    return lambda x: keras.applications.imagenet_utils.preprocess_input(x, mode=record.preprocessing)


# keras.applications' preprocess_input modes on float RGB in [0, 255]
# (keras/src/applications/imagenet_utils.py): "caffe" = RGB→BGR, minus the ImageNet BGR mean;
# "torch" = /255, minus the mean, divided by the std; "tf" = /127.5 − 1.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN, _TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="reproduce")
class BackboneInput(keras.layers.Layer):
    """uint8 gray [..., H, W, 1] → float32 [..., H, W, 3] as the family's ImageNet weights expect.

    The same arithmetic, in the same order, as `preprocess_fn(family)` applied to the gray image
    copied to 3 channels (a gray image is its own RGB→BGR flip, so the caffe means only change
    order). Always float32, also under mixed precision (the backbone casts to float16 itself)."""

    def __init__(self, family: str, **kwargs):
        self.mode = backbones.backbone(family).preprocessing
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.family = family

    def call(self, images):
        x = ops.cast(images, "float32")
        x = ops.concatenate([x, x, x], axis=-1)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "caffe":
            return x - ops.convert_to_tensor(_CAFFE_MEAN_BGR, "float32")
        x = x / 255.0
        return (x - ops.convert_to_tensor(_TORCH_MEAN, "float32")) / ops.convert_to_tensor(_TORCH_STD, "float32")

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)

    def get_config(self):
        return {**super().get_config(), "family": self.family}


def tiny_backbone(input_shape, batchnorm: bool = False) -> keras.Model:
    """A 2-conv CNN for tests and smoke runs (not in the paper): seconds on a CPU. With
    `batchnorm` ("tiny-bn"), conv → BatchNorm → ReLU as in ResNet/DenseNet, so replica tests of
    synchronized BatchNorm need no DenseNet121 (whose first graph trace takes 1–2 minutes)."""
    inputs = keras.Input(input_shape)
    x = inputs
    for filters in (8, 16):
        if batchnorm:
            x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)
            x = keras.layers.Activation("relu")(keras.layers.BatchNormalization()(x))
        else:
            x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(x)
    return keras.Model(inputs, x, name="tiny_bn" if batchnorm else "tiny")


def tiny_bn_backbone(input_shape) -> keras.Model:
    return tiny_backbone(input_shape, batchnorm=True)


def _make_backbone(config, input_shape) -> keras.Model:
    """The feature extractor named by config.model, with config.weights loaded: a
    keras.applications family with include_top=False (ImageNet weights: the verified file in the
    Keras cache, downloaded on first use and passed as a path, so Keras loads it by topology and
    tries no download of its own), or another record's constructor(input_shape)."""
    record, weights = backbones.backbone(config.model), config.weights
    if weights not in ("imagenet", "none") and not Path(weights).is_file():
        raise FileNotFoundError(f"{weights}: backbone weights file not found")
    if weights == "imagenet" and record.weights is None:
        raise ValueError(f"model {config.model!r} has no ImageNet weights; use weights='none' or a file")
    build = _constructor(record)
    if not record.application:
        backbone = build(input_shape)
    elif weights == "imagenet":
        backbone = build(include_top=False, weights=str(pretrained.imagenet_weights(config.model)),
                         input_shape=input_shape)
    else:
        backbone = build(include_top=False, weights=None, input_shape=input_shape)
    if weights not in ("imagenet", "none"):
        backbone.load_weights(weights)
    return backbone


def set_batchnorm_momentum(backbone: keras.Model, momentum: float) -> None:
    """Every BatchNormalization's momentum (saved with the layer's config). It changes only the
    moving statistics, which inference uses: training steps normalise with the batch's own, so
    the weights a run learns do not depend on it. Short runs from scratch need a short memory
    (what 0.99 did to the demo's DenseNet121: docs/paper_map.md, "BatchNorm's moving mean and
    variance")."""
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def synchronize_batchnorm(backbone: keras.Model) -> keras.Model:
    """The same backbone, weights included, with every BatchNormalization synchronized across
    replicas (Keras' `synchronized=True`: mean and variance of the global batch). The layers are
    rebuilt from their configs, so ImageNet weights load first and are copied over."""
    if not any(isinstance(layer, keras.layers.BatchNormalization) for layer in backbone.layers):
        return backbone  # VGG16 has no BatchNorm

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.BatchNormalization):
            config["synchronized"] = True
        return layer.__class__.from_config(config)

    synced = keras.models.clone_model(backbone, clone_function=clone)
    synced.set_weights(backbone.get_weights())
    return synced


def build_model(config, backbone=None, replicas: int = 1) -> keras.Model:
    """uint8 image [S, S, 1] → BackboneInput → backbone → average pooling → Dense(14, head).

    `backbone`: optional callable(input_shape) -> keras.Model replacing config.model's (tests);
    config.weights is then not applied. `replicas` > 1 with config.sync_batchnorm: synchronized
    BatchNorm. The head runs in float32 even under mixed precision (a float16 softmax/sigmoid
    and log in the loss underflow). Every layer is trainable.
    """
    size = config.image_size
    input_shape = (size, size, 3)
    features = backbone(input_shape) if backbone is not None else _make_backbone(config, input_shape)
    set_batchnorm_momentum(features, config.batchnorm_momentum)
    if replicas > 1 and config.sync_batchnorm:
        features = synchronize_batchnorm(features)
    inputs = keras.Input((size, size, 1), dtype="uint8", name="image")
    x = BackboneInput(config.model, name="backbone_input")(inputs)
    x = features(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    init = keras.initializers.GlorotUniform(seed=config.seed)  # our choice: seeded head init
    outputs = keras.layers.Dense(NUM_CLASSES, activation=losses.head_activation(config.loss),
                                 kernel_initializer=init, dtype="float32", name="predictions")(x)
    model = keras.Model(inputs, outputs, name=f"{config.model}_{config.loss}")
    model.trainable = True  # §V "we fine-tuned the pre-trained model": propagates to every layer
    if config.initializer == "numpy":  # the same start on every Keras backend (our choice)
        loaded = backbone is None and config.weights != "none"
        init_weights.draw_initial_weights(model, config.seed, skip=[features] if loaded else [])
    return model

