"""A run's checkpoint applied to image files, the way evaluate applies it to the TFRecords:
`Predictor` (the checkpoint, its forward pass, the sizes an image goes through), `find_images`,
`read_image` (training's path: `data_prep.images`/`dicom` at the stored size) and `model_input`
(the image as a record parsed by `reproduce.data.decode_and_resize`). `reproduce.predict` (the
program) writes its files.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from common.checksums import sha256_file
from common.provenance import PROJECT_ROOT, portable_path
from data_prep.dicom import DICOM_SUFFIXES, is_dicom, read_dicom
from data_prep.images import load_image, resize_square
from data_prep.schema import NUM_CLASSES, encode_example
from reproduce.config import Config
from reproduce.data import decode_and_resize
from reproduce.engine.inference import CheckpointError, compiled_forward, load_checkpoint

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", *DICOM_SUFFIXES)


def find_images(paths) -> tuple[list[Path], list[str]]:
    """The image files named or held (recursively, sorted) by `paths`, and one message per PATH
    that is neither (missing, or a folder without images)."""
    files, problems = [], []
    for given in map(Path, paths):
        if given.is_file():
            files.append(given)
        elif given.is_dir():
            found = sorted(p for p in given.rglob("*") if p.is_file() and (
                p.suffix.lower() in IMAGE_SUFFIXES or (not p.suffix and is_dicom(p))))
            files.extend(found)
            if not found:
                problems.append(f"{given}: folder holds no image file ({', '.join(IMAGE_SUFFIXES)})")
        else:
            problems.append(f"{given}: no such file or folder")
    return files, problems


def read_image(path: Path, stored_size: int) -> np.ndarray:
    """One file -> uint8 [stored_size, stored_size] gray, by the build's rules (INTER_AREA)."""
    if is_dicom(path):
        return resize_square(read_dicom(path), stored_size)
    return load_image(path, stored_size)


def model_input(image: np.ndarray, stored_size: int, image_size: int) -> np.ndarray:
    """uint8 [image_size, image_size, 1] exactly as evaluate's dataset gives the same image: the
    image becomes a record (the build's encode_example) parsed by training's decode_and_resize."""
    record = encode_example(image, np.zeros(NUM_CLASSES), "predict", 0, "raw")
    return decode_and_resize(record, "raw", stored_size, image_size)["image"].numpy()


def stored_size(resolved: dict, config: Config) -> tuple[int, str]:
    """The size the run's TFRecords hold its images at, and where that came from: config.json's
    `stored_size` (recorded by reproduce.train), else the manifest of its data_dir if that is the
    manifest it trained on (SHA-256), else config.image_size with a warning (images then go
    straight to image_size with INTER_AREA: scores may differ slightly from evaluate's)."""
    if "stored_size" in resolved:
        return int(resolved["stored_size"]), "config.json"
    data_dir = Path(str(resolved.get("data_dir", "")))
    for folder in (data_dir, PROJECT_ROOT / data_dir):
        manifest = folder / "manifest.json"
        if manifest.is_file() and sha256_file(manifest) == resolved.get("manifest_sha256"):
            return int(json.loads(manifest.read_text())["size"]), portable_path(manifest)
    print(f"warning: the run's stored image size is unknown (config.json has no stored_size and "
          f"{data_dir / 'manifest.json'} is not the manifest it trained on); resizing images "
          f"straight to image_size {config.image_size}", file=sys.stderr)
    return config.image_size, "image_size (stored size unknown)"


class Predictor:
    """A run's checkpoint, its forward pass, and the sizes an image goes through."""

    def __init__(self, run_dir, checkpoint: str | None = None):
        self.run_dir = Path(run_dir)
        config_path = self.run_dir / "config.json"
        if not config_path.is_file():
            raise CheckpointError(f"{config_path}: not found (is {run_dir} a reproduce.train run?)")
        self.resolved = json.loads(config_path.read_text())
        self.config = Config.load(config_path)
        self.checkpoint = checkpoint or self.config.checkpoint
        self.model = load_checkpoint(self.run_dir / f"{self.checkpoint}.keras", self.config)
        self.forward = compiled_forward(self.model)
        self.stored_size, self.stored_size_source = stored_size(self.resolved, self.config)
        self._gradcam = None

    def inputs(self, path: Path) -> np.ndarray:
        return model_input(read_image(path, self.stored_size), self.stored_size, self.config.image_size)

    def heatmaps(self, images, classes) -> np.ndarray:
        if self._gradcam is None:
            from reproduce.gradcam import GradCAM

            self._gradcam = GradCAM(self.model)
        return self._gradcam(images, classes)
