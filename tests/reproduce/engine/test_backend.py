"""The same run on Keras' TensorFlow and JAX backends (reproduce/engine/backend.py, docs/gpus.md).

Both read the same TFRecords through tf.data and, with `--initializer numpy`, start from the same
weights (reproduce/init_weights.py); what is left between them is float32 round-off: XLA's CPU
kernels (JAX) and TensorFlow's oneDNN kernels add the terms of a convolution or a reduction in
other orders. Round-off of float32 is 6e-8 of a value per operation; through the two
convolutions, the head and three Adam steps of the tiny model the weights agreed to 6.2e-7 of each
tensor's largest value and the losses to 1e-7 when measured, so the tests allow 1e-5 (a bug — the
other weights, other data, another loss — moves them by 1e-2 and more). With BatchNorm
(DenseNet121) Adam's first steps turn round-off into whole ±lr steps on weights whose gradient is
near zero (docs/exactness.md), which is why these checks use the tiny model.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from reproduce import init_weights
from reproduce.engine import backend
from reproduce.config import smoke
from reproduce.engine.inference import load_model
from reproduce.models import build_model

ROOT = Path(__file__).resolve().parents[3]
TOLERANCE = 1e-5  # of a tensor's largest |value|; see the module docstring
PREDICT = """
import sys, numpy as np
from reproduce.engine.inference import load_model
model = load_model(sys.argv[1])
np.save(sys.argv[3], np.asarray(model.predict(np.load(sys.argv[2]), verbose=0)))
"""


def _train(shards, out, keras_backend, *extra):
    env = {**os.environ, "KERAS_BACKEND": keras_backend, "PYTHONUNBUFFERED": "1"}
    args = ["--data", str(shards), "--out", str(out), "--preset", "smoke", "--model", "tiny",
            "--initializer", "numpy", "--epochs", "3", "--steps-per-epoch", "1", *extra]
    return subprocess.Popen([sys.executable, "-m", "reproduce.train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def backend_runs(shards_dir, tmp_path_factory):
    """{backend: run folder}: the tiny model with Eq. (1), 3 epochs of one Adam step each."""
    root = tmp_path_factory.mktemp("backends")
    procs = {name: _train(shards_dir, root / name, name, "--loss", "wce") for name in ("tensorflow", "jax")}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name}: {err[-2000:]}"
        assert f"Keras backend {name}" in out  # the plan line says which backend trains
    return {name: root / name for name in procs}


def test_jax_and_tensorflow_train_the_same_numbers(backend_runs):
    tf_run, jax_run = backend_runs["tensorflow"], backend_runs["jax"]
    for name, run in backend_runs.items():
        assert json.loads((run / "config.json").read_text())["keras_backend"] == name
    tf_loss = pd.read_csv(tf_run / "history.csv")["loss"].to_numpy()
    jax_loss = pd.read_csv(jax_run / "history.csv")["loss"].to_numpy()
    assert len(tf_loss) == 3
    np.testing.assert_allclose(jax_loss, tf_loss, rtol=TOLERANCE)  # one Adam step per epoch
    tf_w = keras.saving.load_model(tf_run / "last.keras", compile=False).get_weights()
    jax_w = keras.saving.load_model(jax_run / "last.keras", compile=False).get_weights()
    start = build_model(smoke().override(model="tiny", initializer="numpy")).get_weights()
    for a, b, w0 in zip(tf_w, jax_w, start):
        assert np.max(np.abs(a - b)) <= TOLERANCE * np.max(np.abs(a))
        assert not np.array_equal(a, w0)  # both trained: agreement is not two untouched starts


def test_a_file_written_under_jax_predicts_the_same_under_tensorflow(backend_runs, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 1), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    model_path = backend_runs["jax"] / "best.keras"
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    done = subprocess.run([sys.executable, "-c", PREDICT, str(model_path), str(tmp_path / "images.npy"),
                           str(tmp_path / "jax.npy")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    here = load_model(model_path).predict(images, verbose=0)
    assert keras.backend.backend() == "tensorflow"
    np.testing.assert_allclose(here, np.load(tmp_path / "jax.npy"), rtol=0, atol=1e-6)


def test_tensorflow_only_options_are_refused_on_jax(monkeypatch):
    monkeypatch.setattr(backend, "name", lambda: "jax")
    with pytest.raises(backend.UnsupportedOnBackend, match="--distribute mirrored"):
        backend.check_supported(smoke().override(distribute="mirrored"))
    with pytest.raises(backend.UnsupportedOnBackend, match="--cpu-replicas"):
        backend.check_supported(smoke().override(cpu_replicas=2))
    backend.check_supported(smoke())  # one device: fine
    from reproduce.gradcam import GradCAM

    with pytest.raises(backend.UnsupportedOnBackend, match="Grad-CAM"):
        GradCAM(build_model(smoke().override(model="tiny")))


def test_numpy_initializer_depends_on_the_seed_only():
    config = smoke().override(model="tiny", initializer="numpy")
    keras.utils.set_random_seed(1)
    a = build_model(config).get_weights()
    keras.utils.set_random_seed(2)  # the backend's generator moves; the NumPy draws do not
    b = build_model(config).get_weights()
    c = build_model(config.override(seed=1)).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_numpy_draws_have_the_initializers_distribution():
    rng = np.random.default_rng(0)
    glorot = init_weights.draw(keras.initializers.GlorotUniform(), (300, 200), rng)
    assert abs(glorot.max() - np.sqrt(6 / 500)) < 1e-3 and abs(glorot.var() - 2 / 500) < 1e-4
    he = init_weights.draw(keras.initializers.HeNormal(), (3, 3, 64, 64), rng)  # truncated, fan_in 576
    assert abs(he.std() - np.sqrt(2 / 576)) < 2e-3 and np.abs(he).max() <= 2 * np.sqrt(2 / 576) / 0.8796 + 1e-9
    assert init_weights.fans((3, 3, 64, 32)) == (576, 288)
    with pytest.raises(init_weights.UnknownInitializer):
        init_weights.draw(keras.initializers.Orthogonal(), (4, 4), rng)


# Runs a program as `python -m MODULE ARGS` would, recording whether TensorFlow's GPUs were hidden
# and whether that happened before its runtime started (after it, set_visible_devices raises).
SPY = """
import json, runpy, sys
import tensorflow as tf
real, hidden = tf.config.set_visible_devices, []
def spy(devices, device_type=None):
    real(devices, device_type)
    hidden.append([list(devices), device_type])
