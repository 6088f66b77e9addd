"""Every .keras file the package writes loads in safe mode, with no import hook: Keras registers
each custom class (BackboneInput, every loss of the table) when its module runs the class
definition, and `load_checkpoint` / `reproduce.evaluate.load_model` import those modules first.
In a fresh process that imports nothing else of ours, each file loads with its compiled loss."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from reproduce import losses
from reproduce.config import smoke
from reproduce.models import build_model
from reproduce.engine.training import compile_for_training

ROOT = Path(__file__).resolve().parents[3]

LOAD = """
import json, sys
import numpy as np
from reproduce.engine.inference import load_model
out = {}
for path in sys.argv[1:]:
    model = load_model(path)
    out[path] = [type(model.loss).__name__, model.predict(np.zeros((1, 32, 32, 1), "uint8"), verbose=0).tolist()]
print(json.dumps(out))
"""


def test_every_file_loads_in_safe_mode_with_its_loss(tmp_path):
    config = smoke().override(model="tiny", image_size=32)
    image = np.zeros((1, 32, 32, 1), "uint8")
    expected = {}
    for name in losses.names():
        model = build_model(config.override(loss=name))
        compile_for_training(model, config.override(loss=name), losses.build_loss(config.override(loss=name)))
        path = str(tmp_path / f"{name}.keras")
        model.save(path)
        expected[path] = [type(model.loss).__name__, model.predict(image, verbose=0).tolist()]
    done = subprocess.run([sys.executable, "-c", LOAD, *expected], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded.keys() == expected.keys()
    for path, (loss, scores) in expected.items():
        assert loaded[path][0] == loss
        np.testing.assert_array_equal(np.array(loaded[path][1]), np.array(scores))


def test_import_reproduce_alone_loads_no_keras():
    """The report (and --help) stay free of Keras/TensorFlow."""
    code = "import sys, reproduce, reproduce.losses, reproduce.backbones; print('keras' in sys.modules, 'tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "False"], done.stderr[-2000:]



def test_no_import_hook_anywhere():
    """Registration happens at class definition and TensorFlow starts quietly when a program asks
    (common.quiet.start_tensorflow): nothing puts a finder in front of `import`."""
    hooks = [str(p.relative_to(ROOT)) for pkg in ("common", "data_prep", "reproduce", "bench")
             for p in (ROOT / pkg).rglob("*.py") if "sys.meta_path" in p.read_text()]
    assert hooks == []
