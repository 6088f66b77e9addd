"""--distribute: MirroredStrategy over two logical CPUs gives the single-device result with the same
global batch (§IV.B: 32; per replica = global / replicas), and MultiWorkerMirroredStrategy with two
local worker processes trains where only the chief writes the run folder."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

# A fresh interpreter: logical devices must be configured before TensorFlow initialises.
MIRRORED = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from reproduce.config import smoke
from reproduce.train import train
data, out = sys.argv[1], sys.argv[2]
# ewl: Eq. (2) is per image, so splitting a batch over replicas cannot change it. No flip and no
# shuffle (buffer 1) so both runs see identical batches: a distributed fit opens the shuffled
# dataset one extra time, and each opening reshuffles. Graph mode, as a distributed run uses.
base = smoke().override(model="tiny", loss="ewl", batch_size=8, steps_per_epoch=2,
                        horizontal_flip=False, shuffle_buffer=1, run_eagerly=False)
train(base.override(distribute="mirrored"), data, out + "/mirrored")
train(base, data, out + "/single")
"""


def _run(cmd, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, **kw)


@pytest.mark.slow
def test_mirrored_two_replicas_equals_one_device(shards_dir, tmp_path):
    done = _run([sys.executable, "-c", MIRRORED, str(shards_dir), str(tmp_path)], timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "replicas: 2, global batch 8, per replica 4" in done.stdout
    assert json.loads((tmp_path / "mirrored" / "config.json").read_text())["replicas"] == 2
    mirrored = keras.saving.load_model(tmp_path / "mirrored" / "last.keras", compile=False).get_weights()
    single = keras.saving.load_model(tmp_path / "single" / "last.keras", compile=False).get_weights()
    for a, b in zip(mirrored, single):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # and training did move the weights (else equality would prove nothing)
    from reproduce.config import Config
    from reproduce.models import build_model

    config = Config.load(tmp_path / "single" / "config.json")
    keras.utils.set_random_seed(config.seed)
    initial = build_model(config).get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(initial, single))


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_multiworker_two_processes_only_chief_writes(shards_dir, tmp_path):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    outs = [tmp_path / "run", tmp_path / "worker1_run"]
    procs = []
    try:
        for index, out in enumerate(outs):
            env = {**os.environ, "PYTHONUNBUFFERED": "1",
                   "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
            cmd = [sys.executable, "-m", "reproduce.train", "--data", str(shards_dir), "--model", "tiny",
                   "--loss", "ewl", "--preset", "smoke", "--batch-size", "8", "--epochs", "1",
                   "--steps-per-epoch", "2", "--no-run-eagerly", "--distribute", "multiworker", "--out", str(out)]
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
        logs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(log[-2000:] for log in logs)
    assert "replicas: 2, global batch 8, per replica 4" in logs[0]
    assert json.loads((outs[0] / "config.json").read_text())["replicas"] == 2
    assert (outs[0] / "history.csv").read_text().count("\n") == 2  # header + 1 epoch
    assert (outs[0] / "last.keras").is_file()
    assert not outs[1].exists()  # the non-chief wrote nothing
