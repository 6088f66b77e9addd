"""Inference with a trained run, without argv: load a checkpoint (checked against the model its
config.json describes), the compiled forward pass that validation, evaluation and prediction all
use, the predictions of a split in record order, and a run's evaluation files (§IV.C):

RUN/predictions_<split>.csv: one row per image in record order — image_index, patient_id,
label_<Class> ×14, score_<Class> ×14 (classes as data_prep.schema.CLASSES, Table I order).
RUN/metrics_<split>.json: per-class AUC, Table I's mean, 95% CIs (bootstrap over patients),
the checkpoint and its epoch, the split, the number of images, the data check, the run's config.
`reproduce.evaluate` is the program; callbacks, predict, localize, the study and the benchmarks
import this module.
"""
from __future__ import annotations

import json
import math
import sys
import warnings
import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from common import cli
from common.checksums import sha256_file
from common.provenance import portable_path
from data_prep.schema import CLASSES, SPLITS
from data_prep.shards import verify_shards
from reproduce import losses
from reproduce.config import Config
from reproduce.data import make_eval_dataset, read_manifest
from reproduce.engine import backend
from reproduce.metrics import bootstrap_auc_ci, mean_auc, roc_auc_per_class
from reproduce.models import build_model
from reproduce.report.predictions import predictions_frame, predictions_path
from reproduce.run_data import check_trained_on, trained_epochs

# Our choice: 1,000 patient-level resamples (the paper reports no interval at all).
BOOTSTRAP_RESAMPLES = 1000


# Inside every .keras file train writes (reproduce.engine.callbacks): {"epoch": e, "val_mean_auc": x},
# the epoch its weights are from (Keras ignores extra files in the archive).
CHECKPOINT_NOTE = "reproduce.json"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or not the model its config.json describes."""


def _layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _layers(layer)


def checkpoint_note(path: Path) -> dict | None:
    """The note inside a .keras file train wrote ({"epoch", "val_mean_auc"}); None for a file
    without one (older code, or not a checkpoint of ours)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read(CHECKPOINT_NOTE))
    except (KeyError, OSError, zipfile.BadZipFile, json.JSONDecodeError):
        return None


def architecture_signature(model) -> list:
    """(layer class, activation, weight shapes) of every layer, nested models flattened.

    Names are left out on purpose: Keras numbers auto-named layers per process."""
    return [(type(layer).__name__, str(layer.get_config().get("activation")),
             [tuple(w.shape) for w in layer.weights]) for layer in _layers(model)]


def load_model(path, compile: bool = True):
    """Any .keras file the package writes, in safe mode, with its compiled loss: the modules that
    define its custom classes (BackboneInput, every loss of the table) are imported first, which
    registers them with Keras. For a run's checkpoint, `load_checkpoint` also checks the layers."""
    losses.import_all()
    return keras.saving.load_model(path, safe_mode=True, compile=compile)


