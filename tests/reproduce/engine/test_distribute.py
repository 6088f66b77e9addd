"""Same numbers on 1 or N replicas and on N workers: global-batch Wang factors, synchronized
BatchNorm and one dataset split over replicas (`--distribute mirrored --cpu-replicas 2` against
`--distribute none`, through the CLI, flip and shuffle on); per-worker input and resume of a
multi-worker run (two local processes on 127.0.0.1).

What "the same" means, 2 replicas vs 1 device (docs/exactness.md). The runs do the same
arithmetic in another order (each replica sums its half of the batch, then the halves are added;
synchronized BatchNorm takes the variance as E[x²] − E[x]² of summed moments), so with plain SGD
the weights agree to float32 round-off. The measure: the distance between the two runs' weights
over the distance training moved them (Frobenius norms over all tensors). Measured, 2 SGD steps,
batch 8: "tiny-bn" (conv-BatchNorm CNN) 5.3e-7 (wce) and 7.1e-7 (ewl); the same run with BatchNorm
NOT synchronized gives 0.043 and 0.032, so the bound 1e-4 sits 140× above round-off and 300× below
the bug (the test asserts both). DenseNet121 (120 BatchNorm layers, graph mode, 1 SGD step):
3.2e-5 → bound 1e-3 (30×). Adam is not used here: its first updates are
lr·g/(|g|+ε), ±lr whatever the size of g, so round-off on near-zero gradients becomes whole steps.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest


ROOT = Path(__file__).resolve().parents[3]
RELATIVE_BOUND = {"tiny-bn": 1e-4, "densenet121": 1e-3}  # of the distance trained, SGD


def _env(**extra):
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


def _train_cmd(data, out, *args):
    return [sys.executable, "-m", "reproduce.train", "--data", str(data), "--out", str(out),
            "--preset", "smoke", *args]


def _weights(run):
    import reproduce.models  # noqa: F401  (registers the custom input layer)

    return keras.saving.load_model(Path(run) / "last.keras", compile=False).get_weights()


def _distance_over_moved(weights, start, other):
    moved = np.sqrt(sum(np.sum((x - w) ** 2) for x, w in zip(weights, start)))
    apart = np.sqrt(sum(np.sum((x - y) ** 2) for x, y in zip(weights, other)))
    assert moved > 0.01  # training moved the weights, else equality would prove nothing
    return apart / moved


# Weighted CE is the loss with batch statistics of its own (Wang's β from the global batch);
# ewl has none, so its replica case is DenseNet121's, in the slow tier.
@pytest.mark.parametrize("model, loss, steps", [
    ("tiny-bn", "wce", "2"), pytest.param("densenet121", "ewl", "1", marks=pytest.mark.slow)])
def test_two_cpu_replicas_train_like_one_device(model, loss, steps, shards_dir, tmp_path):
    """§IV.B's batch of 32 (here 8) split over 2 replicas gives the single-device weights; with
    BatchNorm not synchronized (tiny-bn only) it does not, so the bound can catch that bug."""
    common = ["--model", model, "--loss", loss, "--batch-size", "8", "--steps-per-epoch", steps,
              "--optimizer", "sgd", "--no-run-eagerly"]
    two = ["--distribute", "mirrored", "--cpu-replicas", "2"]
    variants = {"one": [], "two": two}
    if model == "tiny-bn":
        variants["unsynced"] = [*two, "--no-sync-batchnorm"]
    procs = {name: subprocess.Popen(_train_cmd(shards_dir, tmp_path / name, *common, *extra), cwd=ROOT,
                                    env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, extra in variants.items()}
    outputs = {name: p.communicate(timeout=900) for name, p in procs.items()}
    assert all(p.returncode == 0 for p in procs.values()), str(outputs)[-3000:]
    assert "on 2 replica(s) (4 each)" in outputs["two"][0]
    saved = json.loads((tmp_path / "two" / "config.json").read_text())
    assert saved["replicas"] == 2 and saved["cpu_replicas"] == 2 and saved["sync_batchnorm"]
    from reproduce.config import Config
    from reproduce.models import build_model

    keras.utils.set_random_seed(0)
    start = build_model(Config.load(tmp_path / "one" / "config.json")).get_weights()
    weights = {name: _weights(tmp_path / name) for name in variants}
    relative = {name: _distance_over_moved(weights["one"], start, weights[name]) for name in variants}
    print(f"{model}/{loss}: |Δw| / |trained| = {relative}")
    assert relative["two"] < RELATIVE_BOUND[model]
    if "unsynced" in relative:
        assert relative["unsynced"] > 100 * RELATIVE_BOUND[model]


def test_global_batch_factors_over_replicas():
    """Wang's β_P, β_N of a batch split over 2 replicas are those of the whole batch: 6 of 28
    labels positive → β_P = 28/6, β_N = 28/22; the first replica's half alone has 1 of 14."""
    script = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from reproduce.losses.paper import batch_factors
y = np.zeros((2, 14), np.float32); y[0, 0] = 1; y[1, :5] = 1
strategy = tf.distribute.MirroredStrategy(tf.config.list_logical_devices("CPU"))
data = strategy.experimental_distribute_values_from_function(lambda ctx: y[ctx.replica_id_in_sync_group][None])
out = strategy.run(lambda v: tf.stack(batch_factors(v)), args=(data,))
print([strategy.experimental_local_results(out)[k].numpy().tolist() for k in range(2)])
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    per_replica = json.loads(done.stdout.strip().splitlines()[-1])
    for beta_p, beta_n in per_replica:
        assert beta_p == pytest.approx(28 / 6) and beta_n == pytest.approx(28 / 22)


