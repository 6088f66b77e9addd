"""What the whole Table I costs, from measured img/s (pure arithmetic; used by bench/gpu.py).

A run = §IV.B's 50 epochs, each one pass over the paper split's training images plus one
validation pass (reproduce.train validates every epoch). Table I trains four runs: VGG16,
ResNet50 and DenseNet121 with Eq. (1), DenseNet121 with Eq. (2) (the loss costs the same as
Eq. (1): priced at DenseNet121's speed). Checkpoint writes and process start-up are left out
(seconds per run).
"""
from __future__ import annotations

from reproduce.paper import table1_models

# `python -m data_prep.split --labels Data_Entry_2017_v2020.csv.gz` (paper split, seed 0):
# train 78,430 images, val 11,835 (docs/commands.md, data_prep.split's output).
TRAIN_IMAGES = 78_430
VAL_IMAGES = 11_835
EPOCHS = 50  # §IV.B "we trained each model for 50 epochs"
# Table I's four trained columns, in `make paper`'s order, and the backbone each one times.
TABLE1_RUNS = table1_models()  # {Table I key: backbone} (reproduce/paper.py)


def run_hours(train_img_s: float, val_img_s: float, epochs: int = EPOCHS,
              train_images: int = TRAIN_IMAGES, val_images: int = VAL_IMAGES) -> float:
    """Hours of one run: epochs × (training pass + validation pass)."""
    if train_img_s <= 0 or val_img_s <= 0:
        raise ValueError("img/s must be positive")
    return epochs * (train_images / train_img_s + val_images / val_img_s) / 3600


def schedule_hours(hours: list[float], gpus: int) -> float:
    """Wall hours of runs started in order, each on the first GPU that is free, as
    `reproduce.runs --gpus` does: the sum on one GPU, the longest run on as many GPUs as runs."""
    if gpus < 1:
        raise ValueError("gpus must be >= 1")
    free_at = [0.0] * gpus
    for h in hours:
        i = free_at.index(min(free_at))
        free_at[i] += h
    return max(free_at) if hours else 0.0


def table1_hours(rates: dict[str, tuple[float, float]], runs: dict[str, str] | None = None) -> dict:
    """rates: backbone -> (training img/s, validation img/s). Per run hours, the sequential total
    (`make paper`) and one run per GPU on 4 GPUs (`make paper GPUS=0,1,2,3`); a run whose
    backbone was not measured is listed in `missing` and the totals are None."""
    runs = runs or TABLE1_RUNS
    per_run = {key: run_hours(*rates[b]) for key, b in runs.items() if b in rates}
    missing = [key for key in runs if key not in per_run]
    hours = [per_run[key] for key in runs if key in per_run]
    complete = not missing
    return {"per_run_hours": per_run, "missing": missing,
            "sequential_hours": schedule_hours(hours, 1) if complete else None,
            "one_per_gpu_hours": schedule_hours(hours, len(runs)) if complete else None,
            "gpus_for_one_per_gpu": len(runs), "epochs": EPOCHS, "train_images": TRAIN_IMAGES,
            "val_images": VAL_IMAGES}