def load_checkpoint(path, config: Config):
    """keras.saving.load_model (safe_mode) + a check that it is the model `config` builds.

    Keras only *warns* when a saved layer's weights are missing from the file; here that is an
    error, as is any layer that differs from build_model(config). Never load_weights with
    skip_mismatch: a half-loaded network would give plausible-looking, wrong AUCs."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    backend.keep_tensorflow_off_gpus()  # under JAX, before the load can start TensorFlow's runtime
    losses.import_all()  # every loss class a file may name: registered when its module runs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = keras.saving.load_model(path, safe_mode=True, compile=False)
        except Exception as err:  # noqa: BLE001 — Keras raises many types; all mean "unreadable"
            detail = " ".join(str(err).split())[:300]  # one line: Keras' messages span several
            raise CheckpointError(f"{path}: cannot be loaded ({type(err).__name__}: {detail})") from None
    for w in caught:
        if "could not be loaded" in str(w.message) or "Skipping" in str(w.message):
            first = str(w.message).strip().splitlines()[0]
            raise CheckpointError(f"{path}: incomplete checkpoint ({first})")
    expected = build_model(config.override(weights="none"))
    got, want = architecture_signature(model), architecture_signature(expected)
    if got != want:
        where = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        raise CheckpointError(f"{path}: layers do not match {path.parent / 'config.json'} "
                              f"(model {config.model}, loss {config.loss}); first difference at "
                              f"layer {where}: {got[where] if where < len(got) else 'missing'} vs "
                              f"{want[where] if where < len(want) else 'missing'}")
    return model


def compiled_forward(model, jit_compile: bool = False, eager: bool = False):
    """images → scores through one compiled (graph, optionally XLA) function: what validation,
    evaluation and prediction all use, under every strategy (variables of a distributed model are
    read from their local copy; no collective op, so the chief can run it alone). `eager`: no
    graph (a run with config.run_eagerly, where tracing would cost more than it saves)."""
    if eager:
        return lambda images: np.asarray(model(images, training=False))
    if not backend.is_tensorflow():  # Keras' own predict step, jit-compiled by the backend
        return lambda images: np.asarray(model.predict_on_batch(np.asarray(images)))

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def forward(images):
        return model(images, training=False)

    return lambda images: forward(images).numpy()


def predict_split(dataset, forward):
    """Run `forward(images) -> scores` over make_eval_dataset batches, in record order.

    Returns (labels [N,14], scores [N,14], image_index list[str], patient_id int64 [N])."""
    labels, scores, ids, pids = [], [], [], []
    for images, batch_labels, batch_ids, batch_pids in dataset:
        scores.append(np.asarray(forward(images), dtype=np.float32))
        labels.append(batch_labels.numpy())
        ids.extend(i.decode() for i in batch_ids.numpy())
        pids.append(batch_pids.numpy())
    return np.concatenate(labels), np.concatenate(scores), ids, np.concatenate(pids)


def _no_nan(value):
    """JSON has no NaN: an undefined AUC (class without positives) is written as null."""
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def metrics_summary(labels, scores, pids, meta: dict) -> dict:
    aucs = roc_auc_per_class(labels, scores, CLASSES)
    ci = bootstrap_auc_ci(labels, scores, pids, CLASSES, n_resamples=BOOTSTRAP_RESAMPLES, seed=0)
    return _no_nan({**meta, "n_images": int(len(labels)), "n_patients": int(len(np.unique(pids))),
                    "auc": aucs, "mean_auc": mean_auc(aucs), "ci95": ci})


def _run_config(run_dir: Path, checkpoint: str | None):
    """(config.json as written, the Config, the checkpoint asked for or the run's own)."""
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{config_path}: not found (is {run_dir} a reproduce.train run?)")
    config = Config.load(config_path)
    checkpoint = checkpoint or config.checkpoint
    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    return json.loads(config_path.read_text()), config, checkpoint


def _warn_if_unfinished(run_dir: Path, config: Config) -> int:
    """The epochs the run trained; a sign when they are fewer than its config's."""
    done = trained_epochs(run_dir)
    if done < config.epochs:  # an unfinished run's numbers are not Table I's
        print(f"warning: {run_dir} trained {done} of its {config.epochs} epochs (unfinished: the "
              "same reproduce.train command resumes it); evaluating it as it is", file=sys.stderr)
    return done


def evaluate_run(run_dir, data_dir, split: str = "test", checkpoint: str | None = None,
                 verify_checksums: bool = False, other_data: bool = False) -> Path:
    """Write RUN/predictions_<split>.csv and RUN/metrics_<split>.json; return the CSV's path.

    `checkpoint`: "best" or "last"; None = the run's config.checkpoint (our choice: best). The
    shards must be the build the run was trained on (`run_data.check_trained_on`; `other_data`:
    evaluate other shards on purpose, recorded in metrics_<split>.json), and the split's shards
    are checked against manifest.json first (size, record count; SHA-256 with
    `verify_checksums`)."""
    run_dir, data_dir = Path(run_dir), Path(data_dir)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    resolved, config, checkpoint = _run_config(run_dir, checkpoint)
    epochs_trained = _warn_if_unfinished(run_dir, config)
    manifest = read_manifest(data_dir)
    data_check = check_trained_on(resolved, run_dir, data_dir, manifest,
                                  sha256_file(data_dir / "manifest.json"), other_data)
    verify_shards(data_dir, manifest, [split], checksums=verify_checksums)
    path = run_dir / f"{checkpoint}.keras"
    model = load_checkpoint(path, config)
    print(f"{run_dir}: predicting the {split} split with {checkpoint}.keras, then "
          f"{BOOTSTRAP_RESAMPLES} patient-bootstrap resamples ...", flush=True)
    try:
        labels, scores, ids, pids = predict_split(make_eval_dataset(data_dir, split, config),
                                                  compiled_forward(model))
    except tf.errors.OpError as err:
        raise CheckpointError(f"{data_dir}: TensorFlow stopped reading split {split!r} "
                              f"({cli.one_line(err)[:300]})") from None
    out = predictions_path(run_dir, split)
    predictions_frame(labels, scores, ids, pids).to_csv(out, index=False)
    meta = {"split": split, "checkpoint": checkpoint, "checkpoint_path": portable_path(path),
            "checkpoint_epoch": (checkpoint_note(path) or {}).get("epoch"),
            "epochs_trained": epochs_trained, "data_dir": portable_path(data_dir),
            "data_check": data_check, "config": resolved}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes without positives: NaN AUC, written as null
        summary = metrics_summary(labels, scores, pids, meta)
    (run_dir / f"metrics_{split}.json").write_text(json.dumps(summary, indent=2) + "\n")
    return out
