"""reproduce.evaluate: the test predictions come from the test shards, equal model.predict, use the
checkpoint asked for, and a checkpoint that is not the configured model fails loudly."""
import json
import shutil
import warnings
import zipfile

import h5py
import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from data_prep.schema import CLASSES, SHARD_GLOB, parse_example
from reproduce.config import Config, smoke
from reproduce.engine.inference import CheckpointError, evaluate_run, load_checkpoint
from reproduce.evaluate import main
from reproduce.metrics import DegenerateClassWarning, mean_auc, roc_auc_per_class
from reproduce.models import build_model
from reproduce.engine.training import train

LABELS = [f"label_{c}" for c in CLASSES]
SCORES = [f"score_{c}" for c in CLASSES]


@pytest.fixture(scope="module")
def run_dir(shards_dir, tmp_path_factory):
    """A 2-epoch tiny run, evaluated once on test (best) — shared by the tests below."""
    out = tmp_path_factory.mktemp("eval") / "run"
    train(smoke().override(model="tiny", batch_size=8, epochs=2), shards_dir, out)
    evaluate_run(out, shards_dir, "test")
    return out


def _shard_ids(shards_dir, split):
    """image_index of every record of a split's shards, read straight from the files."""
    files = sorted(str(p) for p in shards_dir.glob(SHARD_GLOB.format(split=split)))
    manifest = json.loads((shards_dir / "manifest.json").read_text())
    parse = lambda s: parse_example(s, manifest["encoding"])["image_index"]  # noqa: E731
    return [x.decode() for x in tf.data.TFRecordDataset(files).map(parse).as_numpy_iterator()]


def test_test_predictions_come_from_the_test_shards(run_dir, shards_dir):
    pred = pd.read_csv(run_dir / "predictions_test.csv", dtype={"image_index": str})
    assert list(pred.columns) == ["image_index", "patient_id", *LABELS, *SCORES]
    assert pred["image_index"].tolist() == _shard_ids(shards_dir, "test")  # record order
    split = pd.read_csv(shards_dir / "splits" / "test.csv", dtype={"image_index": str})
    assert sorted(pred["image_index"]) == sorted(split["image_index"])
    val = pd.read_csv(shards_dir / "splits" / "val.csv", dtype={"image_index": str})
    assert not set(pred["image_index"]) & set(val["image_index"])
    assert not set(pred["patient_id"]) & set(val["patient_id"])
    merged = pred.merge(split, on="image_index")
    assert (merged[LABELS].to_numpy() == merged[list(CLASSES)].to_numpy()).all()
    assert (merged["patient_id_x"] == merged["patient_id_y"]).all()


def test_scores_equal_model_predict_on_the_same_images(run_dir, shards_dir):
    from reproduce.data import make_eval_dataset

    config = Config.load(run_dir / "config.json")
    model = keras.saving.load_model(run_dir / "best.keras")
    images = make_eval_dataset(shards_dir, "test", config).map(lambda x, *rest: x)
    expected = model.predict(images, verbose=0)
    pred = pd.read_csv(run_dir / "predictions_test.csv")
    np.testing.assert_allclose(pred[SCORES].to_numpy(), expected, rtol=1e-5, atol=1e-6)


