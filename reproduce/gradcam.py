"""Grad-CAM (Selvaraju et al. 2017) for the Table I models: where a class's score comes from.

For class c and the feature maps A^k of the last convolutional block: α_k = mean over positions of
∂y_c/∂A^k, heatmap = ReLU(Σ_k α_k A^k), upsampled (bilinear) from the block's resolution to the
input's. y_c is the class's score *before* the head's sigmoid (Eq. (1)) or softmax (Eq. (2)), as
Selvaraju et al. take the score before the softmax: with a softmax, a probability's gradient also
carries every other class. Our head is global average pooling + Dense, so where the block is the
backbone's output (ResNet50, DenseNet121) this heatmap is exactly the class activation map that
Wang et al. 2017 (the paper's [5]) threshold into boxes, up to a positive factor; `relu=False`
gives that map before the ReLU (what reproduce.localize boxes, as Wang et al. normalise the CAM).

The block is found by name (each backbone's `cam_layer` in reproduce/backbones.py: verified
against keras.applications in tests/reproduce/test_gradcam.py), for any other backbone (tests' "tiny", a custom one) as the last layer
with a 4-D output that is not a pooling layer; where that block is 1×1 (inputs below 64² for
DenseNet121, e.g. the demo's 48²), an earlier layer with at least 2×2 maps (`cam_layer`), whose
map is Grad-CAM proper, no longer exactly the CAM. Written with keras.ops and a tf.GradientTape
(TensorFlow backend, as the rest of the pipeline).
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from reproduce import backbones
from reproduce.engine import backend

BATCH = 32  # images per backward pass
MIN_CELLS = 2  # our choice: the smallest map side that can point somewhere (cam_layer)
_POOLING = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D,
            keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)


def backbone_of(model: keras.Model) -> keras.Model:
    """The nested backbone of a `models.build_model` model (named after config.model)."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(nested) != 1:
        raise ValueError(f"model {model.name}: expected one nested backbone, found {len(nested)}")
    return nested[0]


def last_feature_layer(backbone: keras.Model):
    """The last layer whose output is 4-D (spatial maps) and which is not a pooling layer."""
    for layer in reversed(backbone.layers):
        if len(layer.output.shape) == 4 and not isinstance(layer, _POOLING):
            return layer
    raise ValueError(f"backbone {backbone.name}: no convolutional (4-D) layer")


def _cells(layer) -> int:
    """The smaller side of a 4-D layer's maps (cells per row or column)."""
    return min(layer.output.shape[1], layer.output.shape[2])


def cam_layer(backbone: keras.Model, family: str | None = None):
    """The backbone's last convolutional block: its record's `cam_layer` by name (`family`, else
    the backbone's own name), else `last_feature_layer`. If that block's maps are under MIN_CELLS cells a side
    (small inputs: DenseNet121 below 64², ResNet50 at 32²), the last non-pooling 4-D layer
    before it that has MIN_CELLS: a 1×1 map is one number per channel, so its upsampled heatmap is
    flat and points nowhere (our choice; the paper's 224² always gives the named block, 7×7)."""
    record = backbones.BACKBONES.get(family or backbone.name)
    named = record.cam_layer if record is not None else None
    block = backbone.get_layer(named) if named else last_feature_layer(backbone)
    if _cells(block) >= MIN_CELLS:
        return block
    earlier = backbone.layers[:backbone.layers.index(block)]
    for layer in reversed(earlier):
        if (len(layer.output.shape) == 4 and not isinstance(layer, _POOLING)
                and _cells(layer) >= MIN_CELLS):
            return layer
    return block


class GradCAM:
    """heatmaps = GradCAM(model)(images uint8 [B, S, S, 1], classes int [B]) -> float32 [B, S, S],
    each >= 0, row b for class classes[b] of image b (an image can appear once per class)."""

    def __init__(self, model: keras.Model):
        if not backend.is_tensorflow():
            raise backend.UnsupportedOnBackend(
                f"Grad-CAM (--cam, reproduce.localize) uses tf.GradientTape and needs "
                f"KERAS_BACKEND=tensorflow (Keras backend here: {backend.name()}); the run's "
                f".keras files load there unchanged")
        backbone = backbone_of(model)
        self._input = model.get_layer("backbone_input")
        self.layer_name = cam_layer(backbone, self._input.family).name
        # One call gives both the block's maps and the backbone's output computed from them, so the
        # tape links the class score back to the maps.
        self._features = keras.Model(backbone.inputs,
                                     [backbone.get_layer(self.layer_name).output, backbone.output])
        self._pool = model.get_layer("avg_pool")
        self._head = model.get_layer("predictions")
        self._size = tuple(model.inputs[0].shape[1:3])
        signature = [tf.TensorSpec([None, *self._size, 1], tf.uint8), tf.TensorSpec([None], tf.int32)]
        # One trace each, on first use: Grad-CAM (ReLU, then upsampled) and the map without it.
        self._compiled = {relu: tf.function(lambda images, classes, relu=relu:
                                            self._heatmaps(images, classes, relu),
                                            input_signature=signature) for relu in (True, False)}

    def _heatmaps(self, images, classes, relu: bool):
        with tf.GradientTape() as tape:
            maps, features = self._features(self._input(images), training=False)
            pooled = ops.cast(self._pool(features), "float32")
            logits = ops.matmul(pooled, self._head.kernel) + self._head.bias  # before sigmoid/softmax
            # Each image's own class score; their sum's gradient is each image's own gradient
            # (inference mode: no image influences another, BatchNorm uses its moving statistics).
            score = ops.sum(ops.take_along_axis(logits, ops.expand_dims(classes, 1), axis=1))
        # The gradient with respect to the tensor the tape recorded (float16 or bfloat16 in a
        # model built under a mixed policy), cast afterwards: a cast made after the tape is a new
        # tensor the tape never saw, and its gradient would be None.
        grads = ops.cast(tape.gradient(score, maps), "float32")
        maps = ops.cast(maps, "float32")
        weights = ops.mean(grads, axis=(1, 2), keepdims=True)  # α_k
        cam = ops.sum(weights * maps, axis=-1, keepdims=True)
        cam = ops.relu(cam) if relu else cam
        return ops.image.resize(cam, self._size, interpolation="bilinear")[..., 0]

    def __call__(self, images, classes, relu: bool = True) -> np.ndarray:
        """`relu=False`: the map before Grad-CAM's ReLU, i.e. Σ α_k A^k, negative where the maps
        argue against the class; with our head it is the CAM that Wang et al. min-max normalise
        (used by reproduce.localize: with the ReLU, a class with no positive evidence anywhere —
        most classes of an image — has an all-zero map that points nowhere)."""
        images, classes = np.asarray(images, np.uint8), np.asarray(classes, np.int32)
        if len(images) != len(classes):
            raise ValueError(f"{len(images)} images but {len(classes)} classes")
        # A backward pass keeps every activation: BATCH at a time bounds the memory (our choice,
        # the training batch of §IV.B, which the paper's GPU held with its gradients).
        compiled = self._compiled[bool(relu)]
        chunks = [np.asarray(compiled(images[k:k + BATCH], classes[k:k + BATCH]))
                  for k in range(0, len(images), BATCH)]
        return np.concatenate(chunks) if chunks else np.zeros((0, *self._size), np.float32)
