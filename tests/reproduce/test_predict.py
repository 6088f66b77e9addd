"""reproduce.predict: a PNG gets exactly the scores evaluate gives the same image from its TFRecord;
every input kind (gray, RGB, RGBA, 16-bit PNG, JPEG, DICOM) reaches the model as the same pixels;
a corrupt file is one error line and the others are still predicted; folders; --cam overlays;
the stored size when config.json does not record it; predictions.csv read back."""
import json
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from data_prep.schema import CLASSES
from reproduce.data import make_eval_dataset
from reproduce.predictor import Predictor, find_images
from reproduce.predict import COLUMNS, cam_names, main

SCORES = [f"score_{c}" for c in CLASSES]


@pytest.fixture(scope="module")
def predictor(predict_run):
    return Predictor(predict_run[0])


def test_png_gets_exactly_the_scores_evaluate_gives_its_tfrecord(predict_run, phantom_dir, tmp_path, capsys):
    run, shards = predict_run
    evaluated = pd.read_csv(run / "predictions_test.csv", dtype={"image_index": str})
    # the phantom's 1024² PNGs of the test split, in record order: evaluate's batches exactly
    files = [str(phantom_dir / "images" / i) for i in evaluated["image_index"]]
    assert main(["--run", str(run), "--out", str(tmp_path), *files]) == 0
    predicted = pd.read_csv(tmp_path / "predictions.csv")
    assert list(predicted.columns) == COLUMNS and predicted["path"].tolist() == files
    np.testing.assert_array_equal(predicted[SCORES].to_numpy(), evaluated[SCORES].to_numpy())
    assert f"{len(files)} images predicted" in capsys.readouterr().out


def test_the_model_input_is_the_evaluated_tfrecord_image(predictor, predict_run, phantom_dir):
    run, shards = predict_run
    assert (predictor.stored_size, predictor.config.image_size) == (48, 32)  # TF resizes 48 → 32
    assert predictor.stored_size_source == "config.json"
    images, _, ids, _ = next(iter(make_eval_dataset(shards, "test", predictor.config)))
    for image, image_id in zip(images.numpy()[:8], ids.numpy()[:8]):
        np.testing.assert_array_equal(predictor.inputs(phantom_dir / "images" / image_id.decode()), image)


def _same_content_in_every_mode(folder, write_dicom) -> dict:
    """One 8-bit picture written as each kind of file predict accepts (JPEG aside: lossy)."""
    rng = np.random.default_rng(0)
    gray = cv2.GaussianBlur(rng.integers(0, 256, (96, 96), dtype=np.uint8), (0, 0), 3)
    files = {"gray": folder / "gray.png", "rgb": folder / "rgb.png", "rgba": folder / "rgba.png",
             "u16": folder / "u16.png"}
    cv2.imwrite(str(files["gray"]), gray)
    cv2.imwrite(str(files["rgb"]), cv2.merge([gray] * 3))
    cv2.imwrite(str(files["rgba"]), cv2.merge([gray] * 3 + [np.full_like(gray, 255)]))
    cv2.imwrite(str(files["u16"]), gray.astype(np.uint16) * 257)
    files["dicom16"] = write_dicom(folder / "d16.dcm", gray.astype(np.uint16) * 257, "MONOCHROME2", 16)
    # MONOCHROME1 stores 255 − v (white = low); no window: 8 bits as stored, inverted back to v
    files["dicom_mono1"] = write_dicom(folder / "scan", 255 - gray, "MONOCHROME1", 8)  # no suffix
    return files


def test_every_input_kind_reaches_the_model_as_the_same_pixels(predictor, tmp_path, write_dicom):
    files = _same_content_in_every_mode(tmp_path, write_dicom)
    inputs = {kind: predictor.inputs(path) for kind, path in files.items()}
    for kind, image in inputs.items():
        np.testing.assert_array_equal(image, inputs["gray"], err_msg=kind)
    assert inputs["gray"].shape == (32, 32, 1) and inputs["gray"].dtype == np.uint8


