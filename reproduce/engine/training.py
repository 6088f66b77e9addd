"""Training one run (§IV.B), without argv: `reproduce.train` (the program) and the study call it.

`train(config, data_dir, out_dir)` writes the run folder (config.json, history.csv, best.keras,
last.keras, tensorboard/, backup/ while unfinished) and resumes an unfinished one after its last
completed epoch, ending with the weights an uninterrupted run would have (bit for bit on a CPU
with --deterministic). `compile_for_training` is the one place a run's optimizer and compile
switches are set (the benchmarks call it too).
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import keras
import pandas as pd
import tensorflow as tf

from common import cli
from common.checksums import sha256_file
from common.provenance import portable_path, provenance
from data_prep.shards import manifest_summary, verify_shards
from reproduce.config import Config
from reproduce.data import (check_execution_chunks, make_eval_dataset, read_manifest, train_steps,
                            training_dataset)
from reproduce.engine import backend, distribute
from reproduce.engine import callbacks as cb
from reproduce.engine.inference import compiled_forward
from reproduce.losses import build_loss
from reproduce.models import build_model
from reproduce.run_data import data_differences

JIT = {"auto": "auto", "on": True, "off": False}
DEFAULTS = Config().to_dict()


class TrainingFailed(RuntimeError):
    """The run cannot go on (NaN loss, a run folder of another config); one-line message."""


def set_precision(config: Config) -> bool:
    """mixed_float16 on a GPU (the head stays float32: models.build_model); on a CPU float16 is
    slower than float32 and has no Tensor Cores, so we warn and stay float32 (our choice)."""
    if not config.mixed_precision:
        return False
    if backend.accelerator_present():
        keras.mixed_precision.set_global_policy("mixed_float16")
        return True
    print("warning: --mixed-precision needs a GPU; training in float32 on this CPU", file=sys.stderr)
    return False


def prepare_run_dir(config: Config, data_dir: Path, out_dir: Path, preset_name, extra: dict) -> None:
    """Write RUN/config.json, or check that the one there is this run's (resume)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = data_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    meta = {"preset": preset_name, "data_dir": portable_path(data_dir),
            "manifest_sha256": sha256_file(manifest_path), "manifest_bytes": manifest_path.stat().st_size,
            "data_summary": manifest_summary(manifest),  # what evaluate and report check against
            "synthetic": manifest.get("synthetic"),  # the phantom's mark (None: an older build)
            "stored_size": manifest["size"],  # reproduce.predict's resize
            "keras_backend": backend.name(),
            "provenance": provenance(), **extra}
    path = out_dir / "config.json"
    if path.exists():
        saved = json.loads(path.read_text())
        # A field that did not exist when the run started had its default then.
        diff = sorted(k for k, v in config.to_dict().items() if saved.get(k, DEFAULTS[k]) != v)
        if saved.get("keras_backend", "tensorflow") != meta["keras_backend"]:
            diff.append("keras_backend")  # a resumed run repeats its own numbers
        data = data_differences(saved, meta["manifest_sha256"], meta["data_summary"])
        if data:
            diff.append(f"training data: {'; '.join(data)}")
        if diff:
            raise TrainingFailed(f"{path}: written by another configuration (differs in "
                                 f"{', '.join(diff)}); use a new --out")
    config.save(path, **meta)


def completed_epochs(config: Config, out_dir: Path, backup) -> int:
    """Epochs this run folder holds: the backup's, or all of them for a finished run (a finished
    run deletes its backup and has a history row per epoch)."""
    done = backup.completed_epochs()
    if done == 0 and len(cb.read_history(out_dir / "history.csv")) >= config.epochs:
        return config.epochs
    return done


