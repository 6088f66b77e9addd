"""One image file -> an 8-bit grayscale size×size array (paper §IV.B "downscaled the images to 224×224").

ChestX-ray14 ships 1024×1024 PNGs (§IV.A), almost all 8-bit grayscale; a few hundred are RGBA
(opaque alpha, R = G = B). Any of these is accepted, and also RGB and 16-bit files:

- colour (RGB/RGBA) -> gray with OpenCV's ITU-R BT.601 weights (0.299 R + 0.587 G + 0.114 B);
  alpha is dropped (our choice: NIH's RGBA files are fully opaque, so alpha carries nothing);
- 16-bit -> 8-bit by the fixed linear map round(v / 257) (our choice). 257 = 65535 / 255, so 0 -> 0,
  65535 -> 255, and an 8-bit image saved as 16-bit the standard way (v * 257) comes back exactly.
  A per-image min/max stretch was rejected: it would make brightness depend on each file's extremes,
  so two scans of the same intensity could differ after conversion;
- resize with cv2.INTER_AREA (our choice: area averaging is the alias-free choice for a 4.6×
  downscale, and is exact block means for integer factors); non-square inputs are stretched to
  size×size, as the paper says only "downscaled ... to 224×224".
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

# Our ImageError names the file; OpenCV's own "PNG input buffer is incomplete" warning would be a
# second stderr line without the file name.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

_U16_TO_U8 = 257  # 65535 / 255: see the module docstring


class ImageError(ValueError):
    """An image file that is missing, unreadable, corrupt, or of an unsupported format."""


def to_gray_uint8(img: np.ndarray, where: str = "image") -> np.ndarray:
    """H×W, H×W×1, H×W×3 (BGR) or H×W×4 (BGRA), uint8 or uint16 -> uint8 H×W grayscale."""
    if img.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"{where}: unsupported pixel type {img.dtype} (expected 8- or 16-bit)")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    elif img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)  # cv2.imread gives BGR order
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
    elif img.ndim != 2:
        raise ImageError(f"{where}: unsupported image shape {img.shape}")
    if img.dtype == np.uint16:
        # round(v / 257) in integer arithmetic: (v + 128) // 257 (exact for all 16-bit v).
        img = ((img.astype(np.uint32) + _U16_TO_U8 // 2) // _U16_TO_U8).astype(np.uint8)
    return np.ascontiguousarray(img)


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """INTER_AREA resize of a 2-D uint8 image to size×size (a no-op when already that size)."""
    if img.shape == (size, size):
        return img
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Encoded file bytes -> the array as stored (IMREAD_UNCHANGED keeps 16-bit and alpha)."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if img is None:
        raise ImageError(f"{where}: corrupt or unsupported image file ({len(data)} bytes)")
    return img


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes; a missing or unreadable file is an ImageError naming it."""
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ImageError(f"{path}: cannot read image ({err.strerror or err})") from err


def load_image(path: str | Path, size: int) -> np.ndarray:
    """One image file -> uint8 [size, size] grayscale (see the module docstring for the rules)."""
    img = decode_image(read_bytes(path), str(path))
    return resize_square(to_gray_uint8(img, str(path)), size)
