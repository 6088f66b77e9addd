"""Write the committed checkpoint fixtures: .keras files as the code of their day wrote them.

    python tests/data/make_checkpoints.py tests/data/checkpoints

For each loss (the paper's two and a reading of Eq. (2) that nests another loss), a "tiny-bn"
model (convolutions, BatchNormalization, the BackboneInput layer and the head) compiled as
`reproduce.train` compiles it, one Adam step taken (so the optimizer's state is in the file),
saved as `best.keras` beside its `config.json`, with the scores it gives four seeded images in
`expected.json`. tests/reproduce/engine/test_old_checkpoints.py loads them with today's code.
The committed files were written by the code of commit e4fb62f (2026-12-07), before the tree was
reorganised (engine/, losses/, backbones.py): they must keep loading unchanged.
"""
import json
import sys
from pathlib import Path

import numpy as np

from reproduce.config import smoke
from reproduce.losses import build_loss
from reproduce.models import build_model
from reproduce.engine.training import compile_for_training

LOSSES = ("wce", "ewl", "wce_ewl")
SIZE = 32


def images(n: int = 4) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (n, SIZE, SIZE, 1), dtype=np.uint8)


def write(out: Path, loss: str) -> None:
    config = smoke().override(model="tiny-bn", loss=loss, image_size=SIZE, batch_size=4)
    model = compile_for_training(build_model(config), config, build_loss(config, None))
    labels = (np.random.default_rng(8).random((4, 14)) < 0.3).astype("float32")
    model.train_on_batch(images(), labels)
    folder = out / f"tiny-bn_{loss}"
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "best.keras")
    config.save(folder / "config.json", preset="smoke")
    scores = np.asarray(model.predict(images(), verbose=0), dtype=np.float64)
    (folder / "expected.json").write_text(json.dumps({"scores": scores.tolist()}) + "\n")


if __name__ == "__main__":
    target = Path(sys.argv[1])
    for name in LOSSES:
        write(target, name)
    print(f"wrote {', '.join(LOSSES)} under {target}")