def _callbacks(config, data_dir, out_dir, loss, model, chief, backup, best, progress):
    if not chief:
        return [cb.StopOnNonFiniteLoss(), backup]
    forward = compiled_forward(model, jit_compile=model.jit_compile is True, eager=config.run_eagerly)
    best_score, best_epoch = best
    return [
        cb.ValidationAUC(make_eval_dataset(data_dir, "val", config), loss, forward, config.batch_size),
        cb.StopOnNonFiniteLoss(),
        cb.LastCheckpoint(out_dir),
        cb.HistoryCSV(out_dir / "history.csv"),
        *_tensorboard(out_dir),
        progress,
        backup,  # after last.keras and the history row: see reproduce/engine/callbacks.py
        cb.BestCheckpoint(out_dir, best_score, best_epoch),  # after the backup: ditto
    ]


def _tensorboard(out_dir):
    # tf.summary needs the tensorboard package, which TensorFlow no longer pulls in; without it
    # the run goes on (history.csv has every number TensorBoard would show).
    if importlib.util.find_spec("tensorboard") is None:
        print("note: tensorboard is not installed; RUN/tensorboard not written (pip install tensorboard)")
        return []
    return [cb.EpochTensorBoard(log_dir=str(out_dir / "tensorboard"), write_graph=False)]


def compile_for_training(model, config: Config, loss) -> keras.Model:
    """The one place a run's optimizer and compile switches are set (the benchmarks call it too,
    so what they time is what `train` runs). The caller enters the strategy scope."""
    # §IV.B "optimized the network using Adam [12] … learning rate initialed as 0.001"
    optimizer = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}[config.optimizer]
    model.compile(optimizer=optimizer(config.learning_rate), loss=loss,
                  run_eagerly=config.run_eagerly, jit_compile=JIT[config.jit_compile],
                  steps_per_execution=config.steps_per_execution)
    # Adam's slots made now, not inside the first train step: there, variable creation makes
    # tf.function trace the whole step twice (DenseNet121 first epoch 35 s shorter on 2 cores;
    # docs/testing.md). The same variables, the same values: the step's numbers do not change.
    model.optimizer.build(model.trainable_variables)
    return model


def _compiled_model(config, manifest, place, backbone):
    with place.strategy.scope():
        model = build_model(config, backbone=backbone, replicas=place.replicas)
        loss = build_loss(config, manifest)
        compile_for_training(model, config, loss)
    return model, loss


def _train_data(data_dir, config, place, steps: int, first_epoch: int):
    """The global batch stays config.batch_size (§IV.B: 32); each replica gets its share. One
    worker: Keras splits each global batch over the replicas, so one replica or N see the same
    images. Several workers: each reads only its own shard files (data.worker_shards)."""
    replicas = place.replicas
    if config.batch_size % replicas:
        raise TrainingFailed(f"batch size {config.batch_size} is not divisible by {replicas} replicas")
    if place.workers == 1:
        return training_dataset(data_dir, config, steps, first_epoch)

    def per_worker(context):
        per_replica = context.get_per_replica_batch_size(config.batch_size)
        local_replicas = config.batch_size // context.num_input_pipelines // per_replica
        return training_dataset(data_dir, config, steps * local_replicas, first_epoch,
                                context.input_pipeline_id, context.num_input_pipelines, per_replica)

    return place.strategy.distribute_datasets_from_function(per_worker)


def _resume(config, out_dir, backup, place) -> tuple[int, tuple[float, int | None]]:
    """(epochs already done, (best val mean AUC so far, its epoch)); all workers must agree on
    the first."""
    done = place.agree(completed_epochs(config, out_dir, backup), "the epochs already trained")
    if not place.chief or done >= config.epochs:
        return done, (float("-inf"), None)
    history = cb.reconcile_history(out_dir / "history.csv", done)
    scores = history["val_mean_auc"]
    if not len(history) or scores.isna().all():
        return done, (float("-inf"), None)
    return done, (float(scores.max()), int(history.loc[scores.idxmax(), "epoch"]))


