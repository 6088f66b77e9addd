"""One DICOM file -> an 8-bit grayscale array, as a viewer shows it (for `reproduce.predict`).

NIH made ChestX-ray14's PNGs from DICOM "rescaled using the default window settings stored in the
DICOM header files" (Wang et al. 2017 §2.3), so a DICOM given to a trained model is turned into
8 bits the same way, with pydicom (all our choices, docs/paper_map.md):

1. the stored values (`pixel_array`: 8-, 12- in 16-bit storage, or 16-bit; signed or unsigned);
2. the Modality LUT or Rescale Slope/Intercept (`pydicom.pixels.apply_modality_lut`);
3. the first VOI LUT, else the first Window Center/Width (`pydicom.pixels.apply_voi_lut`);
4. to 8 bits linearly over the range the previous step can output: the VOI step's output range
   (what it gives far below and far above the window) when the file has one, else the range of
   the stored bits after step 2 — a fixed rule, not the image's own min/max (as `images.py`);
5. MONOCHROME1 (white = low values) inverted, 255 − v, so bone is bright as in the PNGs.

RGB files go through `images.to_gray_uint8` (BT.601); other colour models, multi-frame files and
files without pixel data are refused with an `ImageError` naming the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from data_prep.images import ImageError, to_gray_uint8

DICOM_SUFFIXES = (".dcm", ".dicom")
_PREAMBLE = 128  # DICOM Part 10: a 128-byte preamble, then b"DICM"
_FAR = 1e12  # far outside any window: a window gives its minimum and maximum there


def is_dicom(path) -> bool:
    """By suffix (.dcm, .dicom, any case), or by the b"DICM" marker of a Part 10 file."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as fh:
            return fh.read(_PREAMBLE + 4)[_PREAMBLE:] == b"DICM"
    except OSError:
        return False


def _dataset(path: Path):
    try:
        ds = pydicom.dcmread(path)
    except (OSError, pydicom.errors.InvalidDicomError) as err:
        raise ImageError(f"{path}: cannot read DICOM ({err})") from None
    if "PixelData" not in ds:
        raise ImageError(f"{path}: DICOM without pixel data")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise ImageError(f"{path}: multi-frame DICOM ({ds.NumberOfFrames} frames) not supported")
    return ds


def _stored_range(ds) -> np.ndarray:
    """The smallest and largest value the stored bits can hold."""
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1])
    return np.array([0, 2 ** bits - 1])


def _to_uint8(values: np.ndarray, low: float, high: float, where: Path) -> np.ndarray:
    if not high > low:
        raise ImageError(f"{where}: empty display range [{low}, {high}] (window or LUT)")
    scaled = (np.asarray(values, np.float64) - low) / (high - low) * 255.0
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def _voi(values: np.ndarray, span: np.ndarray, ds) -> tuple[np.ndarray, np.ndarray]:
    """The VOI step (pydicom prefers the VOI LUT over the window, as we do) and its output range:
    a LUT's every entry; a window's value far below and far above it (LINEAR or SIGMOID)."""
    if ds.get("VOILUTSequence"):
        n_entries, first, _ = ds.VOILUTSequence[0].LUTDescriptor
        entries = np.arange(first, first + (n_entries or 2 ** 16), dtype=np.int64)
        # a LUT is indexed by integers: Rescale Slope/Intercept may have made them floats
        return apply_voi_lut(np.round(values).astype(np.int64), ds), apply_voi_lut(entries, ds)
    if "WindowCenter" in ds:
        with np.errstate(over="ignore"):  # SIGMOID's exp() overflows to inf far out: limit 0
            far = apply_voi_lut(np.array([span.min() - _FAR, span.max() + _FAR]), ds)
        return apply_voi_lut(values, ds), far
    return values, span


def read_dicom(path) -> np.ndarray:
    """One DICOM file -> uint8 [H, W] grayscale (see the module docstring for the rules)."""
    path = Path(path)
    ds = _dataset(path)
    try:
        stored = ds.pixel_array
        photometric = str(ds.PhotometricInterpretation).upper()
        if photometric == "RGB" or photometric.startswith("YBR"):  # pixel_array converts YBR to RGB
            return to_gray_uint8(np.ascontiguousarray(stored[..., ::-1]), str(path))  # cv2: BGR
        if photometric not in ("MONOCHROME1", "MONOCHROME2"):
            raise ImageError(f"{path}: unsupported photometric interpretation {photometric}")
        values = apply_modality_lut(stored, ds)
        values, span = _voi(values, apply_modality_lut(_stored_range(ds), ds), ds)
        image = _to_uint8(values, float(np.min(span)), float(np.max(span)), path)
    except ImageError:
        raise
    except Exception as err:  # noqa: BLE001 — pydicom raises many types; all mean "cannot decode"
        raise ImageError(f"{path}: cannot decode DICOM pixels ({type(err).__name__}: {err})") from None
    return 255 - image if photometric == "MONOCHROME1" else image
