"""reproduce.runs (Table I's runs over keys × seeds, one per GPU at a time): what it plans (dry
run), what it refuses, the Makefile's calls of it, and at smoke scale two runs in parallel with
one forced to fail, then the report over the seeds it made: the whole seeds path end to end.
Runtime: ~2 s, plus 1–2 min for the end-to-end test (six TensorFlow subprocesses on 2 cores)."""
import contextlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_prep.schema import CLASSES
from reproduce import metrics, runs
from reproduce.report import cli as report
from reproduce.report.predictions import arrays

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--preset", "smoke", "--keys", "tiny_wce", "tiny_ewl"]


def _run(capsys, argv) -> tuple[int, str, str]:
    status = runs.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_dry_run_plans_folders_seeds_and_options(capsys):
    status, out, _ = _run(capsys, ["--data", "D", "--runs-dir", "R", *TINY, "--seeds", "0", "1",
                                   "--run-options", "tiny_ewl_s1=--weights 'w x.h5'", "tiny_wce=--epochs 3",
                                   "--dry-run", "--", "--batch-size", "8"])
    assert status == 0
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        f"{run} {step}" for run in ("tiny_wce_s0", "tiny_ewl_s0", "tiny_wce_s1", "tiny_ewl_s1")
        for step in ("train", "evaluate")]  # seed-major: every key's first seed first
    assert lines[0] == ("tiny_wce_s0 train: python -m reproduce.train --data D --model tiny --loss wce "
                        "--preset smoke --out R/tiny_wce_s0 --seed 0 --batch-size 8 --epochs 3")
    assert lines[1] == ("tiny_wce_s0 evaluate: python -m reproduce.evaluate --run R/tiny_wce_s0 --data D "
                        "--split val test")
    assert lines[6].endswith("--seed 1 --batch-size 8 --weights 'w x.h5'")  # that run only
    assert "--weights" not in lines[2] and "--epochs" not in lines[2]
    status, out, _ = _run(capsys, ["--data", "D", "--runs-dir", "R", *TINY, "--dry-run", "--steps", "train"])
    assert out.splitlines() == [  # no --seeds: RUNS/<key>, the preset's seed
        "tiny_wce train: python -m reproduce.train --data D --model tiny --loss wce --preset smoke --out R/tiny_wce",
        "tiny_ewl train: python -m reproduce.train --data D --model tiny --loss ewl --preset smoke --out R/tiny_ewl"]


@pytest.mark.parametrize("extra, message", [
    (["--seeds", "0", "--", "--seed", "1"], "--seed is set by reproduce.runs"),
    (["--", "--out=x"], "--out is set by reproduce.runs"),
    (["--run-options", "tiny_wce=--model vgg16"], "--run-options tiny_wce: --model is set"),
    (["--run-options", "nope=--epochs 1"], "expected RUN=OPTIONS with RUN one of tiny_ewl, tiny_wce"),
    (["--gpus", "0,0"], "distinct GPU ids"),
    (["--gpus", "0,,1"], "distinct GPU ids"),
    (["--seeds", "1", "1"], "a seed is listed twice"),
    (["--keys", "resnet_wce"], "--keys 'resnet_wce': expected <model>_<loss>"),
    (["--keys", "tiny_wce", "tiny_wce"], "a key is listed twice"),
])
def test_refusals_are_one_line(extra, message, capsys):
    status, _, err = _run(capsys, ["--data", "D", "--runs-dir", "R", "--preset", "smoke",
                                   "--keys", "tiny_wce", "tiny_ewl", *extra])
    assert status == 1 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_gpus_the_backend_does_not_see_are_refused_before_any_run(tmp_path, capsys):
    """The bug: on a machine where TensorFlow sees no GPU, GPUS=0,1 printed "start … on GPU 0"
    and trained on the CPU, the warning only in train.log. This machine has no GPU."""
    status, out, err = _run(capsys, ["--data", str(tmp_path), "--runs-dir", str(tmp_path / "runs"),
                                     *TINY, "--gpus", "0,1"])
    assert status == 1 and out == "" and err.count("\n") == 1, err
    assert err.startswith("error: --gpus 0,1: tensorflow sees no GPU here, so every run would "
                          "train on the CPU")
    assert not (tmp_path / "runs").exists()