def _fit(model, data, config, steps, callbacks, out_dir, backup, data_dir):
    try:
        model.fit(data, epochs=config.epochs, steps_per_epoch=steps, callbacks=callbacks,
                  shuffle=False, verbose=0)
    except cb.NonFiniteLoss as err:
        last = out_dir / "last.keras"
        good = f"{last} (epoch {backup.completed_epochs()})" if last.exists() else "none"
        raise TrainingFailed(f"{err}; last good checkpoint: {good}") from None
    except tf.errors.OpError as err:  # e.g. a shard damaged after the check at start-up
        raise TrainingFailed(f"{data_dir}: TensorFlow stopped training "
                             f"({cli.one_line(err)[:300]})") from None


def print_plan(config, preset_name, steps, replicas: int, out_dir, first_epoch) -> None:
    print(f"plan: {config.model} + {config.loss}, preset {preset_name}, {config.image_size}² images, "
          f"weights {config.weights}; epochs {first_epoch + 1}-{config.epochs} of {config.epochs} × "
          f"{steps} steps of {config.batch_size} images on {replicas} "
          f"replica(s) ({config.batch_size // replicas} each), Keras backend "
          f"{backend.name()}; writing {out_dir}", flush=True)


def _warn_if_enlarged(data_dir, manifest: dict, config: Config) -> None:
    """A sign, not an error (a run may want it): shards stored smaller than the size trained at."""
    if config.image_size > int(manifest["size"]):
        print(f"warning: {data_dir} stores {manifest['size']}² images; training at "
              f"{config.image_size}² enlarges (blurs) every one: build the shards at "
              f"{config.image_size} (python -m data_prep.build --size {config.image_size})",
              file=sys.stderr)


def train(config: Config, data_dir, out_dir, backbone=None, preset_name=None,
          verify_checksums: bool = False) -> pd.DataFrame:
    """Train (or resume) the run in `out_dir`; return its history (one row per epoch).

    `backbone`: callable(input_shape) -> keras.Model replacing config.model's (tests only)."""
    place = distribute.setup(config)  # devices and strategy, before anything else of TensorFlow
    keras.utils.set_random_seed(config.seed)  # seeds Python, NumPy, TF (and tf.data) and Keras
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    manifest = read_manifest(data_dir)
    verify_shards(data_dir, manifest, ("train", "val"), checksums=verify_checksums)
    _warn_if_enlarged(data_dir, manifest, config)
    steps = train_steps(manifest, config, place.workers)
    check_execution_chunks(steps, config.steps_per_execution)  # before anything is written
    policy = keras.mixed_precision.global_policy()
    try:
        mixed = set_precision(config)
        if place.chief:
            prepare_run_dir(config, data_dir, out_dir, preset_name,
                            {"mixed_precision_active": mixed, "replicas": place.replicas,
                             "steps_per_epoch_resolved": steps})
        backup = cb.AtomicBackupAndRestore(out_dir / "backup", writer=place.chief)
        done, best = _resume(config, out_dir, backup, place)
        if done >= config.epochs:
            print(f"{out_dir}: already trained for {config.epochs} epochs; nothing to do")
        else:
            print_plan(config, preset_name, steps, place.replicas, out_dir, done)
            model, loss = _compiled_model(config, manifest, place, backbone)
            estimate = preset_name == "paper" and not backend.accelerator_present()
            progress = cb.Progress(config.epochs, steps, estimate=estimate)
            callbacks = _callbacks(config, data_dir, out_dir, loss, model, place.chief, backup, best, progress)
            data = _train_data(data_dir, config, place, steps, done)
            _fit(model, data, config, steps, callbacks, out_dir, backup, data_dir)
        if not place.chief:  # a non-chief worker wrote nothing; the chief's history is the run's
            return pd.DataFrame(columns=cb.HISTORY_COLUMNS)
        return cb.read_history(out_dir / "history.csv")
    finally:
        keras.mixed_precision.set_global_policy(policy)
