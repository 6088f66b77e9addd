"""Drawing of the synthetic chest images (the phantom's pixels; `data_prep.phantom` chooses patients
and writes files). All values here are our choices; none comes from the paper except the 1024² size.

A chest (body, lungs, ribs, lung markings, mediastinum, heart, diaphragm) with per-image brightness,
contrast, pose and size, drawn at 256² and upscaled, plus 1024² noise. Each positive finding adds a
signature scaled by `strength` × U(0.5, 1.5) (0 = no signal). Signatures are >= 1/16 of the image so
they survive the demo's 64² INTER_AREA downscale.
"""
from __future__ import annotations

import zlib

import cv2
import numpy as np

from data_prep.schema import CLASSES

# ---- drawing -------------------------------------------------------------------------------------
SIZE = 1024  # §IV.A "images ... rescaled into the size of 1024×1024"
C = 256  # our choice: draw at 256² and upscale 4x (speed); 1 canvas px = 4 image px
DEFAULT_STRENGTH = 1.0  # our choice: learnable at 64², not trivial (results/reference/demo/table1.csv)
NOISE_SIGMA = 4.0  # our choice: gray levels of full-resolution noise


def _mask(draw) -> np.ndarray:
    m = np.zeros((C, C), np.uint8)
    draw(m)
    return m.astype(np.float32) / 255


def _ellipse(cx, cy, ax, ay, angle=0.0, blur=2.0):
    m = _mask(lambda m: cv2.ellipse(m, (int(cx), int(cy)), (max(1, int(ax)), max(1, int(ay))),
                                    angle, 0, 360, 255, -1, cv2.LINE_AA))
    return cv2.GaussianBlur(m, (0, 0), blur) if blur else m


def _geometry(rng) -> dict:
    """Per-image anatomy (our choice of ranges): position, size, density."""
    return dict(cx=C / 2 + rng.normal(0, 3), top=rng.uniform(0.15, 0.2) * C,
                dia=[rng.uniform(0.76, 0.8) * C] * 2, lung_w=rng.uniform(0.14, 0.165) * C,
                heart_w=rng.uniform(0.16, 0.19) * C, lung_dark=rng.uniform(0.28, 0.36),
                tissue=rng.uniform(0.5, 0.6), rib_amp=rng.uniform(0.03, 0.06), marks=1.0,
                rib_phase=rng.uniform(0, 14), texture=rng.normal(0, 1, (24, 24)).astype(np.float32))


def _lungs(g):
    """Two lung fields (image left = patient right), bottoms at the hemidiaphragms."""
    out = []
    for side, sign in ((0, -1), (1, 1)):
        cy, ay = (g["top"] + g["dia"][side]) / 2, (g["dia"][side] - g["top"]) / 2
        out.append(_ellipse(g["cx"] + sign * 0.19 * C, cy, g["lung_w"], ay, blur=3))
    return out


def _draw_chest(g) -> tuple[np.ndarray, list]:
    body = _ellipse(g["cx"], 0.58 * C, 0.43 * C, 0.58 * C, blur=4)
    img = 0.06 + (g["tissue"] - 0.06) * body
    lungs = _lungs(g)
    lung = np.maximum(*lungs)
    yy = np.arange(C, dtype=np.float32)[:, None]
    ribs = 0.5 + 0.5 * np.cos(2 * np.pi * (yy + g["rib_phase"] + 0.002 * (np.arange(C) - g["cx"]) ** 2) / 14)
    texture = cv2.resize(g["texture"], (C, C), interpolation=cv2.INTER_CUBIC) * 0.035 * g["marks"]
    img = img - lung * (g["lung_dark"] - g["rib_amp"] * ribs - texture)
    heart = _ellipse(g["cx"] + 0.05 * C, 0.64 * C, g["heart_w"], 0.13 * C, -15, blur=3)
    media = _mask(lambda m: cv2.rectangle(m, (int(g["cx"] - 0.05 * C), 0), (int(g["cx"] + 0.05 * C), int(0.6 * C)), 255, -1))
    solid = np.maximum(heart, cv2.GaussianBlur(media, (0, 0), 3) * body)
    return img * (1 - solid) + (g["tissue"] + 0.05) * solid, lungs


