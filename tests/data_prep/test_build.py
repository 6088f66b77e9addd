"""data_prep.build / data_prep.shards: NIH-layout folders -> shards + splits + manifest, for real.

Each test builds from its own tiny NIH-layout folder: 20 whole patients (27 images) copied line by
line from the committed label sample, 48×48 random PNGs, built at 16×16 with 4 images per shard.
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict

import cv2
import numpy as np
import pandas as pd
import pytest

from data_prep.build import build_dataset, main
from data_prep.images import ImageError, load_image
from data_prep.schema import CLASSES, SHARD_TEMPLATE, SPLITS, parse_example
from data_prep.shards import ShardError

SIZE, PER_SHARD, SIDE = 16, 4, 48


def make_nih_dir(root, sample_labels, layout="flat", n_patients=20):
    """Whole patients with <= 3 images each, first in file order; `layout` flat = DIR/images/,
    archive = DIR/images_001/images/ and DIR/images_002/images/ alternately."""
    header, *rows = sample_labels.read_text().splitlines()
    by_patient = defaultdict(list)
    for row in rows:
        by_patient[row.split(",")[3]].append(row)
    keep = [pid for pid in by_patient if len(by_patient[pid]) <= 3][:n_patients]
    chosen = [r for pid in keep for r in by_patient[pid]]
    root.mkdir(parents=True, exist_ok=True)
    (root / "Data_Entry_2017_v2020.csv").write_text("\n".join([header, *chosen]) + "\n")
    for k, row in enumerate(chosen):
        folder = root / "images" if layout == "flat" else root / f"images_{k % 2 + 1:03d}" / "images"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(k).integers(0, 256, (SIDE, SIDE), dtype=np.uint8)
        assert cv2.imwrite(str(folder / row.split(",")[0]), pixels)
    return root


def expected_labels(data_dir):
    """image_index -> (patient_id, 14-vector), parsed by hand from the CSV lines."""
    header, *rows = (data_dir / "Data_Entry_2017_v2020.csv").read_text().splitlines()
    out = {}
    for row in rows:
        fields = row.split(",")
        found = set(fields[1].split("|"))
        out[fields[0]] = (int(fields[3]), np.array([c in found for c in CLASSES], np.float32))
    return out


def image_path(data_dir, name):
    return next(data_dir.glob(f"**/images/{name}"))


def shard_hashes(out):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.tfrecord"))}


def read_records(out, split, encoding="raw", eager=True):
    import tensorflow as tf

    files = sorted(str(p) for p in out.glob(f"{split}-*.tfrecord"))
    ds = tf.data.TFRecordDataset(files)
    if eager:
        parsed = [parse_example(r, encoding, SIZE) for r in ds]
    else:
        parsed = list(ds.map(lambda r: parse_example(r, encoding, SIZE)))
    return [{"image": p["image"].numpy()[:, :, 0], "labels": p["labels"].numpy(),
             "image_index": p["image_index"].numpy().decode(), "patient_id": int(p["patient_id"])}
            for p in parsed]


def build(data_dir, out, **kw):
    kw.setdefault("images_per_shard", PER_SHARD)
    return build_dataset(data_dir, out, split=kw.pop("split", "paper"), size=SIZE,
                         workers=kw.pop("workers", 1), seed=kw.pop("seed", 0), **kw)


@pytest.fixture(scope="module")
def built(tmp_path_factory, sample_labels):
    data_dir = make_nih_dir(tmp_path_factory.mktemp("nih") / "flat", sample_labels)
    out = tmp_path_factory.mktemp("shards")
    return data_dir, out, build(data_dir, out)


def test_manifest_contents(built):
    data_dir, out, manifest = built
    truth = expected_labels(data_dir)
    assert list(manifest) == ["size", "encoding", "synthetic", "classes", "split", "splits", "skipped"]
    assert manifest["synthetic"] is False  # NIH's layout without the phantom's mark
    assert (manifest["size"], manifest["encoding"], manifest["classes"]) == (SIZE, "raw", list(CLASSES))
    assert manifest["split"] == {"method": "paper", "seed": 0} and manifest["skipped"] == []
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert sum(manifest["splits"][s]["images"] for s in SPLITS) == len(truth) == 27
    for split in SPLITS:
        part, csv = manifest["splits"][split], pd.read_csv(out / "splits" / f"{split}.csv")
        assert part["images"] == len(csv) == sum(s["records"] for s in part["shards"])
        assert part["patients"] == len({truth[i][0] for i in csv["image_index"]})
        positives = np.sum([truth[i][1] for i in csv["image_index"]], axis=0)
        assert part["positives"] == {c: int(n) for c, n in zip(CLASSES, positives)}
        count = -(-part["images"] // PER_SHARD)
        assert [s["file"] for s in part["shards"]] == [
            SHARD_TEMPLATE.format(split=split, index=k, count=count) for k in range(count)]
        for shard in part["shards"]:
            assert shard["sha256"] == hashlib.sha256((out / shard["file"]).read_bytes()).hexdigest()
    # 20 patients cut 7:1:2 (§IV.A) -> 14 / 2 / 4 patients
    assert [manifest["splits"][s]["patients"] for s in SPLITS] == [14, 2, 4]


def _check_round_trip(data_dir, out, encoding):
    truth = expected_labels(data_dir)
    for split in SPLITS:
        eager = read_records(out, split, encoding, eager=True)
        graph = read_records(out, split, encoding, eager=False)
        assert len(eager) == len(graph) > 0
        for a, b in zip(eager, graph):
            assert a["image_index"] == b["image_index"] and a["patient_id"] == b["patient_id"]
            np.testing.assert_array_equal(a["image"], b["image"])
            np.testing.assert_array_equal(a["labels"], b["labels"])
            source = image_path(data_dir, a["image_index"])
            np.testing.assert_array_equal(a["image"], load_image(source, SIZE))
            assert a["patient_id"] == truth[a["image_index"]][0]
            np.testing.assert_array_equal(a["labels"], truth[a["image_index"]][1])


def test_round_trip_raw_eager_and_tf_data(built):
    data_dir, out, _ = built
    _check_round_trip(data_dir, out, "raw")


def test_round_trip_png(built, tmp_path):
    data_dir, _, _ = built
    manifest = build(data_dir, tmp_path / "png", encoding="png")
    assert manifest["encoding"] == "png"
    _check_round_trip(data_dir, tmp_path / "png", "png")


def test_shards_are_patient_disjoint_and_match_split_csvs(built):
    data_dir, out, _ = built
    patients = {}
    for split in SPLITS:
        records = read_records(out, split)
        ids = [r["image_index"] for r in records]
        assert len(ids) == len(set(ids))
        assert set(ids) == set(pd.read_csv(out / "splits" / f"{split}.csv")["image_index"])
        patients[split] = {r["patient_id"] for r in records}
    assert not (patients["train"] & patients["val"] or patients["train"] & patients["test"]
                or patients["val"] & patients["test"])


def test_records_shuffled_with_the_seed(built, tmp_path):
    data_dir, out, _ = built
    ids = [r["image_index"] for r in read_records(out, "train")]
    assert ids != sorted(ids)  # shuffled, not in file-name order
    build(data_dir, tmp_path / "same")
    assert shard_hashes(tmp_path / "same") == shard_hashes(out)
    build(data_dir, tmp_path / "seed1", seed=1)
    assert shard_hashes(tmp_path / "seed1") != shard_hashes(out)


def test_nih_archive_layout_gives_identical_shards(built, tmp_path, sample_labels):
    _, out, manifest = built
    archive = make_nih_dir(tmp_path / "archive", sample_labels, layout="archive")
    assert (archive / "images_002" / "images").is_dir() and not (archive / "images").exists()
    assert build(archive, tmp_path / "out") == manifest
    assert shard_hashes(tmp_path / "out") == shard_hashes(out)


def test_other_settings_into_same_out_are_refused(built):
    data_dir, out, _ = built
    before = shard_hashes(out)
    with pytest.raises(ShardError, match="different build"):
        build(data_dir, out, seed=5)
    assert shard_hashes(out) == before


def test_resume_after_kill9_is_byte_identical(built, tmp_path):
    """Kill -9 a CLI build mid-way, re-run: the same shards as a clean build, finished ones untouched.
    One image of the last train shard is a FIFO, so the first run blocks there and cannot finish."""
    data_dir, clean, _ = built
    plan = json.loads((clean / ".build" / "plan.json").read_text())
    last_train = [n for n in plan["shards"] if n.startswith("train-")][-1]
    blocker = image_path(data_dir, plan["shards"][last_train][0])
    png = blocker.read_bytes()
    out = tmp_path / "out"
    blocker.unlink()
    os.mkfifo(blocker)
    log = open(tmp_path / "stderr.txt", "w+")  # a file, not a pipe: a full pipe would block the build
    proc = None
    try:
        proc = subprocess.Popen([sys.executable, "-m", "data_prep.build", "--data-dir", str(data_dir),
                                 "--out", str(out), "--size", str(SIZE),
                                 "--images-per-shard", str(PER_SHARD)],
                                stdout=subprocess.DEVNULL, stderr=log)
        first = out / next(iter(plan["shards"]))  # train-00000-of-N: written first
        deadline = time.monotonic() + 60
        while not first.exists():
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
            assert time.monotonic() < deadline, "first shard never appeared"
            time.sleep(0.02)
    finally:  # kill -9 on success, and never leave a build blocked on the FIFO on failure
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()
        blocker.unlink()
        blocker.write_bytes(png)
    assert not (out / "manifest.json").exists()
    done = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tfrecord")}
    assert 1 <= len(done) < len(plan["shards"])
    resumed = build(data_dir, out)
    assert shard_hashes(out) == shard_hashes(clean)
    assert resumed == json.loads((clean / "manifest.json").read_text())
    assert {n: (out / n).stat().st_mtime_ns for n in done} == done  # skipped, not rewritten
    assert not list(out.glob("*.partial"))


@pytest.mark.slow
def test_two_workers_write_the_same_bytes(built, tmp_path):
    data_dir, out, manifest = built
    assert build(data_dir, tmp_path / "w2", workers=2) == manifest
    assert shard_hashes(tmp_path / "w2") == shard_hashes(out)


def _cli(data_dir, out, *extra):
    return main(["--data-dir", str(data_dir), "--out", str(out), "--size", str(SIZE),
                 "--images-per-shard", str(PER_SHARD), *extra])


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_corrupt_image_is_an_error_or_skipped(tmp_path, sample_labels, capsys):
    data_dir = make_nih_dir(tmp_path / "nih", sample_labels)
    victim = sorted((data_dir / "images").iterdir())[5]
    victim.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert _cli(data_dir, tmp_path / "a") == 1
    err = capsys.readouterr().err  # Python-level stderr: the progress bar is off in a pipe
    assert err.count("\n") == 1 and err.startswith(f"error: {victim}: corrupt"), err
    with pytest.raises(ImageError, match=victim.name):
        build(data_dir, tmp_path / "b")
    manifest = build(data_dir, tmp_path / "c", skip_bad=True)
    assert [(s["image_index"], s["path"]) for s in manifest["skipped"]] == [(victim.name, str(victim))]
    assert manifest["skipped"][0]["reason"] == "corrupt or unsupported image file (18 bytes)"
    assert sum(manifest["splits"][s]["images"] for s in SPLITS) == 26
    listed = pd.concat([pd.read_csv(tmp_path / "c" / "splits" / f"{s}.csv") for s in SPLITS])
    assert victim.name not in set(listed["image_index"]) and len(listed) == 26


def test_missing_image_is_an_error_or_skipped(tmp_path, sample_labels, capsys):
    data_dir = make_nih_dir(tmp_path / "nih", sample_labels)
    victim = sorted((data_dir / "images").iterdir())[3]
    victim.unlink()
    assert _cli(data_dir, tmp_path / "a") == 1
    assert _one_error_line(capsys).startswith(f"error: {victim}: image file not found")
    assert _cli(data_dir, tmp_path / "b", "--skip-bad") == 0
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["skipped"] == [{"image_index": victim.name, "path": str(victim),
                                    "reason": "image file not found"}]
    assert sum(manifest["splits"][s]["images"] for s in SPLITS) == 26


def test_label_file_errors_are_one_line(tmp_path, sample_labels, capsys):
    data_dir = make_nih_dir(tmp_path / "nih", sample_labels)
    labels = data_dir / "Data_Entry_2017_v2020.csv"
    text = labels.read_text()
    labels.write_text(text.replace("No Finding", "Flu", 1))
    assert _cli(data_dir, tmp_path / "a") == 1
    assert "unknown label 'Flu'" in _one_error_line(capsys)
    labels.unlink()
    assert _cli(data_dir, tmp_path / "b") == 1
    assert "no label file" in _one_error_line(capsys)


def test_official_lists(tmp_path, sample_labels):
    data_dir = make_nih_dir(tmp_path / "nih", sample_labels)
    truth = expected_labels(data_dir)
    names = sorted(truth)
    test_patients = {truth[n][0] for n in names[:10]}  # whole patients on the test list
    test = [n for n in names if truth[n][0] in test_patients]
    (data_dir / "test_list.txt").write_text("\n".join(test) + "\n")
    (data_dir / "train_val_list.txt").write_text("\n".join(n for n in names if n not in test) + "\n")
    manifest = build(data_dir, tmp_path / "out", split="official")
    assert manifest["split"] == {"method": "official", "seed": 0}
    assert {r["image_index"] for r in read_records(tmp_path / "out", "test")} == set(test)
    train_val = {r["image_index"] for s in ("train", "val") for r in read_records(tmp_path / "out", s)}
    assert train_val == set(names) - set(test)


def test_the_phantoms_mark_reaches_the_manifest(shards_dir, tmp_path):
    """Synthetic is a fact of the data: data_prep.phantom writes phantom.json {"synthetic": true},
    the build carries it into manifest.json (then train into config.json, tests/reproduce/engine/test_training.py)."""
    from data_prep.build import is_phantom
    from data_prep.labels import LabelFileError

    assert json.loads((shards_dir / "manifest.json").read_text())["synthetic"] is True
    (tmp_path / "phantom.json").write_text("[1, 2]")
    with pytest.raises(LabelFileError, match="phantom.json: not the JSON object data_prep.phantom writes"):
        is_phantom(tmp_path)
    (tmp_path / "phantom.json").write_text('{"synthetic": false}')
    assert is_phantom(tmp_path) is False
