"""Checkpoints written by older code keep loading: the committed fixtures of
tests/data/make_checkpoints.py (a tiny-bn model with Eq. (1), Eq. (2) and a reading of Eq. (2)
that nests Eq. (1), each after one Adam step) load through load_checkpoint, give the scores they
gave when written, and load with their compiled loss through plain Keras in safe mode."""
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from reproduce.config import Config
from reproduce.engine.inference import load_checkpoint

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "data" / "checkpoints"
RUNS = sorted(p for p in FIXTURES.iterdir() if p.is_dir())


def _images(n: int = 4) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (n, 32, 32, 1), dtype=np.uint8)


def test_every_loss_has_a_fixture():
    assert [p.name for p in RUNS] == ["tiny-bn_ewl", "tiny-bn_wce", "tiny-bn_wce_ewl"]


@pytest.mark.parametrize("run", RUNS, ids=lambda p: p.name)
def test_an_old_checkpoint_loads_and_predicts_as_it_did(run):
    config = Config.load(run / "config.json")
    model = load_checkpoint(str(run / "best.keras"), config)  # a path as a user types it
    expected = np.asarray(json.loads((run / "expected.json").read_text())["scores"])
    np.testing.assert_allclose(model.predict(_images(), verbose=0), expected, rtol=0, atol=1e-6)
    compiled = keras.saving.load_model(run / "best.keras", safe_mode=True)  # with its loss
    assert type(compiled.loss).__name__ == {"wce": "WeightedBinaryCrossentropy",
                                            "ewl": "EntropyWeightingLoss",
                                            "wce_ewl": "WeightedCEPlusEntropyWeighting"}[config.loss]
