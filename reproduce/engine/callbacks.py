"""The callbacks of `reproduce.train`: validation AUC, checkpoints, history CSV, NaN stop, backup.

Order matters (`train._callbacks`): ValidationAUC first, so every later callback (checkpoints,
history, TensorBoard, the progress lines) sees `val_loss`, `val_mean_auc` and `val_auc_<Class>`;
then last.keras and history.csv; then the backup, so a run killed before it finds at most one
history row too many, which `reconcile_history` drops before the epoch is trained again; then
best.keras, written only once the epoch it holds is backed up.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import warnings
import zipfile
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from data_prep.schema import CLASSES
from reproduce.engine.inference import CHECKPOINT_NOTE, checkpoint_note, predict_split
from reproduce.metrics import DegenerateClassWarning, mean_auc, roc_auc_per_class

HISTORY_COLUMNS = ["epoch", "loss", "val_loss", "val_mean_auc", *(f"val_auc_{c}" for c in CLASSES)]


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite; raised from inside Model.fit."""

    def __init__(self, epoch: int, step: int, value: float):
        self.epoch, self.step, self.value = epoch, step, value
        kind = "NaN" if np.isnan(value) else "infinite"
        super().__init__(f"loss is {kind} at epoch {epoch} step {step}")


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raise (not just stop) on a NaN/inf loss: `stop_training` would still run on_epoch_end, and
    the checkpoint and history callbacks would then save the broken weights over the good ones.

    `async_safe`: Keras then runs batch-end callbacks in a worker thread, so reading the loss
    never makes the training loop wait for the device. The logged loss is the epoch's running
    mean, so a NaN at any step stays visible; it is seen at the end of its execution chunk
    (config.steps_per_execution steps), and the error reaches fit at the next chunk or at the
    epoch's end, before any checkpoint of that epoch is written."""

    async_safe = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        value = float(np.asarray((logs or {}).get("loss", 0.0)))
        if not np.isfinite(value):
            raise NonFiniteLoss(self._epoch, batch + 1, value)


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard, per epoch only (its default update_freq): marked async-safe so that its
    (then idle) batch hook does not make every training step wait for the device."""

    async_safe = True


def auc_logs(labels, scores, prefix="val_") -> dict:
    """{prefix+"mean_auc", prefix+"auc_<Class>"}: classes without positives are NaN, quietly
    (a small validation split often lacks Hernia; the warning would fire every epoch)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateClassWarning)
        aucs = roc_auc_per_class(labels, scores, CLASSES)
    return {f"{prefix}mean_auc": mean_auc(aucs), **{f"{prefix}auc_{c}": v for c, v in aucs.items()}}


class ValidationAUC(keras.callbacks.Callback):
    """Predict the validation split after each epoch; add val_loss and the §IV.C AUCs to logs.

    `forward(images) -> scores` is a compiled predict function (evaluate.compiled_forward) on
    config.val_batch_size images at a time, the same under every strategy. One pass gives both:
    val_loss is the batch-size-weighted mean of the training loss over batches of `batch_size`
    validation images (no flip), as Keras' own val_loss would be."""

    def __init__(self, dataset, loss_fn, forward, batch_size: int):
        super().__init__()
        self.dataset, self.loss_fn, self.forward = dataset, loss_fn, forward
        self.batch_size = batch_size

    def on_epoch_end(self, epoch, logs=None):
        labels, scores, _, _ = predict_split(self.dataset, self.forward)
        starts = range(0, len(labels), self.batch_size)
        losses = [float(self.loss_fn(labels[i:i + self.batch_size], scores[i:i + self.batch_size]))
                  for i in starts]
        sizes = [min(self.batch_size, len(labels) - i) for i in starts]
        logs["val_loss"] = float(np.average(losses, weights=sizes))
        logs.update(auc_logs(labels, scores))