def test_folders_files_and_a_corrupt_file(predict_run, tmp_path, write_dicom, capsys):
    run = predict_run[0]
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    files = _same_content_in_every_mode(folder / "sub", write_dicom)
    wide = np.random.default_rng(1).integers(0, 256, (120, 300, 3), dtype=np.uint8)
    cv2.imwrite(str(folder / "wide.jpg"), wide)  # RGB JPEG, not square
    cv2.imwrite(str(folder / "gray.jpeg"), wide[..., 0])
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)  # truncated
    (folder / "notes.txt").write_text("not an image: skipped in folders")
    status = main(["--run", str(run), "--out", str(tmp_path / "out"), str(folder),
                   str(tmp_path / "missing.png")])
    out, err = capsys.readouterr()
    assert status == 1
    errors = err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("error: ") for line in errors)
    assert any(str(folder / "broken.png") in line for line in errors)
    assert any("missing.png: no such file or folder" in line for line in errors)
    assert "8 images predicted" in out and "2 failed" in out
    predicted = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert len(predicted) == 8 and np.isfinite(predicted[SCORES].to_numpy()).all()
    assert predicted["path"].tolist() == [str(p) for p in sorted(
        [folder / "gray.jpeg", folder / "wide.jpg", *files.values()])]  # folders: sorted, recursive
    same = predicted[predicted["path"].isin([str(p) for p in files.values()])][SCORES].to_numpy()
    np.testing.assert_allclose(same, np.repeat(same[:1], len(same), axis=0), rtol=1e-6, atol=1e-7)
    config = json.loads((tmp_path / "out" / "predict_config.json").read_text())
    assert (config["images"], config["failed"], config["stored_size"]) == (8, 2, 48)


def test_cam_overlays_for_the_top_k_classes(predict_run, phantom_dir, tmp_path):
    run = predict_run[0]
    images = sorted((phantom_dir / "images").iterdir())[:2]
    twin = tmp_path / "other"
    twin.mkdir()
    shutil.copy(images[0], twin / images[0].name)  # same stem twice: the second is stem~2
    args = ["--run", str(run), "--out", str(tmp_path / "out"), "--cam", "--top-k", "2"]
    assert main([*args, *map(str, images), str(twin / images[0].name)]) == 0
    predicted = pd.read_csv(tmp_path / "out" / "predictions.csv")
    written = sorted(p.name for p in (tmp_path / "out" / "cam").iterdir())
    expected = []
    for stem, (_, row) in zip(cam_names([*images, twin / images[0].name]), predicted.iterrows()):
        top = np.argsort(-row[SCORES].to_numpy(float), kind="stable")[:2]
        expected += [f"{stem}_{CLASSES[c]}.png" for c in top]
    assert written == sorted(expected) and any("~2_" in name for name in written)
    overlay = cv2.imread(str(tmp_path / "out" / "cam" / written[0]))
    assert overlay is not None and overlay.shape[2] == 3


def test_stored_size_without_config_record(predict_run, tmp_path, capsys):
    run, shards = predict_run
    old = tmp_path / "old_run"
    shutil.copytree(run, old)
    config = json.loads((old / "config.json").read_text())
    del config["stored_size"]  # a run trained before train.py recorded it
    (old / "config.json").write_text(json.dumps(config))
    found = Predictor(old)
    assert found.stored_size == 48 and found.stored_size_source.endswith("manifest.json")
    config["data_dir"] = str(tmp_path / "gone")  # and its TFRecords are not here either
    (old / "config.json").write_text(json.dumps(config))
    fallback = Predictor(old)
    assert (fallback.stored_size, fallback.stored_size_source) == (32, "image_size (stored size unknown)")
    assert capsys.readouterr().err.startswith("warning: the run's stored image size is unknown")


def test_refusals(predict_run, tmp_path, capsys):
    run = predict_run[0]
    bad = tmp_path / "bad.jpg"
    bad.write_text("text")
    assert main(["--run", str(run), "--out", str(tmp_path / "out"), str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: no image could be read (1 failed)")
    assert not (tmp_path / "out" / "predictions.csv").exists()
    assert main(["--run", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), str(bad)]) == 1
    assert "config.json: not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["--run", str(run), "--out", str(tmp_path), "--top-k", "0", str(bad)])
    assert exit_.value.code == 2
    assert find_images([tmp_path / "out"]) == ([], [f"{tmp_path / 'out'}: folder holds no image "
                                                    "file (.png, .jpg, .jpeg, .dcm, .dicom)"])
