"""reproduce.train: run folder contents, validation AUCs, checkpoints, resume after kill -9, NaN stop,
and every Table I model/loss pair through the CLI at smoke scale."""
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from data_prep.schema import CLASSES
from reproduce.engine import callbacks as cb
from reproduce.config import smoke
from reproduce.engine.inference import predict_split
from reproduce.engine.training import TrainingFailed, train
from reproduce.train import main

ROOT = Path(__file__).resolve().parents[3]
TINY = ["--model", "tiny", "--preset", "smoke", "--batch-size", "8"]


def tiny_config(**kw):
    return smoke().override(model="tiny", batch_size=8, **kw)


@pytest.fixture(scope="module")
def tiny_run(shards_dir, tmp_path_factory):
    """A 3-epoch tiny run through the CLI (in-process)."""
    out = tmp_path_factory.mktemp("run") / "tiny_wce"
    assert main(["--data", str(shards_dir), *TINY, "--loss", "wce", "--epochs", "3",
                 "--out", str(out)]) == 0
    return out


def test_run_folder_has_config_history_and_checkpoints(tiny_run, shards_dir):
    assert {"config.json", "history.csv", "best.keras", "last.keras"} <= {p.name for p in tiny_run.iterdir()}
    assert not (tiny_run / "backup").exists()  # removed once the run finished
    saved = json.loads((tiny_run / "config.json").read_text())
    assert saved["model"] == "tiny" and saved["loss"] == "wce" and saved["epochs"] == 3
    assert saved["preset"] == "smoke" and saved["learning_rate"] == 1e-3  # §IV.B
    assert len(saved["manifest_sha256"]) == 64
    assert saved["synthetic"] is True  # the phantom's mark, from manifest.json
    assert saved["data_summary"]["split_method"] == "paper" and saved["data_summary"]["size"] == 32
    assert saved["provenance"]["libraries"]["keras"] == keras.__version__
    assert set(saved["provenance"]["code"]) in ({"git_commit", "git_dirty"}, {"package_version"})
    assert not Path(saved["data_dir"]).is_absolute() or str(ROOT) not in saved["data_dir"]
    assert saved["manifest_bytes"] == (shards_dir / "manifest.json").stat().st_size
    history = pd.read_csv(tiny_run / "history.csv")
    assert list(history.columns) == cb.HISTORY_COLUMNS
    assert history["epoch"].tolist() == [1, 2, 3]
    assert np.isfinite(history[["loss", "val_loss"]].to_numpy()).all()


def test_history_auc_is_the_auc_of_the_best_checkpoint_on_val(tiny_run, shards_dir):
    """The callback's val_mean_auc is really mean_auc(roc_auc_per_class) of the val split."""
    from reproduce.config import Config
    from reproduce.data import make_eval_dataset

    config = Config.load(tiny_run / "config.json")
    model = keras.saving.load_model(tiny_run / "best.keras")
    labels, scores, ids, _ = predict_split(make_eval_dataset(shards_dir, "val", config),
                                              model.predict_on_batch)
    val_csv = pd.read_csv(shards_dir / "splits" / "val.csv", dtype={"image_index": str})
    assert sorted(ids) == sorted(val_csv["image_index"])
    expected = cb.auc_logs(labels, scores)
    history = pd.read_csv(tiny_run / "history.csv")
    best_row = history.loc[history["val_mean_auc"].idxmax()]  # first epoch with the maximum
    assert best_row["val_mean_auc"] == pytest.approx(expected["val_mean_auc"], abs=1e-6)
    for c in CLASSES:
        want, got = expected[f"val_auc_{c}"], best_row[f"val_auc_{c}"]
        assert (np.isnan(want) and np.isnan(got)) or got == pytest.approx(want, abs=1e-6)