def _spot(g, rng, side=None):
    """A random lung side (0 = image left) and that lung's centre x, top, height."""
    side = int(rng.integers(2)) if side is None else side
    return side, g["cx"] + (2 * side - 1) * 0.19 * C, g["top"], g["dia"][side] - g["top"]


def _box(mask, thr=0.2):
    ys, xs = np.nonzero(mask > thr * mask.max()) if mask.max() > 0 else (np.r_[0], np.r_[0])
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def _discs(g, rng, lungs, k, r_lo, r_hi, zone=(0.2, 0.8), blur=1.5):
    side, lx, top, h = _spot(g, rng)
    m = np.zeros((C, C), np.float32)
    for _ in range(k):
        r = rng.uniform(r_lo, r_hi)
        x, y = lx + rng.uniform(-0.5, 0.5) * g["lung_w"], top + rng.uniform(*zone) * h
        m = np.maximum(m, _ellipse(x, y, r, r * rng.uniform(0.8, 1), rng.uniform(0, 180), blur))
    return m * np.minimum(1, lungs[side] * 1.5)


def _nodule(g, rng, lungs):  # 1-3 small bright discs, diameter ~1/14 of the image
    return 0.5, _discs(g, rng, lungs, int(rng.integers(1, 4)), 8, 10)


def _mass(g, rng, lungs):  # one large disc
    return 0.45, _discs(g, rng, lungs, 1, 18, 26, blur=3)


def _pneumonia(g, rng, lungs):  # fluffy cluster of blobs, mid zone
    return 0.3, cv2.GaussianBlur(_discs(g, rng, lungs, 6, 7, 11, (0.4, 0.62)), (0, 0), 4)


def _consolidation(g, rng, lungs):  # dense homogeneous lower-zone opacity
    side, lx, top, h = _spot(g, rng)
    return 0.4, _ellipse(lx, top + 0.75 * h, 0.85 * g["lung_w"], 0.17 * h, blur=3) * lungs[side]


def _infiltration(g, rng, lungs):  # streaky upper-zone opacity
    side, lx, top, h = _spot(g, rng)
    m = np.zeros((C, C), np.uint8)
    for _ in range(8):
        x, y, a = lx + rng.uniform(-0.6, 0.6) * g["lung_w"], top + rng.uniform(0.12, 0.4) * h, rng.uniform(0, np.pi)
        d = rng.uniform(8, 14) * np.array([np.cos(a), np.sin(a)])
        cv2.line(m, (int(x - d[0]), int(y - d[1])), (int(x + d[0]), int(y + d[1])), 255, 4, cv2.LINE_AA)
    return 0.3, cv2.GaussianBlur(m.astype(np.float32) / 255, (0, 0), 2.5) * lungs[side]


def _effusion(g, rng, lungs):  # basal opacity, meniscus rising laterally
    side, lx, top, h = _spot(g, rng)
    lateral = (np.arange(C, dtype=np.float32) - lx) * (2 * side - 1) / g["lung_w"]
    level = top + h * (1 - rng.uniform(0.15, 0.22)) - 0.12 * h * np.clip(lateral, 0, 1.2) ** 2
    m = cv2.GaussianBlur((np.arange(C)[:, None] > level[None]).astype(np.float32), (0, 0), 2)
    return 0.55, m * np.minimum(1, lungs[side] * 2)


def _pneumothorax(g, rng, lungs):  # dark apical-lateral rim without markings + pleural line
    side, lx, top, h = _spot(g, rng)
    inner = _ellipse(lx - (2 * side - 1) * 0.18 * g["lung_w"], top + 0.56 * h, 0.8 * g["lung_w"], 0.46 * h, blur=1)
    rim = lungs[side] * (1 - inner)
    line = cv2.GaussianBlur(np.abs(cv2.Laplacian(inner, cv2.CV_32F)), (0, 0), 1)
    return 0.35, line / max(line.max(), 1e-6) * lungs[side] * 0.5 - rim * (0.6 + g["rib_amp"] * 4)