def test_gpu_ids_past_the_machines_are_named(monkeypatch, capsys):
    seen = {}

    def two_gpus(gpus):
        seen["asked"] = gpus
        return "tensorflow", min(len(gpus), 2)

    monkeypatch.setattr(runs, "visible_gpus", two_gpus)
    status, _, err = _run(capsys, ["--data", "D", "--runs-dir", "R", *TINY, "--gpus", "1,0,5"])
    assert status == 1 and seen["asked"] == ["1", "0", "5"]
    assert err == ("error: --gpus 1,0,5: tensorflow sees only the first 2 of them; GPU id 5 is not "
                   "a GPU here (CUDA ids count from 0)\n")


def test_evaluate_only_of_a_missing_run_names_it(tmp_path, capsys):
    status, out, err = _run(capsys, ["--data", str(tmp_path), "--runs-dir", str(tmp_path / "runs"),
                                     "--keys", "tiny_wce", "--steps", "evaluate"])
    assert status == 1
    assert err == (f"error: run tiny_wce: {tmp_path / 'runs' / 'tiny_wce'} does not exist "
                   "(train it first: --steps train)\n")
    assert "FAILED tiny_wce (evaluate, exit 1)" in out and not (tmp_path / "runs").exists()


def _make_n(*args) -> list[str]:
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    done = subprocess.run(["make", "-n", *args], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if "reproduce.runs" in line or "reproduce.report" in line]


def test_makefile_passes_seeds_and_gpus_to_runs_and_every_seed_to_the_report():
    keys = "vgg16_wce resnet50_wce densenet121_wce densenet121_ewl"
    [line] = _make_n("paper", "SEEDS=0 1", "GPUS=0,1")
    assert line.endswith(f"-m reproduce.runs --data data/nih_tfrecords --preset paper --runs-dir runs "
                         f"--keys {keys} --seeds 0 1 --gpus 0,1")
    [line] = _make_n("paper")
    assert line.rstrip().endswith(f"--keys {keys}")
    [line] = _make_n("paper-train", "GPUS=2")
    assert "--steps train" in line and line.endswith("--gpus 2")
    [line] = _make_n("table1", "SEEDS=0 1")
    assert line.count("--runs ") == 8 and "--runs densenet121_ewl=runs/densenet121_ewl_s1" in line
    [line] = _make_n("figure1")
    assert line.count("--runs ") == 4 and "--runs vgg16_wce=runs/vgg16_wce " in line
    run_line, report_line = _make_n("demo-seeds")
    assert ("--preset demo --runs-dir results/demo/runs --keys densenet121_wce densenet121_ewl "
            "--seeds 0 1 2") in run_line
    assert report_line.count("--runs ") == 6 and report_line.endswith("--out results/demo/seeds --synthetic")


