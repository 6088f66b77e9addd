"""reproduce.gradcam: the last convolutional block of each backbone found by name, the heatmap of
a hand-built model equal to its hand-computed value, and a trained model whose decision depends on
a known region (a bright square) whose heatmap peaks inside that region."""
import keras
import numpy as np
import pytest

from data_prep.schema import NUM_CLASSES
from reproduce.config import smoke
from reproduce.backbones import BACKBONES
from reproduce.gradcam import GradCAM, backbone_of, cam_layer, last_feature_layer

CAM_LAYERS = {name: b.cam_layer for name, b in BACKBONES.items() if b.cam_layer}
from reproduce.models import build_model

SIZE = 32


@pytest.mark.slow
@pytest.mark.parametrize("family", ["vgg16", "resnet50", "densenet121"])
def test_the_last_convolutional_block_of_each_backbone(family):
    model = build_model(smoke().override(model=family))
    backbone = backbone_of(model)
    assert backbone.name == family
    # the names are keras.applications' own: the generic rule finds the same layers
    assert last_feature_layer(backbone).name == CAM_LAYERS[family]
    gradcam = GradCAM(model)
    # at 32² only VGG16's block (input/16) is 2×2; ResNet50's and DenseNet121's (input/32) are 1×1
    if family == "vgg16":
        assert gradcam.layer_name == CAM_LAYERS[family]
    else:
        layer = backbone.get_layer(gradcam.layer_name)
        names = [one.name for one in backbone.layers]
        assert names.index(layer.name) < names.index(CAM_LAYERS[family])
        assert tuple(layer.output.shape[1:3]) == (2, 2)
    if family == "vgg16":  # its block is not the backbone's output: the gradient crosses a pool
        images = np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 1), dtype=np.uint8)
        maps = gradcam(images, [0, 13])
        assert maps.shape == (2, SIZE, SIZE) and np.isfinite(maps).all() and (maps >= 0).all()


@pytest.mark.slow
@pytest.mark.parametrize("family", ["resnet50", "densenet121"])
def test_a_block_under_two_cells_a_side_gives_way_to_the_last_layer_that_has_two(family):
    """48², the demo's input: ResNet50's block is 2×2 and kept; DenseNet121's is 1×1 (a flat
    heatmap), so the transition convolution before its last pool (3×3) is used; at 64² both are
    the named blocks."""
    for size, expected in [(48, {"resnet50": CAM_LAYERS["resnet50"], "densenet121": "pool4_conv"}),
                           (64, CAM_LAYERS)]:
        backbone = backbone_of(build_model(smoke().override(model=family, image_size=size)))
        assert cam_layer(backbone).name == expected[family], size


def _hand_built(weight: float) -> keras.Model:
    """uint8 image → x/127.5 − 1 ("tiny" normalisation) → 1×1 conv averaging the 3 channels, ReLU
    (bright pixels 1, black 0) → average pool → Dense: class 5 = weight × the bright fraction."""
    def backbone(input_shape):
        inputs = keras.Input(input_shape)
        x = keras.layers.Conv2D(1, 1, use_bias=False, activation="relu", name="bright")(inputs)
        return keras.Model(inputs, x, name="hand")

    model = build_model(smoke().override(model="tiny"), backbone=backbone)
    model.get_layer("hand").get_layer("bright").set_weights([np.full((1, 1, 3, 1), 1 / 3)])
    kernel = np.zeros((1, NUM_CLASSES))
    kernel[0, 5] = weight
    model.get_layer("predictions").set_weights([kernel, np.zeros(NUM_CLASSES)])
    return model


def test_heatmap_of_a_hand_built_model_equals_its_hand_computed_value():
    image = np.zeros((1, SIZE, SIZE, 1), np.uint8)
    image[0, 4:12, 20:28] = 255  # a bright square in the top-right quadrant
    gradcam = GradCAM(_hand_built(2.0))
    assert gradcam.layer_name == "bright"
    # logit_5 = 2 · mean(A) → ∂logit/∂A_ij = 2/32², α = 2/1024; heatmap = ReLU(α A) = 2/1024 in the
    # square, 0 elsewhere, already at input resolution (1×1 conv, stride 1)
    expected = np.zeros((SIZE, SIZE))
    expected[4:12, 20:28] = 2 / SIZE**2
    np.testing.assert_allclose(gradcam(image, [5])[0], expected, atol=1e-9)
    # a class the square argues against: negative α, nothing left after the ReLU; before it
    # (relu=False, the CAM that localize boxes) −2/1024 in the square
    against = GradCAM(_hand_built(-2.0))
    np.testing.assert_array_equal(against(image, [5])[0], 0.0)
    np.testing.assert_allclose(against(image, [5], relu=False)[0], -expected, atol=1e-9)
    # a class with zero weight: zero gradient, zero heatmap
    np.testing.assert_array_equal(gradcam(image, [0])[0], 0.0)