def _edema(g, rng, lungs):  # bilateral perihilar ("bat-wing") haze
    top, h = g["top"], (g["dia"][0] - g["top"])
    m = sum(_ellipse(g["cx"] + s * 0.13 * C, top + 0.5 * h, 0.09 * C, 0.15 * C, blur=8) for s in (-1, 1))
    return 0.35, m * np.maximum(*lungs)


def _fibrosis(g, rng, lungs):  # coarse reticular net in the lower lung periphery
    m = np.zeros((C, C), np.uint8)
    pts = np.mgrid[0:C:10, 0:C:10].reshape(2, -1).T + rng.uniform(-3, 3, (C // 10 + 1) ** 2 * 1)[:, None]
    for x, y in pts.astype(int):
        cv2.line(m, (x, y), (x + 10, y + int(rng.integers(-4, 5))), 255, 2)
        cv2.line(m, (x, y), (x + int(rng.integers(-4, 5)), y + 10), 255, 2)
    zone = sum(_ellipse(g["cx"] + s * 0.24 * C, g["top"] + 0.72 * (g["dia"][0] - g["top"]), 0.09 * C, 0.14 * C, blur=6) for s in (-1, 1))
    return 0.35, m.astype(np.float32) / 255 * zone * np.maximum(*lungs)


def _pleural_thickening(g, rng, lungs):  # bright band along the upper lateral chest wall
    side, lx, top, h = _spot(g, rng)
    arc = (180, 260) if side == 0 else (280, 360)
    m = _mask(lambda m: cv2.ellipse(m, (int(lx), int(top + h / 2)), (int(g["lung_w"]), int(h / 2)), 0, *arc, 255, 9))
    return 0.45, cv2.GaussianBlur(m, (0, 0), 2)


def _hernia(g, rng, lungs):  # retrocardiac gas bubble with an air-fluid level
    x, y, r = g["cx"] + 0.03 * C, 0.66 * C + rng.uniform(-6, 6), rng.uniform(15, 19)
    bubble = _ellipse(x, y, r, r, blur=1.5)
    fluid = bubble * (np.arange(C)[:, None] > y + 0.2 * r)
    rim = _mask(lambda m: cv2.circle(m, (int(x), int(y)), int(r), 255, 3, cv2.LINE_AA))
    return 0.4, fluid * 0.3 + rim * 0.6 - (bubble - fluid) * 0.7


def _atelectasis(g, rng, lungs):  # plate-like dense band (the hemidiaphragm rise is in _reshape)
    side, lx, top, h = g["atel_side"], g["cx"] + (2 * g["atel_side"] - 1) * 0.19 * C, g["top"], g["dia"][g["atel_side"]] - g["top"]
    y = top + rng.uniform(0.55, 0.75) * h
    m = _mask(lambda m: cv2.line(m, (int(lx - 0.8 * g["lung_w"]), int(y)), (int(lx + 0.8 * g["lung_w"]), int(y + rng.uniform(-12, 12))), 255, 10, cv2.LINE_AA))
    return 0.45, cv2.GaussianBlur(m, (0, 0), 2.5) * lungs[side]


def _reshape(g, amp, rng):
    """Findings that change anatomy rather than add a shadow; all vanish at strength 0."""
    if "Cardiomegaly" in amp:  # cardiothoracic ratio ~0.45 -> ~0.6
        g["heart_w"] *= 1 + 0.35 * amp["Cardiomegaly"]
    if "Emphysema" in amp:  # hyperlucent, hyperinflated lungs with sparse markings
        g["lung_dark"] += 0.12 * amp["Emphysema"]
        g["dia"] = [d + 0.05 * C * amp["Emphysema"] for d in g["dia"]]
        g["marks"] *= max(0.0, 1 - 0.7 * amp["Emphysema"])
    side = g["atel_side"] = int(rng.integers(2))
    if "Atelectasis" in amp:  # volume loss: elevated hemidiaphragm (inside the finding's box)
        lx, dia = g["cx"] + (2 * side - 1) * 0.19 * C, g["dia"][side]
        g["atel_box"] = (lx - 1.1 * g["lung_w"], dia - 0.3 * C, lx + 1.1 * g["lung_w"], dia + 0.04 * C)
        g["dia"][side] -= 0.07 * C * amp["Atelectasis"]


_SHADOWS = {"Atelectasis": _atelectasis, "Consolidation": _consolidation, "Edema": _edema,
            "Effusion": _effusion, "Fibrosis": _fibrosis, "Hernia": _hernia,
            "Infiltration": _infiltration, "Mass": _mass, "Nodule": _nodule,
            "Pleural_Thickening": _pleural_thickening, "Pneumonia": _pneumonia,
            "Pneumothorax": _pneumothorax}


def _global_box(name, g):
    if name == "Cardiomegaly":
        x, w = g["cx"] + 0.05 * C, g["heart_w"] * 1.05
        return x - w, 0.64 * C - 0.14 * C, x + w, 0.64 * C + 0.14 * C
    return g["cx"] - 0.19 * C - g["lung_w"], g["top"], g["cx"] + 0.19 * C + g["lung_w"], max(g["dia"])


def render(image_index: str, labels, seed: int, strength: float = DEFAULT_STRENGTH, noise=None):
    """One phantom image (uint8 1024²) and its boxes [(class, x, y, w, h)] in image pixels.
    Anatomy and pose come from one random stream, findings from another, so strength 0 gives
    exactly the image of the same patient without findings."""
    key = zlib.crc32(image_index.encode())
    bg, les = np.random.default_rng([seed, key, 0]), np.random.default_rng([seed, key, 1])
    g = _geometry(bg)
    angle, scale, shift = bg.uniform(-4, 4), bg.uniform(0.9, 1.08), bg.uniform(-0.04, 0.04, 2) * C
    contrast, bright, gamma = bg.uniform(0.8, 1.2), bg.uniform(-0.06, 0.06), bg.uniform(0.8, 1.25)
    offset = bg.integers(0, SIZE, 2)
    amp = {c: strength * les.uniform(0.5, 1.5) for c, v in zip(CLASSES, labels) if v}  # jitter
    _reshape(g, amp, les)
    img, lungs = _draw_chest(g)
    boxes = []
    for name in amp:
        if name in _SHADOWS:
            gain, shadow = _SHADOWS[name](g, les, lungs)
            img = img + gain * amp[name] * shadow
            box = _box(np.abs(shadow))
            if name == "Atelectasis":  # band + raised hemidiaphragm
                box = np.r_[np.minimum(box[:2], g["atel_box"][:2]), np.maximum(box[2:], g["atel_box"][2:])]
            boxes.append((name, box))
        else:
            boxes.append((name, _global_box(name, g)))
    M = cv2.getRotationMatrix2D((C / 2, C / 2), angle, scale)
    M[:, 2] += shift
    img = cv2.warpAffine(img.astype(np.float32), M, (C, C), flags=cv2.INTER_LINEAR, borderValue=0.06)
    img = np.clip((img - 0.3) * contrast + 0.3 + bright, 0, 1) ** gamma
    big = cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR) * 255
    big += _noise(seed)[offset[0]:offset[0] + SIZE, offset[1]:offset[1] + SIZE] if noise is None else noise
    return np.clip(big, 0, 255).astype(np.uint8), [_to_image_box(n, b, M) for n, b in boxes]


def _to_image_box(name, box, M):
    x0, y0, x1, y1 = box
    pts = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], float) @ M.T
    (x0, y0), (x1, y1) = np.clip(pts.min(0), 0, C) * SIZE / C, np.clip(pts.max(0), 0, C) * SIZE / C
    return name, float(x0), float(y0), float(max(x1 - x0, 1)), float(max(y1 - y0, 1))


_NOISE: dict = {}


def _noise(seed):
    """A seeded 2048² bank of Gaussian noise; each image reads a window of it (speed)."""
    if seed not in _NOISE:
        _NOISE.clear()
        _NOISE[seed] = np.random.default_rng([seed, 2]).normal(0, NOISE_SIGMA, (2 * SIZE, 2 * SIZE)).astype(np.float32)
    return _NOISE[seed]