def test_workers_read_disjoint_shards_whose_union_is_the_training_split(multi_shards_dir):
    """File-level sharding: each worker decodes only its own shard files, every record once."""
    from reproduce.config import smoke
    from reproduce.data import (make_eval_dataset, read_manifest, shard_entries, training_dataset,
                                worker_shards)

    manifest = read_manifest(multi_shards_dir)
    entries = shard_entries(multi_shards_dir, "train", manifest)
    assert len(entries) >= 4
    mine = [worker_shards(entries, w, 2) for w in range(2)]
    files = [{e["file"] for e in m} for m in mine]
    assert not files[0] & files[1] and files[0] | files[1] == {e["file"] for e in entries}
    config = smoke().override(model="tiny", horizontal_flip=False, cache=False, steps_per_epoch=None)
    seen = []
    for w in range(2):
        n = sum(e["records"] for e in mine[w])  # batch 1: one epoch is every record of the worker
        ds = training_dataset(multi_shards_dir, config, n, worker=w, workers=2, batch_size=1)
        seen.append(sorted(x.numpy().tobytes() for x, _ in ds))
    everything = sorted(x.numpy().tobytes() for batch in make_eval_dataset(multi_shards_dir, "train", config)
                        for x in batch[0])
    assert sorted(seen[0] + seen[1]) == everything
    assert not set(seen[0]) & set(seen[1])


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _start_workers(data, outs, epochs, steps=2):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    for index, out in enumerate(outs):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        cmd = _train_cmd(data, out, "--model", "tiny", "--loss", "wce", "--batch-size", "8",
                         "--epochs", str(epochs), "--steps-per-epoch", str(steps),
                         "--no-run-eagerly", "--distribute", "multiworker")
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=_env(TF_CONFIG=tf_config),
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return procs


def _finish(procs, timeout=300):
    try:
        logs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [p.returncode for p in procs], logs


def _history(run):
    try:
        return pd.read_csv(run / "history.csv")["epoch"].tolist()
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return []


@pytest.mark.slow
def test_multiworker_kill_both_resume_both_and_disagreement(multi_shards_dir, tmp_path):
    """Two local workers sharing one run folder: kill -9 both after epoch 1's backup, start both
    again → epochs 1..4 once each, as an uninterrupted run; a finished run ends on both; a worker
    pointed at another folder makes both stop with one line instead of hanging."""
    run = tmp_path / "run"
    procs = _start_workers(multi_shards_dir, [run, run], epochs=4, steps=6)
    state = run / "backup" / "state.json"
    deadline = time.time() + 240
    while time.time() < deadline and all(p.poll() is None for p in procs):
        if state.exists() and json.loads(state.read_text())["epoch"] >= 1:
            break
        time.sleep(0.02)
    for p in procs:
        p.send_signal(signal.SIGKILL)
    _finish(procs)
    done = json.loads(state.read_text())["epoch"]
    assert 1 <= done < 4, "the run ended before it could be killed"
    codes, logs = _finish(_start_workers(multi_shards_dir, [run, run], epochs=4, steps=6))
    assert codes == [0, 0], "\n".join(log[-2000:] for log in logs)
    assert f"epochs {done + 1}-4 of 4" in logs[0] and _history(run) == [1, 2, 3, 4]
    assert (run / "last.keras").is_file() and not (run / "backup").exists()
    codes, logs = _finish(_start_workers(multi_shards_dir, [run, run], epochs=4, steps=6))
    assert codes == [0, 0] and all("already trained for 4 epochs" in log for log in logs)
    codes, logs = _finish(_start_workers(multi_shards_dir, [run, tmp_path / "elsewhere"], epochs=4, steps=6))
    assert codes == [1, 1]
    for log in logs:
        errors = [line for line in log.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "workers disagree on the epochs already trained: [4, 0]" in errors[0]


def test_multiworker_needs_a_shard_file_per_worker(shards_dir):
    from reproduce.config import smoke
    from reproduce.data import training_dataset

    with pytest.raises(ValueError, match="fewer shard files than the 2 workers"):
        training_dataset(shards_dir, smoke(), 1, worker=1, workers=2)


@pytest.mark.parametrize("loss", ["wce", pytest.param("ewl", marks=pytest.mark.slow)])
def test_mirrored_on_one_device_is_bit_identical_to_none(loss, shards_dir, tmp_path):
    """Keras opens a distributed dataset twice (it peeks at a batch to build the model); the
    data of an epoch depend on (seed, epoch) only, so the second opening sees the same batches.
    Before, a reshuffling stream made mirrored-on-one-device a different training."""
    runs = {}
    for mode in ("none", "mirrored"):
        common = ["--model", "tiny", "--loss", loss, "--epochs", "2", "--steps-per-epoch", "3",
                  "--no-run-eagerly", "--distribute", mode]
        done = subprocess.run(_train_cmd(shards_dir, tmp_path / mode, *common), cwd=ROOT, env=_env(),
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        runs[mode] = _weights(tmp_path / mode)
    assert all(np.array_equal(a, b) for a, b in zip(runs["none"], runs["mirrored"]))


def test_paper_preset_configures_devices_without_op_determinism():
    """The paper preset (deterministic=False) must get past configure_devices: TF 2.21 exports
    no disable_op_determinism, and calling it stopped every `make paper` run before its first
    step (AttributeError); a deterministic run before it in the same process is undone."""
    from tensorflow.python.framework import config as tf_config

    from reproduce.config import paper, smoke
    from reproduce.engine.distribute import configure_devices

    before = tf_config.is_op_determinism_enabled()
    try:
        configure_devices(smoke())
        assert tf_config.is_op_determinism_enabled()
        configure_devices(paper())
        assert not tf_config.is_op_determinism_enabled()
    finally:
        (tf_config.enable_op_determinism if before else tf_config.disable_op_determinism)()
