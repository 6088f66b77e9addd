"""Train one Table I model (§IV.B): backbone + 14-way head, Adam, on the TFRecords of data_prep.

    python -m reproduce.train --data OUT --model densenet121 --loss ewl --preset paper --out RUN

RUN/ gets config.json (the resolved Config + preset, data, manifest hash, versions),
history.csv (one row per epoch: loss, val_loss, val_mean_auc, val_auc_<Class>), best.keras (best
validation mean AUC — our choice, the paper does not say which checkpoint it evaluated),
last.keras, tensorboard/, and backup/ while the run is unfinished. Started again with the same
command, a killed run continues after its last completed epoch.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import keras
import pandas as pd
import tensorflow as tf

from data_prep import cli
from data_prep.checksums import sha256_file
from data_prep.provenance import portable_path, provenance
from reproduce import callbacks as cb
from reproduce import config as config_module
from reproduce.config import PRESETS, Config, preset
from reproduce.data import make_dataset, make_eval_dataset, read_manifest
from reproduce.loss_registry import available_losses, build_loss
from reproduce.models import build_model


class TrainingFailed(RuntimeError):
    """The run cannot go on (NaN loss, a run folder of another config); one-line message."""


def make_strategy(name: str) -> tf.distribute.Strategy:
    """none: the default strategy; mirrored: all local GPUs (else all logical CPUs, which is how
    the tests run it); multiworker: MultiWorkerMirroredStrategy from $TF_CONFIG."""
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy(devices=[d.name for d in devices])
    if "TF_CONFIG" not in os.environ:
        raise ValueError("--distribute multiworker needs TF_CONFIG (cluster and this task) set")
    return _MultiWorkerStrategy()


class _MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy with a reduce() that Keras 3.15's fit can call.

    Two Keras bugs, both in keras/src/backend/tensorflow/trainer.py, fixed here per tensor:
    _maybe_symbolic_build reduces a whole (images, labels) tuple, which the collective strategy
    cannot ("Attempt to convert a value (PerReplica…)"), and reduce_per_replica reduces the
    scalar logs with axis=0 ("Invalid reduction dimension 0 for input with 0 dimensions").
    A scalar has no batch axis, so axis=None is the mean over replicas Keras means. Every
    worker makes the same calls, so the collectives still match."""

    def reduce(self, reduce_op, value, axis):
        def one(v):
            local = self.experimental_local_results(v)[0]
            scalar = getattr(local, "shape", None) is not None and local.shape.rank == 0
            return super(_MultiWorkerStrategy, self).reduce(reduce_op, v, None if scalar else axis)

        return tf.nest.map_structure(one, value)


def is_chief(strategy) -> bool:
    """True unless this is a non-chief worker of a multi-worker cluster (only the chief writes)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not cluster or resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster


def set_precision(config: Config) -> bool:
    """mixed_float16 on a GPU (the head stays float32: models.build_model); on a CPU float16 is
    slower than float32 and has no Tensor Cores, so we warn and stay float32 (our choice)."""
    if not config.mixed_precision:
        return False
    if tf.config.list_physical_devices("GPU"):
        keras.mixed_precision.set_global_policy("mixed_float16")
        return True
    print("warning: --mixed-precision needs a GPU; training in float32 on this CPU", file=sys.stderr)
    return False


def prepare_run_dir(config: Config, data_dir: Path, out_dir: Path, preset_name, extra: dict) -> None:
    """Write RUN/config.json, or check that the one there is this run's (resume)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = data_dir / "manifest.json"
    meta = {"preset": preset_name, "data_dir": portable_path(data_dir),
            "manifest_sha256": sha256_file(manifest), "manifest_bytes": manifest.stat().st_size,
            "provenance": provenance(), **extra}
    path = out_dir / "config.json"
    if path.exists():
        saved = json.loads(path.read_text())
        diff = sorted(k for k, v in config.to_dict().items() if saved.get(k) != v)
        if saved.get("manifest_sha256") != meta["manifest_sha256"]:
            diff.append("manifest_sha256")
        if diff:
            raise TrainingFailed(f"{path}: written by another configuration (differs in "
                                 f"{', '.join(diff)}); use a new --out")
    config.save(path, **meta)


def _forward(distributed: bool):
    # predict_on_batch is compiled (fast) but splits the batch over replicas; a distributed run
    # predicts on the chief with a plain call (mirrored variables read their local copy).
    if distributed:
        return lambda model, x: model(x, training=False)
    return lambda model, x: model.predict_on_batch(x)


def _callbacks(config, data_dir, out_dir, loss, chief, backup, best):
    if not chief:
        return [cb.StopOnNonFiniteLoss(), backup]
    val = make_eval_dataset(data_dir, "val", config)
    return [
        cb.ValidationAUC(lambda: val, loss, _forward(config.distribute != "none"), config.batch_size),
        cb.StopOnNonFiniteLoss(),
        cb.EpochCheckpoints(out_dir, best=best),
        cb.HistoryCSV(out_dir / "history.csv"),
        *_tensorboard(out_dir),
        backup,  # last: see reproduce/callbacks.py
    ]


