"""data_prep.dicom on DICOM files that pydicom itself writes: MONOCHROME2 and MONOCHROME1, 12 bits
in 16-bit storage and 16 bits, signed, Window Center/Width, a VOI LUT, Rescale Slope/Intercept,
RGB; and the files it must refuse, each with one message naming the file.

Expected values by hand from DICOM PS3.3 C.11.2.1.2.1 (LINEAR window): x <= c − 0.5 − (w − 1)/2
→ lowest, x > c − 0.5 + (w − 1)/2 → highest, else ((x − (c − 0.5)) / (w − 1) + 0.5) of the range;
then our 8 bits: 255 × (that fraction), rounded."""
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from data_prep.dicom import is_dicom, read_dicom
from data_prep.images import ImageError

# 12-bit values and, with Window Center 1024 / Width 1024, their 8-bit values by hand:
# 512 <= 512 → 0; 768 → 255 × ((768 − 1023.5)/1023 + 0.5) = 63.8 → 64; 1024 → 127.6 → 128;
# 1535 is not > 1535 → 255 × 1.0 = 255; 4095 → 255.
STORED = np.array([[0, 512, 768], [1024, 1535, 4095]], np.uint16)
WINDOWED = np.array([[0, 0, 64], [128, 255, 255]], np.uint8)


def test_window_on_12_bits_in_16_bit_storage(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "m2.dcm", STORED, "MONOCHROME2", 12, WindowCenter=1024,
                       WindowWidth=1024)
    np.testing.assert_array_equal(read_dicom(path), WINDOWED)


def test_monochrome1_is_inverted_after_the_window(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "m1.dcm", STORED, "MONOCHROME1", 12, WindowCenter=1024,
                       WindowWidth=1024)
    np.testing.assert_array_equal(read_dicom(path), 255 - WINDOWED)  # low values are white


def test_without_a_window_the_stored_bits_range_maps_to_8_bits(tmp_path, write_dicom):
    v = np.arange(256, dtype=np.uint16).reshape(16, 16)
    # 16 bits: v × 257 → v, the same fixed rule as data_prep.images for 16-bit PNGs
    np.testing.assert_array_equal(read_dicom(write_dicom(tmp_path / "a.dcm", v * 257, "MONOCHROME2", 16)), v)
    # 12 bits: 4095 → 255, 2048 → 255 × 2048/4095 = 127.53 → 128
    twelve = np.array([[0, 2048, 4095]], np.uint16)
    np.testing.assert_array_equal(read_dicom(write_dicom(tmp_path / "b.dcm", twelve, "MONOCHROME2", 12)),
                                  [[0, 128, 255]])
    # signed 12 bits: −2048 … 2047; −1024 → 255 × 1024/4095 = 63.8 → 64
    signed = np.array([[-2048, -1024, 2047]], np.int16)
    np.testing.assert_array_equal(read_dicom(write_dicom(tmp_path / "c.dcm", signed, "MONOCHROME2", 12)),
                                  [[0, 64, 255]])


def test_a_voi_lut_is_used_over_a_window_and_spans_its_own_output_range(tmp_path, write_dicom):
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.add_new(0x00283006, "US", [v // 4 for v in range(4096)])  # LUT Data: 0 … 1023
    path = write_dicom(tmp_path / "lut.dcm", np.array([[0, 2048, 4095]], np.uint16), "MONOCHROME2",
                       12, VOILUTSequence=Sequence([item]), WindowCenter=100, WindowWidth=10)
    # 2048 → 512 → 255 × 512/1023 = 127.6 → 128 (the window would have given 255)
    np.testing.assert_array_equal(read_dicom(path), [[0, 128, 255]])


def test_rescale_slope_and_intercept_come_before_the_window(tmp_path, write_dicom):
    # values 2x − 1024: 0 → −1024 (below −1000), 512 → 0 → 255 × (0.5/1999 + 0.5) = 127.6, 1100 → 1176
    path = write_dicom(tmp_path / "r.dcm", np.array([[0, 512, 1100]], np.uint16), "MONOCHROME2", 12,
                       RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=0, WindowWidth=2000)
    np.testing.assert_array_equal(read_dicom(path), [[0, 128, 255]])


def test_sigmoid_window_reaches_both_ends(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "s.dcm", np.array([[0, 2048, 4095]], np.uint16), "MONOCHROME2", 12,
                       WindowCenter=2048, WindowWidth=100, VOILUTFunction="SIGMOID")
    np.testing.assert_array_equal(read_dicom(path), [[0, 128, 255]])  # centre: half the range


def test_rgb_dicom_becomes_gray_with_bt601_weights(tmp_path, write_dicom):
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 200  # pure red: 0.299 × 200 = 59.8 → 60
    np.testing.assert_array_equal(read_dicom(write_dicom(tmp_path / "rgb.dcm", rgb, "RGB", 8)), 60)


def test_refused_files_name_the_file(tmp_path, write_dicom):
    garbage = tmp_path / "bad.dcm"
    garbage.write_bytes(b"\x00" * 128 + b"DICM" + b"\x01\x02" * 20)
    frames = write_dicom(tmp_path / "frames.dcm", np.zeros((2, 4, 4), np.uint8), "MONOCHROME2", 8)
    palette = write_dicom(tmp_path / "palette.dcm", np.zeros((4, 4), np.uint8), "MONOCHROME2", 8)
    palette_ds = pydicom.dcmread(palette)
    palette_ds.PhotometricInterpretation = "PALETTE COLOR"
    palette_ds.save_as(palette)
    for path, what in [(garbage, "DICOM"), (frames, "multi-frame"), (palette, "PALETTE COLOR"),
                       (tmp_path / "missing.dcm", "cannot read")]:
        with pytest.raises(ImageError, match=what) as err:
            read_dicom(path)
        assert str(path) in str(err.value)


def test_is_dicom_by_suffix_or_marker(tmp_path, write_dicom):
    plain = write_dicom(tmp_path / "scan", np.zeros((2, 2), np.uint8), "MONOCHROME2", 8)
    assert is_dicom(plain)  # no suffix: the b"DICM" marker after the 128-byte preamble
    assert is_dicom(tmp_path / "X.DCM")  # by suffix, before any read
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG" + b"\x00" * 200)
    assert not is_dicom(png) and not is_dicom(tmp_path / "missing")