def test_metrics_json_matches_the_predictions(run_dir):
    pred = pd.read_csv(run_dir / "predictions_test.csv")
    summary = json.loads((run_dir / "metrics_test.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateClassWarning)  # small test set: some classes NaN
        aucs = roc_auc_per_class(pred[LABELS].to_numpy(), pred[SCORES].to_numpy(), CLASSES)
    assert summary["mean_auc"] == pytest.approx(mean_auc(aucs))
    for c in CLASSES:
        assert summary["auc"][c] == (None if np.isnan(aucs[c]) else pytest.approx(aucs[c]))
    assert summary["split"] == "test" and summary["checkpoint"] == "best"
    assert summary["n_images"] == len(pred) and summary["config"]["model"] == "tiny"
    history = pd.read_csv(run_dir / "history.csv")  # best.keras says which epoch it holds
    assert summary["checkpoint_epoch"] == history.loc[history["val_mean_auc"].idxmax(), "epoch"]
    assert summary["data_check"]["trained_on_these_data"] is True
    ci = summary["ci95"]["mean"]
    assert ci["ci_low"] <= summary["mean_auc"] <= ci["ci_high"]


def test_best_and_last_checkpoints_are_used_as_asked(run_dir, shards_dir, tmp_path):
    """best.keras and last.keras hold different weights here (we make them differ), so their
    predictions must differ; each CSV must equal its own checkpoint's predict."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    config = Config.load(run / "config.json")
    other = build_model(config)  # fresh weights: certainly not the trained ones
    other.save(run / "last.keras")
    evaluate_run(run, shards_dir, "test", checkpoint="last")
    best = pd.read_csv(run_dir / "predictions_test.csv")[SCORES].to_numpy()
    last = pd.read_csv(run / "predictions_test.csv")[SCORES].to_numpy()
    assert not np.allclose(best, last, atol=1e-4)
    from reproduce.data import make_eval_dataset

    images = make_eval_dataset(shards_dir, "test", config).map(lambda x, *rest: x)
    np.testing.assert_allclose(last, other.predict(images, verbose=0), rtol=1e-5, atol=1e-6)
    assert json.loads((run / "metrics_test.json").read_text())["checkpoint"] == "last"


def test_checkpoint_of_another_model_fails(run_dir, tmp_path):
    """An ewl (softmax) checkpoint in a wce (sigmoid) run: same shapes, different model."""
    config = Config.load(run_dir / "config.json")
    path = tmp_path / "best.keras"
    build_model(config.override(loss="ewl")).save(path)
    with pytest.raises(CheckpointError, match="layers do not match"):
        load_checkpoint(path, config)


def test_checkpoint_with_a_missing_layer_fails(run_dir, tmp_path):
    """Delete the head's weights from best.keras: Keras alone would only warn."""
    src, dst = run_dir / "best.keras", tmp_path / "best.keras"
    with zipfile.ZipFile(src) as zin:
        (tmp_path / "w.h5").write_bytes(zin.read("model.weights.h5"))
        members = {n: zin.read(n) for n in zin.namelist() if n != "model.weights.h5"}
    with h5py.File(tmp_path / "w.h5", "r+") as h5:
        removed = [name for name in list(h5["layers"]) if "dense" in name or "predictions" in name]
        assert removed, list(h5["layers"])
        for name in removed:
            del h5["layers"][name]
    with zipfile.ZipFile(dst, "w") as zout:
        for name, data in members.items():
            zout.writestr(name, data)
        zout.write(tmp_path / "w.h5", "model.weights.h5")
    with pytest.raises(CheckpointError, match=str(dst)):
        load_checkpoint(dst, Config.load(run_dir / "config.json"))


def test_cli_on_a_folder_without_a_run_is_one_line(tmp_path, shards_dir, capsys):
    rc = main(["--run", str(tmp_path), "--data", str(shards_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("error: ") and "config.json" in err[0]


def test_cli_evaluates_several_runs_in_one_process_each_as_alone(run_dir, shards_dir, tmp_path, capsys):
    """`--runs A B` (make demo-evaluate: one TensorFlow start-up for four runs) writes for each run
    exactly what `--run A` alone writes; B holds other weights, so a mix-up would show."""
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(run_dir, a)
    shutil.copytree(run_dir, b)
    build_model(Config.load(b / "config.json")).save(b / "best.keras")  # fresh weights in B
    assert main(["--run", str(a), "--data", str(shards_dir)]) == 0
    alone = pd.read_csv(a / "predictions_test.csv")
    (a / "predictions_test.csv").unlink()
    assert main(["--runs", str(a), str(b), "--data", str(shards_dir)]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if "mean AUC" in line]
    assert len(printed) == 3 and str(b) in printed[-1]  # 1 line from the first call, 2 from this
    pd.testing.assert_frame_equal(pd.read_csv(a / "predictions_test.csv"), alone)
    theirs = pd.read_csv(b / "predictions_test.csv")
    assert not np.allclose(theirs[SCORES].to_numpy(), alone[SCORES].to_numpy(), atol=1e-4)
    # One trace per new model is expected: TensorFlow's "triggered tf.function retracing" warning
    # (it counts per Python function) is kept out of the output, and nothing else is.
    import logging

    from reproduce.evaluate import NEW_MODEL_RETRACING as quiet

    assert main(["--runs", str(a), str(b), "--data", str(shards_dir)]) == 0  # again: added once
    assert tf.get_logger().filters.count(quiet) == 1
    record = lambda text: logging.LogRecord("tensorflow", logging.WARNING, "", 0, text, None, None)  # noqa: E731
    assert not quiet.filter(record("5 out of the last 7 calls to <f> triggered tf.function retracing."))
    assert quiet.filter(record("another warning"))


@pytest.fixture(scope="module")
def seed1_shards(tmp_path_factory, phantom_dir):
    """The same phantom images, split and ordered with seed 1: another build of the same data."""
    from data_prep.build import build_dataset

    out = tmp_path_factory.mktemp("seed1")
    build_dataset(phantom_dir, out, split="paper", size=32, workers=1, seed=1)
    return out


def test_shards_of_another_build_are_refused_before_anything_is_written(run_dir, seed1_shards, capsys):
    """The bug: a run trained on the seed-0 build evaluated on a seed-1 build (test patients that
    the run trained on) exited 0 and overwrote its predictions and metrics."""
    files = {name: (run_dir / name).read_bytes() for name in ("predictions_test.csv", "metrics_test.json")}
    status = main(["--run", str(run_dir), "--data", str(seed1_shards)])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1, err
    assert err.startswith(f"error: {seed1_shards}/manifest.json: not the data {run_dir} was trained on "
                          "(split seed 0 vs 1; ")
    assert "pass --other-data" in err
    assert all((run_dir / name).read_bytes() == data for name, data in files.items())


def test_other_data_on_purpose_is_recorded(run_dir, seed1_shards, tmp_path, capsys):
    run = tmp_path / "copy"
    shutil.copytree(run_dir, run)
    assert main(["--run", str(run), "--data", str(seed1_shards), "--other-data"]) == 0
    assert "note: " in capsys.readouterr().err
    check = json.loads((run / "metrics_test.json").read_text())["data_check"]
    assert check["other_data"] is True and check["trained_on_these_data"] is False
    assert check["differences"][0] == "split seed 0 vs 1"
    # A run of older code (no manifest in config.json): one warning, then evaluated as before.
    config = json.loads((run / "config.json").read_text())
    for key in ("manifest_sha256", "data_summary"):
        del config[key]
    (run / "config.json").write_text(json.dumps(config))
    assert main(["--run", str(run), "--data", str(seed1_shards)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and err.count("\n") == 1 and "records no training data" in err


def test_an_unfinished_run_is_evaluated_with_a_warning(run_dir, shards_dir, tmp_path, capsys):
    run = tmp_path / "unfinished"
    shutil.copytree(run_dir, run)
    history = pd.read_csv(run / "history.csv")
    history.iloc[:1].to_csv(run / "history.csv", index=False)  # killed after epoch 1 of 2
    assert main(["--run", str(run), "--data", str(shards_dir)]) == 0
    err = capsys.readouterr().err
    assert err == (f"warning: {run} trained 1 of its 2 epochs (unfinished: the same reproduce.train "
                   "command resumes it); evaluating it as it is\n")
    assert json.loads((run / "metrics_test.json").read_text())["epochs_trained"] == 1