def _squares(n: int, rng, side: int = 10) -> tuple[np.ndarray, np.ndarray, list]:
    """Noise images; every other one with a bright side×side square at a random place, the only
    thing class 0 is about (label 1). A square is 2.5 cells of the tiny model's 8×8 maps."""
    images = rng.normal(90, 20, (n, SIZE, SIZE, 1)).clip(0, 255).astype(np.uint8)
    labels = np.zeros((n, NUM_CLASSES), np.float32)
    where = []
    for k in range(0, n, 2):
        y, x = rng.integers(0, SIZE - side + 1, 2)
        images[k, y:y + side, x:x + side] = 230
        labels[k, 0] = 1
        where.append((k, y, x))
    return images, labels, where


def test_trained_model_heatmap_peaks_inside_the_region_that_decides():
    keras.utils.set_random_seed(0)
    model = build_model(smoke().override(model="tiny"))
    images, labels, _ = _squares(256, np.random.default_rng(0))
    model.compile(optimizer=keras.optimizers.Adam(3e-3),  # class 0 only: the others are empty
                  loss=lambda y, p: keras.losses.binary_crossentropy(y[:, :1], p[:, :1]))
    model.fit(images, labels, batch_size=32, epochs=10, verbose=0)
    test, test_labels, where = _squares(64, np.random.default_rng(1))
    scores = model.predict(test, verbose=0)[:, 0]
    assert scores[test_labels[:, 0] == 1].min() > scores[test_labels[:, 0] == 0].max()  # it learnt
    maps = GradCAM(model)(np.stack([test[k] for k, _, _ in where]), [0] * len(where))
    for (k, y, x), heatmap in zip(where, maps):
        py, px = np.unravel_index(np.argmax(heatmap), heatmap.shape)
        assert y <= py < y + 10 and x <= px < x + 10, f"image {k}: peak ({py}, {px}), square at ({y}, {x})"


@pytest.mark.parametrize("policy, tolerance", [("mixed_float16", 2e-3), ("mixed_bfloat16", 2e-2)])
def test_maps_of_a_model_built_under_a_mixed_policy_equal_float32_maps(policy, tolerance):
    """A model held in memory under a mixed policy (built in a callback or a notebook, not loaded
    from a .keras file, which loads float32): the block's maps are float16/bfloat16 tensors, and
    before the fix their gradient came back None. Tolerance, relative to the largest |map|: maps
    and gradients carry the half type's rounding (float16: 2⁻¹¹ ≈ 4.9e-4 relative, bfloat16:
    2⁻⁸ ≈ 3.9e-3) into a product, so a few roundings: 2e-3 and 2e-2 are about four and five of
    them; the largest differences measured (5 seeds × 8 images, both maps) were 5.3e-4 and 4.8e-3."""
    config = smoke().override(model="tiny")
    reference = build_model(config)
    keras.mixed_precision.set_global_policy(policy)
    try:
        mixed = build_model(config)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    mixed.set_weights(reference.get_weights())
    assert backbone_of(mixed).layers[-1].compute_dtype == policy.removeprefix("mixed_")
    images = np.random.default_rng(1).integers(0, 256, (4, SIZE, SIZE, 1), dtype=np.uint8)
    classes = [0, 3, 7, 13]
    for relu in (True, False):
        want = GradCAM(reference)(images, classes, relu=relu)
        got = GradCAM(mixed)(images, classes, relu=relu)
        assert got.dtype == np.float32 and np.isfinite(got).all()
        scale = np.abs(want).max()
        assert scale > 0 and np.abs(got - want).max() <= tolerance * scale, np.abs(got - want).max() / scale
