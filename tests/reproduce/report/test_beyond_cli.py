"""`python -m reproduce.report {operating-points,calibration,subgroups}` end to end on synthesised
runs (validation and test predictions, config.json, a label file): every file written and read
back equal to what the modules compute, thresholds untouched by the test labels, provenance, no
TensorFlow, and one `error:` line for each bad input of issue 32."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_prep.schema import CLASSES
from reproduce.report import calibration, operating_points, subgroups
from reproduce.report import cli as report
from reproduce.report.predictions import arrays, predictions_frame, read_predictions

ROOT = Path(__file__).resolve().parents[3]
KEYS = ("densenet121_wce", "densenet121_ewl")
SPLITS = {"val": (0, 100), "test": (1000, 200)}  # first patient id, images (2 per patient)
HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
          "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")


def _split(first_patient: int, n: int, seed: int):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 14)) < 0.25).astype(int)
    ids = [f"{first_patient + i // 2:08d}_{i % 2:03d}.png" for i in range(n)]
    return labels, ids, first_patient + np.arange(n) // 2, rng


def _scores(key: str, labels, rng):
    logits = 1.5 * labels + rng.normal(size=labels.shape)
    if key.endswith("ewl"):  # a softmax head: every row sums to 1
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)
    return 1 / (1 + np.exp(-(logits - 1)))


def write_runs(base: Path, sha: str = "a" * 64) -> dict:
    runs = {}
    for k, key in enumerate(KEYS):
        run = base / key
        run.mkdir(parents=True, exist_ok=True)
        for split, (first, n) in SPLITS.items():
            labels, ids, pids, rng = _split(first, n, seed=first)
            scores = _scores(key, labels, np.random.default_rng(first + 7 * k + 1))
            predictions_frame(labels, scores, ids, pids).to_csv(run / f"predictions_{split}.csv", index=False)
        (run / "config.json").write_text(json.dumps({"model": "densenet121", "loss": key[-3:], "seed": 0,
                                                     "manifest_sha256": sha}))
        runs[key] = run
    return runs


def write_label_file(path: Path, drop: int = 0) -> Path:
    lines = [HEADER]
    rng = np.random.default_rng(4)
    for split, (first, n) in SPLITS.items():
        labels, ids, pids, _ = _split(first, n, seed=first)
        for i in range(drop, n):
            found = "|".join(c for j, c in enumerate(CLASSES) if labels[i, j]) or "No Finding"
            age = 148 if i == 3 else int(rng.integers(10, 90))
            lines.append(f"{ids[i]},{found},{i % 2},{pids[i]},{age},{'FM'[i % 3 == 0]},{('PA', 'AP')[i % 4 == 1]},"
                         "2500,2048,0.168,0.168")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("beyond")
    runs = write_runs(base / "runs")
    labels = write_label_file(base / "Data_Entry_2017_v2020.csv")
    out = base / "out"
    for what in ("operating-points", "calibration", "subgroups"):
        assert report.main(_argv(what, runs, out, labels)) == 0
    return runs, labels, out


def _argv(what, runs, out, labels=None, extra=()):
    argv = [what, "--out", str(out), "--n-resamples", "20", "--synthetic", *extra]
    for key, run in runs.items():
        argv += ["--runs", f"{key}={run}"]
    if labels is not None and what == "subgroups":
        argv += ["--labels", str(labels)]
    if what == "calibration":
        argv += ["--recalibrate", "platt"]
    return argv


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=True)


def _same(written: pd.DataFrame, computed: pd.DataFrame) -> None:
    assert written.columns.tolist() == ["data", *computed.columns]
    assert (written["data"] == "synthetic").all()
    for column in computed.columns:
        got, want = written[column], computed[column]
        if pd.api.types.is_float_dtype(want):
            assert np.allclose(got.to_numpy(float), want.to_numpy(float), atol=5e-5, equal_nan=True), column
        else:
            assert got.fillna("").astype(str).tolist() == want.fillna("").astype(str).tolist(), column


def _frames(runs, split):
    return {k: read_predictions(r, split).sort_values("image_index").reset_index(drop=True) for k, r in runs.items()}


def _triples(frames):
    return {k: (*arrays(f), f["patient_id"].to_numpy()) for k, f in frames.items()}


def test_operating_points_files_round_trip(setup):
    runs, _, out = setup
    results = operating_points.evaluate_runs(_triples(_frames(runs, "val")), _triples(_frames(runs, "test")),
                                             CLASSES, 20, 0, 10)
    _same(_read(out / "operating_points.csv"), operating_points.frame(results, CLASSES))
    md = (out / "operating_points.md").read_text()
    assert md.startswith("# Operating points — data: synthetic ChestX-ray14 (phantom)")
    assert "## `sens95`" in md and "nan" not in md.lower()
    for name in ("pr_curves.png", "pr_curves.pdf"):
        assert (out / name).stat().st_size > 10_000


def test_calibration_files_round_trip_and_heads(setup):
    runs, _, out = setup
    test, val = _frames(runs, "test"), _frames(runs, "val")
    results = {k: calibration.evaluate_run(arrays(test[k]), arrays(val[k]), CLASSES, "platt") for k in KEYS}
    written = _read(out / "calibration.csv")
    _same(written, calibration.frame(results, CLASSES, "platt"))
    heads = dict(zip(written["run"], written["head"]))
    assert heads == {"densenet121_wce": "sigmoid", "densenet121_ewl": "softmax"}
    assert (out / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_subgroups_files_round_trip(setup):
    runs, labels, out = setup
    from data_prep.labels import read_label_file

    test = _frames(runs, "test")
    demo = subgroups.demographics(test[KEYS[0]], read_label_file(labels), labels)
    results = subgroups.evaluate_subgroups(test, demo, CLASSES, 20, 0, 10, pairs=[("densenet121_ewl", "densenet121_wce")])
    table = subgroups.frame(results, CLASSES)
    _same(_read(out / "subgroups.csv"), table)
    _same(_read(out / "subgroups_gaps.csv"), subgroups.gaps_frame(table))
    _same(_read(out / "subgroups_ewl_vs_wce.csv"), subgroups.pairs_frame(results, CLASSES))
    md = (out / "subgroups.md").read_text()
    assert "Images with an age above 100 (recording errors): 1" in md
    assert "## densenet121_ewl − densenet121_wce per subgroup" in md and "nan" not in md.lower()
    assert (out / "subgroups.pdf").read_bytes()[:5] == b"%PDF-"


def test_report_config_records_each_command(setup):
    _, labels, out = setup
    rc = json.loads((out / "report_config.json").read_text())
    assert set(rc) == {"operating-points", "calibration", "subgroups"}
    assert len(rc["operating-points"]["val_predictions_sha256"]["densenet121_wce"]) == 64
    assert rc["calibration"]["recalibrate"] == "platt" and rc["calibration"]["n_bins"] == 10
    assert rc["subgroups"]["labels"] == str(labels) and rc["subgroups"]["min_positives"] == 10
    assert rc["subgroups"]["pairs"] == [["densenet121_ewl", "densenet121_wce"]]
    assert (out / "configs" / "densenet121_ewl.json").is_file() and (out / "DATA_SOURCE.md").is_file()


def test_cli_thresholds_ignore_the_test_labels(setup, tmp_path):
    runs, _, out = setup
    shuffled = write_runs(tmp_path / "runs")
    for run in shuffled.values():
        df = pd.read_csv(run / "predictions_test.csv", dtype={"image_index": str})
        label_cols = [c for c in df.columns if c.startswith("label_")]
        df[label_cols] = df[label_cols].sample(frac=1, random_state=1).to_numpy()
        df.to_csv(run / "predictions_test.csv", index=False)
    assert report.main(_argv("operating-points", shuffled, tmp_path / "o")) == 0
    before, after = _read(out / "operating_points.csv"), _read(tmp_path / "o" / "operating_points.csv")
    assert np.array_equal(before["threshold"].to_numpy(), after["threshold"].to_numpy(), equal_nan=True)
    assert not np.allclose(before["sensitivity"], after["sensitivity"], equal_nan=True)


def _error(capsys, argv) -> str:
    assert report.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_bad_inputs_one_line_errors(setup, tmp_path, capsys):
    runs, labels, _ = setup
    out = tmp_path / "o"
    bare = write_runs(tmp_path / "no_val")
    for run in bare.values():
        (run / "predictions_val.csv").unlink()
    assert "validation predictions not found" in _error(capsys, _argv("operating-points", bare, out))
    assert "--split must be another" in _error(capsys, _argv("operating-points", runs, out, extra=["--split", "val"]))
    assert "fitted on the val split" in _error(capsys, _argv("calibration", runs, out, extra=["--split", "val"]))
    short = write_label_file(tmp_path / "short.csv", drop=5)
    assert "are not in" in _error(capsys, _argv("subgroups", runs, out, short))
    other = write_runs(tmp_path / "other_split", sha="b" * 64)
    mixed = {KEYS[0]: runs[KEYS[0]], KEYS[1]: other[KEYS[1]]}
    assert "trained on different data" in _error(capsys, _argv("calibration", mixed, out))
    assert "no class has 500 positives" in _error(capsys, _argv("subgroups", runs, out, labels,
                                                               extra=["--min-positives", "500"]))
    leak = write_runs(tmp_path / "leak")
    for run in leak.values():
        (run / "predictions_val.csv").write_text((run / "predictions_test.csv").read_text())
    assert "share 200 images" in _error(capsys, _argv("operating-points", leak, out))
    with pytest.raises(SystemExit) as usage:  # a usage error: exit 2
        report.main(_argv("subgroups", runs, out))
    assert usage.value.code == 2


def test_subprocess_without_tensorflow(setup, tmp_path):
    runs, labels, _ = setup
    cmd = [sys.executable, "-X", "importtime", "-m", "reproduce.report",
           *_argv("subgroups", runs, tmp_path / "cli", labels)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "import time:" in line]
    assert "matplotlib" in imported and not [m for m in imported if m.split(".")[0] in ("tensorflow", "keras")]
    assert "| all | all images | 200 | 100 |" in proc.stdout


@pytest.mark.slow
def test_end_to_end_on_trained_phantom_runs(phantom_dir, shards_dir, tmp_path):
    """The demo's path at test scale: two tiny models trained on the phantom (sigmoid and softmax
    heads), evaluated on val and test by reproduce.evaluate, then the three reports with the
    phantom's own label file (--min-positives 2: its splits hold a few dozen images)."""
    from reproduce.config import smoke
    from reproduce.engine.inference import evaluate_run
    from reproduce.engine.training import train

    runs = {}
    for key in KEYS:
        run = tmp_path / key
        train(smoke().override(model="tiny", loss=key[-3:]), shards_dir, run)
        for split in ("val", "test"):
            evaluate_run(run, shards_dir, split, "best")
        runs[key] = run
    out = tmp_path / "out"
    labels = phantom_dir / "Data_Entry_2017_v2020.csv"
    for what in ("operating-points", "calibration", "subgroups"):
        assert report.main(_argv(what, runs, out, labels, extra=["--min-positives", "2"])) == 0
    written = _read(out / "calibration.csv")
    assert dict(zip(written["run"], written["head"])) == {"densenet121_wce": "sigmoid", "densenet121_ewl": "softmax"}
    assert _read(out / "operating_points.csv")["threshold"].notna().any()
    assert (_read(out / "subgroups.csv")["group"] == "all images").any()
    for name in ("pr_curves.png", "reliability.png", "subgroups.png"):
        assert (out / name).stat().st_size > 10_000