def save_atomically(model, path: Path, note: dict | None = None) -> None:
    """model.save to a temporary .keras (plus `note` inside it), then rename: a kill -9 never
    leaves a half-written file, nor a file without its note."""
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    if note is not None:
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(CHECKPOINT_NOTE, json.dumps(note))
    os.replace(tmp, path)


def _copy_atomically(source: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.stem}.tmp.keras")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


class LastCheckpoint(keras.callbacks.Callback):
    """RUN/last.keras every epoch, with its epoch and val mean AUC inside (CHECKPOINT_NOTE)."""

    def __init__(self, run_dir):
        super().__init__()
        self.path = Path(run_dir) / "last.keras"

    def on_epoch_end(self, epoch, logs=None):
        score = float((logs or {}).get("val_mean_auc", float("nan")))
        save_atomically(self.model, self.path, {"epoch": epoch + 1, "val_mean_auc": score})


class BestCheckpoint(keras.callbacks.Callback):
    """RUN/best.keras = that epoch's last.keras when val_mean_auc beats `best` (strictly).

    Which checkpoint the paper evaluated is not stated — our choice: best validation mean AUC
    (config.checkpoint). A NaN mean AUC never counts as best, but the first epoch always writes
    best.keras so that the file exists. It runs after the backup (train._callbacks): best.keras
    only ever holds weights of an epoch the run can reproduce and history.csv describes, never
    those of an epoch a killed run will train again (and, on a GPU, score differently). A kill
    between the backup and this copy is mended when the run resumes (`restore_best`)."""

    def __init__(self, run_dir, best: float = float("-inf"), best_epoch: int | None = None):
        super().__init__()
        self.run_dir, self.best, self.best_epoch = Path(run_dir), best, best_epoch

    def on_train_begin(self, logs=None):
        if self.best_epoch is not None:
            restore_best(self.run_dir, self.best_epoch)

    def on_epoch_end(self, epoch, logs=None):
        best = self.run_dir / "best.keras"
        score = (logs or {}).get("val_mean_auc", float("nan"))
        if score > self.best or not best.exists():
            _copy_atomically(self.run_dir / "last.keras", best)  # the same weights, already saved
            self.best = score if np.isfinite(score) else self.best


def restore_best(run_dir: Path, best_epoch: int) -> bool:
    """best.keras from last.keras when a kill came between the backup of the best epoch and its
    copy (best.keras then holds an older epoch, or is missing). True if it was restored."""
    best, last = Path(run_dir) / "best.keras", Path(run_dir) / "last.keras"
    note = checkpoint_note(best) if best.exists() else {"epoch": None}
    if note is None or note["epoch"] == best_epoch:  # older code's best.keras, or already right
        return False
    if (checkpoint_note(last) or {}).get("epoch") != best_epoch:
        raise RuntimeError(f"{best}: holds epoch {note['epoch']}, history.csv's best is epoch "
                           f"{best_epoch}, and {last} is not that epoch; the run folder is damaged")
    _copy_atomically(last, best)
    return True


class HistoryCSV(keras.callbacks.Callback):
    """Append one row per completed epoch to RUN/history.csv (epoch counted from 1), flushed and
    fsync'ed so that what the file says happened, happened."""

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, **{k: logs.get(k, float("nan")) for k in HISTORY_COLUMNS[1:]}}
        new = not self.path.exists()
        with open(self.path, "a") as f:
            pd.DataFrame([row], columns=HISTORY_COLUMNS).to_csv(f, header=new, index=False)
            f.flush()
            os.fsync(f.fileno())