def test_best_checkpoint_is_the_epoch_with_highest_val_auc(tmp_path):
    """Hand-fed AUCs 0.6, 0.8, 0.7, NaN: best.keras holds epoch 2's weights, last.keras epoch 4's,
    and each file says which epoch it holds."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    last, best = cb.LastCheckpoint(tmp_path), cb.BestCheckpoint(tmp_path)
    for callback in (last, best):
        callback.set_model(model)
    for epoch, auc in enumerate([0.6, 0.8, 0.7, float("nan")]):
        model.layers[0].bias.assign([float(epoch + 1)])
        last.on_epoch_end(epoch, {"val_mean_auc": auc})
        best.on_epoch_end(epoch, {"val_mean_auc": auc})
    assert float(keras.saving.load_model(tmp_path / "best.keras").layers[0].bias.numpy()[0]) == 2.0
    assert float(keras.saving.load_model(tmp_path / "last.keras").layers[0].bias.numpy()[0]) == 4.0
    assert cb.checkpoint_note(tmp_path / "best.keras") == {"epoch": 2, "val_mean_auc": 0.8}
    assert cb.checkpoint_note(tmp_path / "last.keras")["epoch"] == 4
    assert not list(tmp_path.glob(".*tmp*"))  # atomic saves leave no temporary files


def test_best_keras_is_written_after_the_backup(shards_dir, tmp_path):
    """The order that makes best.keras reproducible: last.keras, history row, backup, best.keras."""
    from reproduce.engine import training as train_module

    backup = cb.AtomicBackupAndRestore(tmp_path / "backup")
    config = tiny_config()
    order = [type(c).__name__ for c in train_module._callbacks(
        config, shards_dir, tmp_path, None, keras.Sequential([keras.Input((2,))]), True, backup,
        (float("-inf"), None), cb.Progress(1, 1))]
    assert order.index("LastCheckpoint") < order.index("HistoryCSV") < order.index(
        "AtomicBackupAndRestore") < order.index("BestCheckpoint") == len(order) - 1


def test_restore_best_after_a_kill_between_backup_and_copy(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    cb.save_atomically(model, tmp_path / "best.keras", {"epoch": 1, "val_mean_auc": 0.6})
    cb.save_atomically(model, tmp_path / "last.keras", {"epoch": 2, "val_mean_auc": 0.8})
    assert cb.restore_best(tmp_path, best_epoch=2)  # epoch 2 was backed up, its copy never made
    assert cb.checkpoint_note(tmp_path / "best.keras")["epoch"] == 2
    assert not cb.restore_best(tmp_path, best_epoch=2)  # nothing to mend
    with pytest.raises(RuntimeError, match="history.csv's best is epoch 3"):
        cb.restore_best(tmp_path, best_epoch=3)
    model.save(tmp_path / "best.keras")  # older code: no note, left alone
    assert not cb.restore_best(tmp_path, best_epoch=3)


def test_reconcile_history_drops_rows_past_the_backup(tmp_path):
    path = tmp_path / "history.csv"
    rows = [{"epoch": e, "loss": float(e)} for e in (1, 2, 2, 3)]
    pd.DataFrame(rows, columns=cb.HISTORY_COLUMNS).to_csv(path, index=False)
    kept = cb.reconcile_history(path, completed_epochs=2)
    assert kept["epoch"].tolist() == [1, 2]
    assert pd.read_csv(path)["epoch"].tolist() == [1, 2]
    with pytest.raises(RuntimeError, match="no row for completed epoch"):
        cb.reconcile_history(path, completed_epochs=3)


def _history_rows(path):
    try:
        return pd.read_csv(path)["epoch"].tolist()
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return []


def _run_cli(args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "reproduce.train", *args], cwd=ROOT, env=env, **kw)


def _load_weights(path):
    return keras.saving.load_model(path, compile=False).get_weights()


@pytest.mark.slow
def test_kill_9_then_same_command_ends_bit_identical(shards_dir, tmp_path):
    """4 epochs uninterrupted vs kill -9 after a backup, then the same command: the same
    history.csv and the same bits in last.keras and best.keras. It holds because each epoch's
    data are a function of (seed, epoch) only, the backup restores the weights, Adam's moments
    and iteration count, the best score comes back from history.csv, and op determinism (on in
    the smoke preset) makes every CPU kernel repeat its arithmetic exactly."""
    common = ["--data", str(shards_dir), *TINY, "--loss", "wce", "--epochs", "4", "--steps-per-epoch", "20"]
    ref = _run_cli([*common, "--out", str(tmp_path / "ref")], stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, text=True)
    assert ref.wait(timeout=300) == 0, ref.communicate()[1][-2000:]
    ref.stderr.close()
    out = tmp_path / "run"
    proc = _run_cli([*common, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "backup" / "state.json"
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if state.exists() and json.loads(state.read_text())["epoch"] >= 1:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    done = json.loads(state.read_text())["epoch"]
    assert 1 <= done < 4 and len(_history_rows(out / "history.csv")) in (done, done + 1)
    again = _run_cli([*common, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr[-2000:]
    assert f"epochs {done + 1}-4 of 4" in stdout
    assert [line.split(":")[0] for line in stdout.splitlines() if line.startswith("epoch ")] == \
        [f"epoch {e}/4" for e in range(done + 1, 5)]
    pd.testing.assert_frame_equal(pd.read_csv(out / "history.csv"), pd.read_csv(tmp_path / "ref" / "history.csv"),
                                  check_exact=True)
    for name in ("last.keras", "best.keras"):
        for a, b in zip(_load_weights(out / name), _load_weights(tmp_path / "ref" / name)):
            assert np.array_equal(a, b), name


_KILL_AT_FIRST_BEST = """
import os, sys
from reproduce.engine import callbacks
from reproduce.train import main

