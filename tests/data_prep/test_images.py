"""data_prep.images: every input kind -> uint8 grayscale size×size, with hand-computed pixels."""
import cv2
import numpy as np
import pytest

from data_prep.images import ImageError, load_image, resize_square, to_gray_uint8


def _write(path, img):
    assert cv2.imwrite(str(path), img)
    return path


def test_inter_area_4x4_to_2x2_is_block_means(tmp_path):
    img = np.array([[0, 2, 4, 6],
                    [2, 4, 6, 8],
                    [10, 10, 20, 20],
                    [10, 10, 20, 20]], np.uint8)
    # block means: (0+2+2+4)/4 = 2, (4+6+6+8)/4 = 6, 10, 20
    expected = np.array([[2, 6], [10, 20]], np.uint8)
    np.testing.assert_array_equal(resize_square(img, 2), expected)
    np.testing.assert_array_equal(load_image(_write(tmp_path / "a.png", img), 2), expected)


def test_8bit_gray_same_size_is_unchanged(tmp_path):
    img = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    out = load_image(_write(tmp_path / "g.png", img), 8)
    assert out.dtype == np.uint8 and out.shape == (8, 8)
    np.testing.assert_array_equal(out, img)


def test_rgb_uses_bt601_weights(tmp_path):
    # cv2 order is BGR. Pure blue/green/red at 255: 0.114*255 = 29.07, 0.587*255 = 149.7, 0.299*255 = 76.2
    img = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [90, 90, 90]]], np.uint8)
    out = load_image(_write(tmp_path / "rgb.png", img), 2)
    np.testing.assert_array_equal(out, [[29, 150], [76, 90]])


def test_rgba_drops_alpha(tmp_path):
    gray = np.array([[0, 100], [200, 255]], np.uint8)
    alpha = np.array([[255, 0], [17, 255]], np.uint8)  # alpha must not change the gray value
    img = np.dstack([gray, gray, gray, alpha])
    out = load_image(_write(tmp_path / "rgba.png", img), 2)
    np.testing.assert_array_equal(out, gray)


def test_16bit_is_round_v_over_257(tmp_path):
    # 257*10 -> 10 exactly; 128/257 = 0.498 -> 0; 129/257 = 0.502 -> 1; 65535 -> 255; 65000 -> 252.9 -> 253
    img = np.array([[0, 2570, 128], [129, 65535, 65000]], np.uint16)
    expected = np.array([[0, 10, 0], [1, 255, 253]], np.uint8)
    np.testing.assert_array_equal(to_gray_uint8(img), expected)
    square = np.array([[0, 2570], [129, 65535]], np.uint16)
    path = _write(tmp_path / "g16.png", square)
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).dtype == np.uint16  # really a 16-bit file
    np.testing.assert_array_equal(load_image(path, 2), [[0, 10], [1, 255]])


def test_8bit_saved_as_16bit_round_trips():
    v = np.arange(256, dtype=np.uint16).reshape(16, 16)
    np.testing.assert_array_equal(to_gray_uint8(v * 257), v.astype(np.uint8))


def test_16bit_rgb_and_single_channel():
    # gray (R=G=B) 16-bit colour: BT.601 weights sum to 1, so 2570 stays 2570 -> 10
    rgb16 = np.full((2, 2, 3), 2570, np.uint16)
    np.testing.assert_array_equal(to_gray_uint8(rgb16), np.full((2, 2), 10, np.uint8))
    one = np.array([[[7], [9]]], np.uint8)
    np.testing.assert_array_equal(to_gray_uint8(one), [[7, 9]])


def test_sizes_downscale_nonsquare_and_upscale(tmp_path):
    wide = np.zeros((4, 8), np.uint8)
    wide[:, 4:] = 200  # left half 0, right half 200 -> 2×2 of block means
    np.testing.assert_array_equal(load_image(_write(tmp_path / "w.png", wide), 2), [[0, 200], [0, 200]])
    small = np.full((3, 3), 42, np.uint8)
    out = load_image(_write(tmp_path / "s.png", small), 7)
    assert out.shape == (7, 7) and (out == 42).all()
    big = np.random.default_rng(0).integers(0, 256, (1024, 1024), dtype=np.uint8)
    out = load_image(_write(tmp_path / "b.png", big), 224)
    assert out.shape == (224, 224) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, cv2.resize(big, (224, 224), interpolation=cv2.INTER_AREA))


def test_missing_file_error_names_file(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(ImageError, match="nope.png: cannot read image"):
        load_image(path, 8)


@pytest.mark.parametrize("payload", [b"", b"not a png at all"])
def test_corrupt_file_error_names_file(tmp_path, payload):
    path = tmp_path / "bad.png"
    path.write_bytes(payload)
    with pytest.raises(ImageError, match="bad.png: corrupt"):
        load_image(path, 8)


def test_truncated_png_error_names_file(tmp_path):
    ok, buf = cv2.imencode(".png", np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8))
    path = tmp_path / "trunc.png"
    path.write_bytes(buf.tobytes()[: len(buf) // 2])
    with pytest.raises(ImageError, match="trunc.png: corrupt"):
        load_image(path, 8)


def test_unsupported_pixel_type():
    with pytest.raises(ImageError, match="x.tif: unsupported pixel type float32"):
        to_gray_uint8(np.zeros((2, 2), np.float32), "x.tif")
    with pytest.raises(ImageError, match="unsupported image shape"):
        to_gray_uint8(np.zeros((2, 2, 2), np.uint8))
