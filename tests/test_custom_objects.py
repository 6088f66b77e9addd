"""`import reproduce` is all a user needs to load, in safe mode, every .keras file the package
writes: a run's best.keras and a model compiled with each registered loss (the paper's two and
the readings of Eq. (2)), in a fresh process that imports nothing else of ours."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from reproduce.config import smoke
from reproduce.loss_registry import available_losses, build_loss
from reproduce.models import build_model
from reproduce.train import compile_for_training

ROOT = Path(__file__).resolve().parents[1]

LOAD = """
import json, sys
import keras, reproduce
import numpy as np
out = {}
for path in sys.argv[1:]:
    model = keras.saving.load_model(path, safe_mode=True)
    out[path] = [type(model.loss).__name__, model.predict(np.zeros((1, 32, 32, 1), "uint8"), verbose=0).tolist()]
print(json.dumps(out))
"""


def test_every_file_loads_in_safe_mode_after_import_reproduce(tmp_path):
    config = smoke().override(model="tiny", image_size=32)
    image = np.zeros((1, 32, 32, 1), "uint8")
    expected = {}
    for name in available_losses():
        model = build_model(config.override(loss=name))
        compile_for_training(model, config.override(loss=name), build_loss(config.override(loss=name)))
        path = str(tmp_path / f"{name}.keras")
        model.save(path)
        expected[path] = [type(model.loss).__name__, model.predict(image, verbose=0).tolist()]
    done = subprocess.run([sys.executable, "-c", LOAD, *expected], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded.keys() == expected.keys()
    for path, (loss, scores) in expected.items():
        assert loaded[path][0] == loss
        np.testing.assert_array_equal(np.array(loaded[path][1]), np.array(scores))


def test_import_reproduce_alone_loads_no_keras():
    """The report (and --help) stay free of Keras/TensorFlow: registration waits for Keras."""
    code = "import sys, reproduce; print('keras' in sys.modules, 'tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "False"], done.stderr[-2000:]


# Every module that imports Keras on its way to a custom object, imported first in a process of
# its own: the one that happens to import Keras first must not meet a half-imported sibling
# (`import reproduce.ablation` once failed so, inside `import keras`: readings → models →
# loss_registry → readings.LOSSES of the half-imported readings).
FIRST_IMPORTS = ("reproduce.models", "reproduce.losses", "reproduce.study.readings",
                 "reproduce.loss_registry", "reproduce.init_weights", "reproduce.ablation")
REGISTERED = ("reproduce>BackboneInput", "reproduce>EntropyWeightingLoss",
              "reproduce>WeightedBinaryCrossentropy", "reproduce>NegatedEntropyWeightingLoss")


def test_any_module_imported_first_registers_every_custom_object():
    code = ("import importlib, json, sys; importlib.import_module(sys.argv[1]); import keras; "
            "print(json.dumps(sorted(keras.saving.get_custom_objects())))")
    # JAX: the same import graph as under TensorFlow, started in a third of the time.
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    procs = {name: subprocess.Popen([sys.executable, "-c", code, name], cwd=ROOT, env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for name in FIRST_IMPORTS}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"import {name} first: {err[-1500:]}"
        registered = json.loads(out.strip().splitlines()[-1])
        assert set(REGISTERED) <= set(registered), (name, registered)