def killed(self, epoch, logs=None):  # the process dies after the backup, before best.keras
    os._exit(9)

callbacks.BestCheckpoint.on_epoch_end = killed
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_kill_between_the_backup_and_best_keras(shards_dir, tmp_path):
    """Killed after epoch 1's backup, before its best.keras: the same command resumes at epoch 2,
    mends best.keras from last.keras, and ends with the files of an uninterrupted run."""
    common = ["--data", str(shards_dir), *TINY, "--loss", "wce", "--epochs", "3", "--steps-per-epoch", "4"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    ref = subprocess.run([sys.executable, "-m", "reproduce.train", *common, "--out", str(tmp_path / "ref")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-2000:]
    out = tmp_path / "run"
    killed = subprocess.run([sys.executable, "-c", _KILL_AT_FIRST_BEST, *common, "--out", str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == 9, killed.stderr[-2000:]
    assert json.loads((out / "backup" / "state.json").read_text())["epoch"] == 1
    assert not (out / "best.keras").exists() and cb.checkpoint_note(out / "last.keras")["epoch"] == 1
    again = subprocess.run([sys.executable, "-m", "reproduce.train", *common, "--out", str(out)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "epochs 2-3 of 3" in again.stdout, again.stderr[-2000:]
    history = pd.read_csv(out / "history.csv")
    pd.testing.assert_frame_equal(history, pd.read_csv(tmp_path / "ref" / "history.csv"), check_exact=True)
    best_epoch = int(history.loc[history["val_mean_auc"].idxmax(), "epoch"])
    assert cb.checkpoint_note(out / "best.keras")["epoch"] == best_epoch
    for a, b in zip(_load_weights(out / "best.keras"), _load_weights(tmp_path / "ref" / "best.keras")):
        assert np.array_equal(a, b)


def test_nan_loss_cli_exits_with_one_line(shards_dir, tmp_path, capsys):
    out = tmp_path / "nan"
    rc = main(["--data", str(shards_dir), *TINY, "--loss", "ewl", "--steps-per-epoch", "5",
               "--learning-rate", "1e30", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert err[0].startswith("error: loss is NaN at epoch 1 step ") and "last good checkpoint: none" in err[0]
    assert _history_rows(out / "history.csv") == []


@keras.saving.register_keras_serializable(package="tests")
class NaNAfter(keras.layers.Layer):
    """Identity until `after` training calls, NaN from then on (a loss blow-up on cue)."""

    def __init__(self, after, **kw):
        super().__init__(**kw)
        self.after = after
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False, name="calls")

    def call(self, x, training=False):
        if training:
            self.calls.assign(self.calls + 1.0)
        return keras.ops.where(self.calls > self.after, float("nan"), x)

    def get_config(self):
        return {**super().get_config(), "after": self.after}


def test_nan_in_epoch_2_keeps_epoch_1_outputs(shards_dir, tmp_path):
    from reproduce.models import tiny_backbone

    def backbone(shape):
        inputs = keras.Input(shape)
        return keras.Model(inputs, NaNAfter(2)(tiny_backbone(shape)(inputs)))

    out = tmp_path / "run"
    expected = r"loss is NaN at epoch 2 step 1; last good checkpoint: .*last\.keras \(epoch 1\)"
    with pytest.raises(TrainingFailed, match=expected):
        train(tiny_config(epochs=3), shards_dir, out, backbone=backbone)
    assert _history_rows(out / "history.csv") == [1]
    weights = keras.saving.load_model(out / "last.keras").get_weights()
    assert all(np.isfinite(w).all() for w in weights)  # epoch 1's good weights, not NaN ones


def test_resume_with_another_config_is_refused(tiny_run, shards_dir, capsys):
    rc = main(["--data", str(shards_dir), *TINY, "--loss", "wce", "--epochs", "3", "--learning-rate", "0.01",
               "--out", str(tiny_run)])
    assert rc == 1 and "differs in learning_rate" in capsys.readouterr().err


def test_mixed_precision_on_cpu_warns_and_stays_float32(shards_dir, tmp_path, capsys):
    out = tmp_path / "mp"
    assert main(["--data", str(shards_dir), *TINY, "--loss", "wce", "--steps-per-epoch", "1",
                 "--mixed-precision", "--out", str(out)]) == 0
    assert "warning: --mixed-precision needs a GPU" in capsys.readouterr().err
    saved = json.loads((out / "config.json").read_text())
    assert saved["mixed_precision"] is True and saved["mixed_precision_active"] is False
    assert keras.mixed_precision.global_policy().name == "float32"


def test_missing_data_is_a_one_line_error(tmp_path, capsys):
    rc = main(["--data", str(tmp_path / "nowhere"), *TINY, "--loss", "wce", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "manifest.json" in err[0]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet50"])  # vgg16 and densenet121: tests/reproduce/engine/test_distribute.py
@pytest.mark.parametrize("loss", ["wce", "ewl"])
def test_cli_trains_every_table1_pair_at_smoke_scale(model, loss, shards_dir, tmp_path):
    """§IV.D: three backbones × {Eq. (1), Eq. (2)}; 32², batch 4, 1 step, eager, no weights.
    VGG16 and DenseNet121 train through the CLI, on 1 and 2 replicas, in test_distribute.py."""
    out = tmp_path / f"{model}_{loss}"
    start = time.perf_counter()
    assert main(["--data", str(shards_dir), "--model", model, "--loss", loss, "--preset", "smoke",
                 "--batch-size", "4", "--steps-per-epoch", "1", "--out", str(out)]) == 0
    print(f"{model}/{loss}: {time.perf_counter() - start:.1f} s")
    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == [1] and np.isfinite(history["loss"]).all()
    with zipfile.ZipFile(out / "last.keras") as saved:  # the saved model is the one asked for
        assert json.loads(saved.read("config.json"))["config"]["name"] == f"{model}_{loss}"


def _damaged_copy(shards_dir, tmp_path, damage):
    """A copy of the shards with its val shard damaged by `damage(path)`; returns (copy, shard)."""
    import shutil

    copy = tmp_path / "shards"
    shutil.copytree(shards_dir, copy)
    shard = sorted(copy.glob("val-*.tfrecord"))[0]
    damage(shard)
    return copy, shard


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[:-100]), "bytes, manifest.json says"),
    (lambda p: p.unlink(), "is missing"),
    (lambda p: p.write_bytes(p.read_bytes()[:-1] + bytes([p.read_bytes()[-1] ^ 1])), "SHA-256 differs"),
], ids=["truncated", "missing", "foreign"])
def test_bad_shard_is_one_line_and_the_run_folder_is_untouched(damage, message, shards_dir, tmp_path, capsys):
    data, shard = _damaged_copy(shards_dir, tmp_path, damage)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")  # what a damaged start must not overwrite
    rc = main(["--data", str(data), *TINY, "--loss", "wce", "--verify-shards", "--out", str(run)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith(f"error: {shard}: ") and message in err[0]
    assert (run / "config.json").read_text() == "{}" and sorted(p.name for p in run.iterdir()) == ["config.json"]


def test_record_count_is_read_from_the_framing(tmp_path):
    from data_prep.shards import ShardError, count_records
    import tensorflow as tf

    path = tmp_path / "x.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for payload in (b"", b"a" * 10, b"b" * 300):
            writer.write(payload)
    assert count_records(path) == 3
    path.write_bytes(path.read_bytes()[:-2])  # the last record's CRC cut short
    with pytest.raises(ShardError, match="truncated"):
        count_records(path)


def test_tensorflow_error_during_fit_is_one_line(shards_dir, tmp_path, capsys, monkeypatch):
    """A read error no check could foresee (here injected into the data) is one line too."""
    import tensorflow as tf

    from reproduce.engine import training as train_module

    real = train_module.training_dataset

    def check(x, y):
        with tf.control_dependencies([tf.debugging.assert_less(y, -1.0, message="injected read error")]):
            return x, tf.identity(y)

    def failing(*args, **kwargs):
        return real(*args, **kwargs).map(check)

    monkeypatch.setattr(train_module, "training_dataset", failing)
    rc = main(["--data", str(shards_dir), *TINY, "--loss", "wce", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert err[0].startswith(f"error: {shards_dir}: TensorFlow stopped training") and "injected read error" in err[0]


@pytest.fixture(scope="module")
def demo_shards(tmp_path_factory, phantom_dir):
    """The test phantom stored at the demo preset's image size (no resize when training)."""
    from data_prep.build import build_dataset
    from reproduce.config import demo

    out = tmp_path_factory.mktemp("demo_shards")
    build_dataset(phantom_dir, out, split="paper", size=demo().image_size, workers=1, seed=0)
    return out


@pytest.mark.slow
def test_demo_preset_densenet121_repeats_itself_bit_for_bit(demo_shards, tmp_path):
    """The demo preset in graph mode, two runs side by side: the same loss and the same weights.
    With op determinism alone this failed on a 2-core AMD EPYC with AVX-512 (six demo steps of
    DenseNet121 gave epoch losses 19.2659 and 19.2707); one inter-op thread
    (distribute._one_op_at_a_time) fixed it. Six steps: three steps of DenseNet121 at 64² did not
    show it there; six did, on every pair of runs tried (four)."""
    common = ["--data", str(demo_shards), "--model", "densenet121", "--loss", "wce", "--preset", "demo",
              "--epochs", "1", "--steps-per-epoch", "6"]
    procs = [_run_cli([*common, "--out", str(tmp_path / name)], stdout=subprocess.DEVNULL,
                      stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / "history.csv"),
                                  pd.read_csv(tmp_path / "b" / "history.csv"), check_exact=True)
    for a, b in zip(_load_weights(tmp_path / "a" / "last.keras"), _load_weights(tmp_path / "b" / "last.keras")):
        assert np.array_equal(a, b)


def test_optimizer_built_before_the_first_step_trains_the_same_weights():
    """compile_for_training builds Adam's slots up front: the train step is traced once (Keras's
    lazy build traces it twice: the slots are made inside the first call), and the weights after
    three steps equal, bit for bit, those of the lazy build."""
    from reproduce.losses import build_loss
    from reproduce.models import build_model
    from reproduce.engine.training import compile_for_training

    config = smoke().override(model="tiny-bn", run_eagerly=False)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, 32, 32, 1), dtype=np.uint8)
    labels = (rng.random((24, 14)) < 0.3).astype("float32")

    def weights_after_training(prebuilt: bool):
        keras.utils.set_random_seed(0)
        model = build_model(config)
        if prebuilt:
            compile_for_training(model, config, build_loss(config))
        else:
            model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=build_loss(config))
        assert model.optimizer.built is prebuilt
        traces, step = [], model.train_step
        model.train_step = lambda data: traces.append(1) or step(data)  # runs once per trace
        model.fit(images, labels, batch_size=8, epochs=1, shuffle=False, verbose=0)
        return len(traces), [v.numpy() for v in model.weights + model.optimizer.variables]

    (our_traces, ours), (_, lazy) = weights_after_training(True), weights_after_training(False)
    assert our_traces == 1
    for a, b in zip(ours, lazy, strict=True):
        np.testing.assert_array_equal(a, b)


def test_steps_per_execution_must_divide_the_steps_of_an_epoch(shards_dir, tmp_path, capsys):
    """Through the CLI: 12 steps, chunks of 5 would shift every later epoch (Keras' "Your input
    ran out of data" in epoch 3); refused in one line naming both numbers and what works,
    before the run folder exists."""
    out = tmp_path / "run"
    status = main(["--data", str(shards_dir), *TINY, "--epochs", "3", "--steps-per-epoch", "12",
                   "--steps-per-execution", "5", "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1 and err.startswith("error: "), err
    assert ("--steps-per-execution 5 does not divide the 12 steps of an epoch" in err
            and "use --steps-per-execution 4 or 6 (divisors of 12) or --steps-per-epoch 10 or 15" in err)
    assert "ran out of data" not in err and not out.exists()


def test_execution_chunk_suggestions_at_the_paper_scale():
    from reproduce.data import check_execution_chunks

    check_execution_chunks(2450, 7)  # divides: nothing to say
    with pytest.raises(ValueError, match=r"use --steps-per-execution 7 or 10 \(divisors of 2450\) "
                                         r"or --steps-per-epoch 2448 or 2456$"):
        check_execution_chunks(2450, 8)
    with pytest.raises(ValueError, match=r"use --steps-per-execution 2 \(divisors of 2\) or "
                                         r"--steps-per-epoch 4$"):
        check_execution_chunks(2, 4)


def test_training_above_the_stored_size_says_it_enlarges_the_images(shards_dir, tmp_path, capsys):
    """Shards built at 32², trained at 48²: every image is upscaled (blurred) by the pipeline;
    allowed, but said (a 64² build trained at the paper's 224² gave no sign before)."""
    status = main(["--data", str(shards_dir), *TINY, "--epochs", "1", "--steps-per-epoch", "1",
                   "--image-size", "48", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 0
    assert f"warning: {shards_dir} stores 32² images; training at 48² enlarges (blurs) every one" in err