@pytest.mark.slow
def test_parallel_runs_one_failing_then_the_report_over_seeds(shards_dir, tmp_path, monkeypatch, capfd):
    """Two "GPUs" on a CPU machine (the GPU check answers as a machine with two would; each run
    sees its CUDA_VISIBLE_DEVICES and trains on the CPU): two runs at a time, one key failing."""
    monkeypatch.setattr(runs, "visible_gpus", lambda gpus: ("tensorflow", len(gpus)))
    monkeypatch.chdir(ROOT)
    runs_dir, missing = tmp_path / "runs", tmp_path / "missing.weights.h5"
    status = runs.main(["--data", str(shards_dir), "--runs-dir", str(runs_dir), *TINY, "--seeds", "0", "1",
                        "--gpus", "0,1", "--run-options", f"tiny_ewl=--weights {missing}"])
    captured = capfd.readouterr()
    proc = subprocess.CompletedProcess([], status, captured.out, captured.err)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # One line per failed run, naming it, its log and the log's own error; nothing else.
    assert proc.stderr.splitlines() == [
        f"error: run tiny_ewl_s{s} failed in train (exit 1); log {runs_dir / f'tiny_ewl_s{s}' / 'train.log'}: "
        f"error: {missing}: backbone weights file not found" for s in (0, 1)]
    status = [line.split(" ", 2)[2] for line in proc.stdout.splitlines() if line.startswith("[runs]")]
    assert set(status[:2]) == {"start tiny_wce_s0 on GPU 0 (train, evaluate; log "
                               f"{runs_dir / 'tiny_wce_s0' / 'train.log'})",
                               f"start tiny_ewl_s0 on GPU 1 (train, evaluate; log "
                               f"{runs_dir / 'tiny_ewl_s0' / 'train.log'})"}  # two at once
    assert status[-1] == "2 of 4 runs done; failed: tiny_ewl_s0, tiny_ewl_s1"
    for seed in (0, 1):  # the other runs are complete, each with its seed
        run = runs_dir / f"tiny_wce_s{seed}"
        assert {"config.json", "history.csv", "best.keras", "last.keras", "predictions_test.csv",
                "metrics_test.json", "predictions_val.csv", "metrics_val.json", "train.log",
                "evaluate_val_test.log"} <= {p.name for p in run.iterdir()}
        assert json.loads((run / "config.json").read_text())["seed"] == seed
        assert "CUDA_VISIBLE_DEVICES=" in (run / "train.log").read_text().splitlines()[1]
        assert not (runs_dir / f"tiny_ewl_s{seed}" / "predictions_test.csv").exists()
    frames = [pd.read_csv(runs_dir / f"tiny_wce_s{s}" / "predictions_test.csv") for s in (0, 1)]
    assert not np.allclose(arrays(frames[0])[1], arrays(frames[1])[1])  # the seed changed the run

    # The report over the two seeds (named as Table I's column to get its layout).
    out = tmp_path / "report"
    argv = ["table1", "--out", str(out), "--synthetic", "--n-resamples", "20"]
    for seed in (0, 1):
        argv += ["--runs", f"densenet121_wce={runs_dir / f'tiny_wce_s{seed}'}"]
    with pytest.warns(metrics.DegenerateClassWarning) if _degenerate(frames[0]) else contextlib.nullcontext():
        assert report.main(argv) == 0
    per_seed = pd.read_csv(out / "table1_seeds.csv")
    aves = []
    for seed, frame in enumerate(frames):
        ave = metrics.mean_auc(metrics.roc_auc_per_class(*arrays(frame), CLASSES))
        row = per_seed[(per_seed.pathology == "AVE") & (per_seed.seed == seed)].iloc[0]
        assert row.auc == pytest.approx(ave, abs=5e-5)
        aves.append(ave)
    table = pd.read_csv(out / "table1.csv", index_col="pathology")
    assert table.loc["AVE", "densenet121_wce"] == pytest.approx(np.mean(aves), abs=5e-5)
    comp = pd.read_csv(out / "table1_comparison.csv").set_index("pathology")
    assert comp.loc["AVE", "n_seeds"] == 2
    assert comp.loc["AVE", "sd_over_seeds"] == pytest.approx(abs(aves[0] - aves[1]) / np.sqrt(2), abs=5e-5)

    # Without --gpus: one after the other, streamed to the terminal and appended to the log.
    cmd = [sys.executable, "-m", "reproduce.runs", "--data", str(shards_dir), "--runs-dir", str(runs_dir),
           "--preset", "smoke", "--keys", "tiny_wce", "--seeds", "0", "--steps", "evaluate"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{runs_dir / 'tiny_wce_s0' / 'predictions_test.csv'}: " in proc.stdout
    assert proc.stdout.splitlines()[-1].endswith("1 of 1 runs done")
    log = (runs_dir / "tiny_wce_s0" / "evaluate_val_test.log").read_text()  # both splits, one log
    assert sum(line.startswith("# ") for line in log.splitlines()) == 2  # appended, not replaced
    assert "predictions_test.csv: " in log.splitlines()[-1]


def _degenerate(frame) -> bool:
    return bool((arrays(frame)[0].min(axis=0) == arrays(frame)[0].max(axis=0)).any())



def test_targets_that_read_the_demo_shards_do_not_redraw_the_phantom():
    """make ablation / demo-seeds / bench-train depend on the shards' manifest, not on the phony
    phantom target: with the shards built they run side by side without racing on data/phantom."""
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    for target in ("ablation", "demo-seeds", "bench-train"):
        done = subprocess.run(["make", "--no-print-directory", "-n", "-o", "data/phantom_tfrecords/manifest.json",
                               "-o", ".venv/.setup-stamp", target], capture_output=True, text=True, cwd=ROOT,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        assert "data_prep.phantom" not in done.stdout and "data_prep.build" not in done.stdout, target
    # ... while make demo-shards itself still draws and builds.
    done = subprocess.run(["make", "--no-print-directory", "-n", "-o", ".venv/.setup-stamp", "demo-shards"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert "data_prep.phantom" in done.stdout and "data_prep.build" in done.stdout


def test_the_makefile_runs_the_papers_grid():
    """make paper, table1, figure1 (PAPER_KEYS) and the seeds/localization pairs are the runs of
    reproduce/paper.py."""
    import re

    from reproduce import paper

    makefile = (ROOT / "Makefile").read_text()

    def keys(name):
        return tuple(re.search(rf"^{name} :?= (.+)$", makefile, re.M).group(1).split())

    assert keys("PAPER_KEYS") == paper.TABLE1_KEYS
    assert set(keys("DEMO_SEED_KEYS")) == set(keys("LOCALIZE_KEYS")) == set(paper.DELONG_PAIR)
