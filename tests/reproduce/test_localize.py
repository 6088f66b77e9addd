"""reproduce.localize end to end on the phantom: the boxed images of the evaluated split only, the
table's layout and counts agree with the per-box file, each predicted box is the box of that
image's Grad-CAM, and a box list with no image in the split is refused with one line."""
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_prep.labels import read_bbox_file
from data_prep.schema import CLASSES
from reproduce.data import make_eval_dataset
from reproduce.gradcam import GradCAM
from reproduce.localize import main
from reproduce.predictor import Predictor
from reproduce.report import localization as loc

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def localized(predict_run, phantom_dir, tmp_path_factory):
    run, shards = predict_run
    out = tmp_path_factory.mktemp("localize")
    bbox = phantom_dir / "BBox_List_2017.csv"
    status = main(["--runs", str(run), "--data", str(shards), "--bbox", str(bbox), "--out", str(out),
                   "--examples", "3", "--synthetic"])
    assert status == 0
    return out, bbox, shards


def test_only_boxes_of_the_evaluated_split_are_scored(localized):
    out, bbox, shards = localized
    boxes = pd.read_csv(out / "localization_boxes.csv", dtype={"image_index": str})
    test_ids = set(pd.read_csv(shards / "splits" / "test.csv", dtype={"image_index": str})["image_index"])
    truth = read_bbox_file(bbox)
    expected = truth[truth["image_index"].isin(test_ids)]
    assert 0 < len(boxes) == len(expected) < len(truth)  # the phantom boxes every split
    assert set(boxes["image_index"]) <= test_ids and set(boxes["run"]) == {"run"}
    for col in ("pred_x", "pred_y"):
        assert boxes[col].between(0, loc.BBOX_FRAME).all()
    assert ((boxes["pred_x"] + boxes["pred_w"]) <= loc.BBOX_FRAME + 1e-6).all()


def test_table_layout_and_counts_agree_with_the_boxes(localized):
    out, _, _ = localized
    table = pd.read_csv(out / "localization.csv")
    boxes = pd.read_csv(out / "localization_boxes.csv")
    assert list(table.columns) == loc.TABLE_COLUMNS and set(table["data"]) == {"synthetic"}
    assert list(dict.fromkeys(table["run"])) == ["run", loc.REFERENCE]
    classes = [c for c in CLASSES if c in set(boxes["label"])] + [loc.ALL]
    assert list(dict.fromkeys(table["class"])) == classes
    assert len(table) == 2 * len(classes) * 2 * len(loc.THRESHOLDS)
    # the reference's box is the whole image: IoU = IoBB = the true box's share of the 1024² frame
    share = (boxes["w"] * boxes["h"] / loc.BBOX_FRAME**2).to_numpy()
    reference = boxes.assign(iou=share, iobb=share, run=loc.REFERENCE)
    for _, row in table.iterrows():
        part = boxes if row["run"] == "run" else reference
        part = part if row["class"] == loc.ALL else part[part["label"] == row["class"]]
        # the per-box file rounds to 3 decimals: a value within 0.0005 of a threshold is ambiguous
        values = part[row["measure"]].to_numpy()
        if np.any(np.abs(values - row["threshold"]) < 5e-4):
            continue
        assert row["boxes"] == len(part)
        assert row["correct"] == int((values > row["threshold"]).sum())
        assert row["accuracy"] == pytest.approx(row["correct"] / row["boxes"], abs=1e-4)
    wang = table.dropna(subset=["wang2017"])
    assert set(wang["class"]) <= {"Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass",
                                  "Nodule", "Pneumonia", "Pneumothorax"}
    config = json.loads((out / "localization_config.json").read_text())
    assert config["split"] == "test" and config["threshold"] == pytest.approx(180 / 255)
    assert (out / "localization.png").stat().st_size > 10_000


def test_each_predicted_box_is_the_box_of_its_grad_cam(localized, predict_run):
    out, _, shards = localized
    boxes = pd.read_csv(out / "localization_boxes.csv", dtype={"image_index": str})
    predictor = Predictor(predict_run[0])
    images = {}
    for batch, _, ids, _ in make_eval_dataset(shards, "test", predictor.config):
        images.update({i.decode(): x for x, i in zip(batch.numpy(), ids.numpy())})
    first = boxes.drop_duplicates(["image_index", "label"]).head(6)
    maps = GradCAM(predictor.model)(np.stack([images[i] for i in first["image_index"]]),
                                    [CLASSES.index(c) for c in first["label"]], relu=False)
    for (_, row), heatmap in zip(first.iterrows(), maps):
        expected = loc.heatmap_box(heatmap)
        assert row[["pred_x", "pred_y", "pred_w", "pred_h"]].tolist() == pytest.approx(expected, abs=1e-3)


def test_refuses_a_box_list_with_no_image_in_the_split(predict_run, tmp_path, capsys):
    run, shards = predict_run
    train_id = pd.read_csv(shards / "splits" / "train.csv", dtype={"image_index": str})["image_index"][0]
    bbox = tmp_path / "BBox_List_2017.csv"
    bbox.write_text(f"Image Index,Finding Label,Bbox [x,y,w,h],,,\n{train_id},Mass,10,20,30,40\n")
    status = main(["--runs", str(run), "--data", str(shards), "--bbox", str(bbox),
                   "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1
    assert err[0].startswith(f"error: {bbox}: none of its 1 boxed images is in split 'test'")
    assert not (tmp_path / "out").exists()


def _make_n(*args):
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    return subprocess.run(["make", "-n", *args], capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_shards_of_another_build_are_refused_before_anything_is_written(predict_run, phantom_dir,
                                                                        tmp_path, capsys):
    from data_prep.build import build_dataset

    run, _ = predict_run
    other = build_dataset(phantom_dir, tmp_path / "seed1", split="paper", size=48, workers=1, seed=1)
    assert other["split"]["seed"] == 1
    out = tmp_path / "out"
    argv = ["--runs", str(run), "--data", str(tmp_path / "seed1"), "--bbox",
            str(phantom_dir / "BBox_List_2017.csv"), "--out", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'seed1'}/manifest.json: not the data {run} was trained on "
                          "(split seed 0 vs 1") and err.count("\n") == 1
    assert not out.exists()


def test_makefile_targets_are_one_line_calls_of_the_clis():
    done = _make_n("localize")
    [line] = [x for x in done.stdout.splitlines() if "reproduce.localize" in x]
    assert line.endswith("-m reproduce.localize --runs runs/densenet121_wce runs/densenet121_ewl "
                         "--data data/nih_tfrecords --bbox data/labels/BBox_List_2017.csv.gz --out results")
    done = _make_n("predict", "IMAGES=a.png scans/", "RUN=runs/vgg16_wce")
    [line] = [x for x in done.stdout.splitlines() if "reproduce.predict" in x]
    assert line.endswith("-m reproduce.predict --run runs/vgg16_wce --out predictions --cam a.png scans/")
    done = _make_n("predict")
    assert done.returncode != 0 and 'make predict needs IMAGES="files or folders"' in done.stderr