tf.config.set_visible_devices = spy
sys.argv = sys.argv[1:]
try:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
finally:
    print("HIDDEN " + json.dumps(hidden), file=sys.stderr)
"""


@pytest.mark.slow
def test_every_program_that_builds_or_loads_a_model_hides_the_gpus_under_jax(backend_runs, shards_dir,
                                                                             phantom_dir, tmp_path):
    """Under KERAS_BACKEND=jax, TensorFlow (which only reads the TFRecords) must not take the GPU
    memory JAX needs: train, evaluate and predict each hide the GPUs from it before its runtime
    starts (a CPU machine shows it too: set_visible_devices fails once the runtime is up)."""
    run = backend_runs["jax"]
    image = sorted((phantom_dir / "images").iterdir())[0]
    programs = {
        "reproduce.train": ["--data", str(shards_dir), "--out", str(tmp_path / "train"), "--preset",
                            "smoke", "--model", "tiny", "--epochs", "1", "--steps-per-epoch", "1"],
        "reproduce.evaluate": ["--run", str(run), "--data", str(shards_dir), "--split", "val"],
        "reproduce.predict": ["--run", str(run), "--out", str(tmp_path / "predict"), str(image)],
    }
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    for module, args in programs.items():
        done = subprocess.run([sys.executable, "-c", SPY, module, *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{module}: {done.stderr[-2000:]}"
        hidden = json.loads(done.stderr.rsplit("HIDDEN ", 1)[1].splitlines()[0])
        assert [[], "GPU"] in hidden, f"{module} never hid the GPUs from TensorFlow"


def _calls(path: Path) -> list[str]:
    import ast

    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            names.append(ast.unparse(node.func))
    return names


def _first_calls(path: Path, function: str, n: int = 4) -> list[str]:
    import ast

    body = next(node for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.FunctionDef) and node.name == function).body
    return [ast.unparse(n.func) for stmt in body[:n] for n in ast.walk(stmt) if isinstance(n, ast.Call)]


def test_models_are_built_and_loaded_in_two_places_which_hide_the_gpus_first():
    """The static half of the check above, in the fast tier: only engine/inference.py loads a
    .keras file, and no program builds or loads a model itself; training's first step is
    distribute.setup → configure_devices → backend.prepare → keep_tensorflow_off_gpus, and
    load_checkpoint calls keep_tensorflow_off_gpus before loading. A new program that loads or
    builds a model some other way fails here."""
    engine = ROOT / "reproduce" / "engine"
    for path in sorted((ROOT / "reproduce").rglob("*.py")) + sorted((ROOT / "bench").rglob("*.py")):
        loads = [c for c in _calls(path) if c.endswith("saving.load_model")]
        assert not loads or path == engine / "inference.py", f"{path.relative_to(ROOT)} loads a model itself: {loads}"
    for program in ("train", "evaluate", "predict", "localize", "ablation"):
        path = ROOT / "reproduce" / f"{program}.py"
        own = [c for c in _calls(path) if c.split(".")[-1] == "build_model" or c.endswith("saving.load_model")]
        assert not own, f"reproduce/{program}.py builds or loads a model itself: {own}"
    assert _first_calls(engine / "training.py", "train")[0] == "distribute.setup"
    assert _first_calls(engine / "distribute.py", "setup")[0] == "configure_devices"
    assert "backend.prepare" in _first_calls(engine / "distribute.py", "configure_devices", 3)
    assert "keep_tensorflow_off_gpus" in _first_calls(engine / "backend.py", "prepare")
    assert "backend.keep_tensorflow_off_gpus" in _first_calls(engine / "inference.py", "load_checkpoint")
