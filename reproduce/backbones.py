"""Every backbone the package can train, one frozen record each: all it knows about a family.

A record names the constructor, the input normalisation its ImageNet weights expect, the block
Grad-CAM reads, and the notop weights file keras.applications downloads. Nothing here imports
Keras, so `--help`, the config's choices and the weights' table read it for free. A new backbone
is one record in `BACKBONES` (docs/architecture.md, "Add a backbone"); every other module asks
this table.
"""
from __future__ import annotations

import dataclasses

_GCS = "https://storage.googleapis.com/tensorflow/keras-applications"


@dataclasses.dataclass(frozen=True)
class NotopWeights:
    """What keras.applications.<module>.<constructor>(include_top=False, weights="imagenet") passes
    to keras.utils.get_file (tests check it against Keras' own call)."""

    file_name: str  # get_file's fname: the file's name in the Keras cache
    origin: str     # get_file's origin
    file_hash: str  # get_file's file_hash; 32 hex digits, so Keras checks it as an MD5

    @property
    def hash_algorithm(self) -> str:
        """keras.src.utils.file_utils.resolve_hasher with algorithm "auto": 64 digits SHA-256, else MD5."""
        return "sha256" if len(self.file_hash) == 64 else "md5"

    def url(self, mirror: str | None = None) -> str:
        """The origin, or the same file name under the folder URL `mirror`."""
        return self.origin if not mirror else f"{mirror.rstrip('/')}/{self.file_name}"


@dataclasses.dataclass(frozen=True)
class Backbone:
    """One backbone family (`Config.model` = `name`)."""

    name: str
    constructor: str  # "module:callable"; keras.applications ones take (include_top, weights, input_shape)
    preprocessing: str  # keras.applications' preprocess_input mode its weights expect: caffe, torch, tf
    cam_layer: str | None = None  # Grad-CAM's last convolutional block (None: the last 4-D layer)
    weights: NotopWeights | None = None  # ImageNet notop file (None: no pretrained weights)
    source: str = ""  # where the family comes from (the paper's section, or "tests only")

    @property
    def application(self) -> bool:
        """A keras.applications family (called with include_top=False and weights)."""
        return self.constructor.startswith("keras.applications.")


PREPROCESSING = ("caffe", "torch", "tf")

BACKBONES = {b.name: b for b in (
    # The three of Table I (§IV.D). Notop files: the values of Keras 3.15's
    # keras/src/applications/{vgg16,resnet,densenet}.py (WEIGHTS_PATH_NO_TOP, WEIGHTS_HASHES[1],
    # DENSENET121_WEIGHT_PATH_NO_TOP and their file_hash); Grad-CAM blocks: VGG16's last
    # convolution (before its max pool), ResNet50's last residual block, DenseNet121's final
    # BatchNorm + ReLU (what global average pooling reads); tests/reproduce/test_gradcam.py checks them.
    Backbone("vgg16", "keras.applications.vgg16:VGG16", "caffe", "block5_conv3",
             NotopWeights("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                          f"{_GCS}/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                          "6d6bbae143d832006294945121d1f1fc"), "§IV.D"),
    Backbone("resnet50", "keras.applications.resnet:ResNet50", "caffe", "conv5_block3_out",
             NotopWeights("resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                          f"{_GCS}/resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                          "4d473c1dd8becc155b73f8504c6f6626"), "§IV.D"),
    Backbone("densenet121", "keras.applications.densenet:DenseNet121", "torch", "relu",
             NotopWeights("densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
                          f"{_GCS}/densenet/densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
                          "30ee3e1110167f948a6b9946edeeb738"), '§III "DenseNet121 is utilized as baseline"'),
    # Not in the paper: 2-conv CNNs that train in seconds (tests, smoke runs); "tiny-bn" adds
    # BatchNormalization, so replica tests of synchronized BatchNorm need no DenseNet121.
    Backbone("tiny", "reproduce.models:tiny_backbone", "tf", source="tests only"),
    Backbone("tiny-bn", "reproduce.models:tiny_bn_backbone", "tf", source="tests only"),
)}


def backbone(name: str) -> Backbone:
    """The record of `name`; ValueError naming the known ones."""
    if name not in BACKBONES:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


def names() -> tuple[str, ...]:
    """Every backbone's name, in the table's order (the choices of --model)."""
    return tuple(BACKBONES)


def pretrained() -> tuple[str, ...]:
    """The backbones that have ImageNet weights (`make weights` fetches theirs)."""
    return tuple(name for name, b in BACKBONES.items() if b.weights is not None)