def _tensorboard(out_dir):
    # tf.summary needs the tensorboard package, which TensorFlow no longer pulls in; without it
    # the run goes on (history.csv has every number TensorBoard would show).
    if importlib.util.find_spec("tensorboard") is None:
        print("note: tensorboard is not installed; RUN/tensorboard not written (pip install tensorboard)")
        return []
    return [keras.callbacks.TensorBoard(log_dir=str(out_dir / "tensorboard"), write_graph=False)]


def _compiled_model(config, manifest, strategy, backbone):
    with strategy.scope():
        model = build_model(config, backbone=backbone)
        loss = build_loss(config, manifest)
        # §IV.B "optimized the network using Adam [12] … learning rate initialed as 0.001"
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=loss,
                      run_eagerly=config.run_eagerly, jit_compile=config.jit_compile)
    return model, loss


def _train_dataset(data_dir, config, strategy):
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ValueError(f"batch size {config.batch_size} is not divisible by {replicas} replicas")
    # The global batch stays config.batch_size (§IV.B: 32); each replica gets batch/replicas.
    print(f"replicas: {replicas}, global batch {config.batch_size}, "
          f"per replica {config.batch_size // replicas}")
    ds = make_dataset(data_dir, "train", config, training=True)
    if config.distribute == "multiworker":
        # Few shards (tests: one) cannot be split by file; split by element instead.
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        ds = ds.with_options(options)
    return ds


def _resume_point(config, out_dir, write_dir, backup, chief):
    """(best val mean AUC so far, or None if the run is already complete).

    The backup says how many epochs are done; history.csv is cut back to exactly those rows."""
    if not chief:
        return float("-inf")
    done = backup.completed_epochs()
    history = cb.read_history(write_dir / "history.csv")
    if done == 0 and len(history) >= config.epochs:  # finished runs delete their backup
        print(f"{out_dir}: already trained for {config.epochs} epochs; nothing to do")
        return None
    history = cb.reconcile_history(write_dir / "history.csv", done)
    best = history["val_mean_auc"].max() if len(history) else float("nan")
    return best if pd.notna(best) else float("-inf")


def _fit(model, config, data_dir, strategy, callbacks, out_dir, backup):
    try:
        model.fit(_train_dataset(data_dir, config, strategy), epochs=config.epochs,
                  steps_per_epoch=config.steps_per_epoch, callbacks=callbacks, shuffle=False,
                  verbose=1 if sys.stdout.isatty() else 2)
    except cb.NonFiniteLoss as err:
        last = out_dir / "last.keras"
        good = f"{last} (epoch {backup.completed_epochs()})" if last.exists() else "none"
        raise TrainingFailed(f"{err}; last good checkpoint: {good}") from None


def train(config: Config, data_dir, out_dir, backbone=None, preset_name=None) -> pd.DataFrame:
    """Train (or resume) the run in `out_dir`; return its history (one row per epoch).

    `backbone`: callable(input_shape) -> keras.Model replacing config.model's (tests only)."""
    strategy = make_strategy(config.distribute)  # first: multi-worker must precede other TF ops
    keras.utils.set_random_seed(config.seed)  # seeds Python, NumPy, TF and Keras initialisers
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    manifest = read_manifest(data_dir)
    chief = is_chief(strategy)
    policy = keras.mixed_precision.global_policy()
    # A non-chief worker writes its (unused) history to a temporary folder, never to RUN/.
    write_dir = out_dir if chief else Path(tempfile.mkdtemp(prefix="reproduce-worker-"))
    try:
        mixed = set_precision(config)
        if chief:
            prepare_run_dir(config, data_dir, out_dir, preset_name,
                            {"mixed_precision_active": mixed, "replicas": strategy.num_replicas_in_sync})
        backup = cb.AtomicBackupAndRestore(out_dir / "backup", writer=chief)
        best = _resume_point(config, out_dir, write_dir, backup, chief)
        if best is not None:
            model, loss = _compiled_model(config, manifest, strategy, backbone)
            callbacks = _callbacks(config, data_dir, write_dir, loss, chief, backup, best)
            _fit(model, config, data_dir, strategy, callbacks, out_dir, backup)
        return cb.read_history(write_dir / "history.csv")
    finally:
        keras.mixed_precision.set_global_policy(policy)
        if not chief:
            shutil.rmtree(write_dir, ignore_errors=True)


def build_parser():
    p = cli.make_parser("reproduce.train", __doc__)
    p.add_argument("--data", required=True, help="TFRecord folder of data_prep.build (manifest.json)")
    p.add_argument("--out", required=True, help="run folder (created; an unfinished run resumes)")
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS),
                   help="starting values of every field: paper (the paper's settings), demo, smoke")
    config_module.add_arguments(p, choices={"loss": available_losses()})
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        config = preset(args.preset).override(**config_module.overrides(args))
        history = train(config, args.data, args.out, preset_name=args.preset)
        if history.empty:  # a non-chief worker: its history is the chief's, written there
            print("worker finished; the chief wrote the run folder")
            return
        last = history.iloc[-1]
        print(f"{args.out}: {len(history)} epochs, last val mean AUC {last['val_mean_auc']:.4f}, "
              f"best {history['val_mean_auc'].max():.4f}")

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