def read_history(path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    return pd.read_csv(path)


def reconcile_history(path, completed_epochs: int) -> pd.DataFrame:
    """Keep the rows of epochs 1..completed_epochs (those the backup holds weights for), once
    each; rewrite the file atomically. A row past the backup belongs to an epoch the killed run
    finished but did not back up: it is trained again and its row written again."""
    history = read_history(path)
    history = history[history["epoch"] <= completed_epochs].drop_duplicates("epoch", keep="last")
    missing = sorted(set(range(1, completed_epochs + 1)) - set(history["epoch"]))
    if missing:
        raise RuntimeError(f"{path}: no row for completed epoch(s) {missing}; the run folder is damaged")
    tmp = Path(path).with_name(".history.tmp.csv")
    history.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return history


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """keras BackupAndRestore whose state is always whole after a kill -9 at any instant.

    Keras writes latest.weights.h5 then the epoch number in place; a kill between (or during) the
    two leaves weights of one epoch with the number of another. Here each epoch's weights get
    their own file, and a small JSON naming the file and the epoch is replaced atomically
    afterwards; older weight files are removed only then. `writer=False` (a non-chief worker)
    restores from the chief's backup but writes nothing. What a continuing run needs is all
    here: weights, the optimizer's state and iteration count (save_weights), the epoch; the
    data of every later epoch depends on (seed, epoch) only (reproduce.data) and the best score
    so far is in history.csv. `async_safe`: it saves per epoch only, never per batch."""

    async_safe = True

    def __init__(self, backup_dir, writer: bool = True):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=True)
        self.writer = writer
        self._state_path = Path(backup_dir) / "state.json"

    def completed_epochs(self) -> int:
        if not self._state_path.exists():
            return 0
        return int(json.loads(self._state_path.read_text())["epoch"])

    def _load_model(self):
        if not self._state_path.exists():
            return
        state = json.loads(self._state_path.read_text())
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(Path(self.backup_dir) / state["weights"])
        self.model._initial_epoch = int(state["epoch"])

    def _save_model(self):
        if not self.writer:
            return
        folder = Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{self._current_epoch:04d}.weights.h5"
        self.model.save_weights(folder / name, overwrite=True)  # includes the Adam state
        tmp = folder / ".state.tmp.json"
        tmp.write_text(json.dumps({"epoch": self._current_epoch, "weights": name}))
        os.replace(tmp, self._state_path)
        for old in folder.glob("epoch-*.weights.h5"):
            if old.name != name:
                old.unlink()

    def on_train_end(self, logs=None):
        # The whole run finished: the backup is no longer needed (keras deletes it too).
        if self.writer and self.delete_checkpoint and Path(self.backup_dir).exists():
            for path in sorted(Path(self.backup_dir).iterdir()):
                path.unlink()
            Path(self.backup_dir).rmdir()


class Progress(keras.callbacks.Callback):
    """What the terminal shows (Keras' own progress bar is off): a note while the first steps
    compile the model, then one line per epoch with loss, val loss, val mean AUC and its time
    (the 14 per-class AUCs are in history.csv and TensorBoard). With `estimate=True` (the paper
    preset without an accelerator) it also prints, once, the time per epoch measured over steps
    `warmup` … `warmup + measure` of the first epoch."""

    def __init__(self, epochs: int, steps: int, estimate: bool = False, warmup: int = 2, measure: int = 3):
        super().__init__()
        self.epochs, self.steps, self.estimate = epochs, steps, estimate
        self.warmup, self.measure = warmup, measure

    def on_train_begin(self, logs=None):
        print("compiling the model (the first steps of the first epoch are slow) ...", flush=True)
        self._first = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._start = epoch + 1, time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        if not (self.estimate and self._first):
            return
        if batch == self.warmup:
            self._t0 = time.perf_counter()
        elif batch == self.warmup + self.measure and hasattr(self, "_t0"):
            per_step = (time.perf_counter() - self._t0) / self.measure
            self._first = False
            print(f"warning: the paper preset without a GPU: ~{per_step * self.steps / 3600:.1f} h per "
                  f"epoch, {self.epochs} epochs (measured: {per_step:.2f} s per step of "
                  f"{self.steps}); see docs/gpus.md", flush=True)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        print(f"epoch {epoch + 1}/{self.epochs}: loss {logs.get('loss', float('nan')):.4f}, val loss "
              f"{logs.get('val_loss', float('nan')):.4f}, val mean AUC "
              f"{logs.get('val_mean_auc', float('nan')):.4f} ({time.perf_counter() - self._start:.0f} s)",
              flush=True)
