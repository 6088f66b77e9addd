"""reproduce.report.reference: make demo's untracked output against the committed reference."""
import json
import shutil

import pytest

from reproduce.report import reference

TABLE = ("pathology,vgg16_wce,densenet121_ewl\n"
         "Atelectasis,0.9000,0.6000\n"
         "Cardiomegaly,0.7000,0.5000\n"
         "AVE,0.8000,0.5500\n")


def _results(folder, table=TABLE, config='{"code": "abc"}'):
    (folder / "configs").mkdir(parents=True)
    (folder / "runs" / "vgg16_wce").mkdir(parents=True)
    (folder / "table1.csv").write_text(table)
    (folder / "figure1.png").write_bytes(b"\x89PNG not really")
    (folder / "configs" / "vgg16_wce.json").write_text(config)
    (folder / "runs" / "vgg16_wce" / "best.keras").write_bytes(b"weights")
    return folder


def test_save_copies_results_not_runs_and_records_the_machine(tmp_path):
    ours = _results(tmp_path / "ours")
    meta = reference.save(ours, tmp_path / "ref")
    assert sorted(meta["sha256"]) == ["configs/vgg16_wce.json", "figure1.png", "table1.csv"]
    assert not (tmp_path / "ref" / "runs").exists()
    saved = json.loads((tmp_path / "ref" / "reference.json").read_text())
    assert saved["machine"]["cpu_count"] >= 1 and "instruction_sets" in saved["machine"]
    assert saved["made_from"] == str(ours) and "code" in saved["provenance"]
    # Saving again after make demo alone: what ours holds is replaced, what only the reference
    # holds (make ablation's, make demo-seeds' results) stays, with its recorded hash.
    (ours / "figure1.png").unlink()
    (ours / "table1.csv").write_text(TABLE.replace("0.9000", "0.9100"))
    digest = saved["sha256"]["figure1.png"]
    meta = reference.save(ours, tmp_path / "ref")
    assert (tmp_path / "ref" / "figure1.png").read_bytes() == b"\x89PNG not really"
    assert "0.9100" in (tmp_path / "ref" / "table1.csv").read_text()
    assert meta["kept_from_before"] == ["figure1.png"] and meta["sha256"]["figure1.png"] == digest
    assert reference.compare(ours, tmp_path / "ref")["missing"] == ["figure1.png"]
    # A folder ours writes is replaced whole (predict/cam/ holds each image's top classes: an old
    # model's overlays must not outlive it); a folder ours does not write (seeds/) stays.
    for name in ("predict/cam/a_Emphysema.png", "seeds/table1.csv"):
        (ours / name).parent.mkdir(parents=True, exist_ok=True)
        (ours / name).write_text("old model")
    reference.save(ours, tmp_path / "ref")
    (ours / "predict" / "cam" / "a_Emphysema.png").unlink()
    shutil.rmtree(ours / "seeds")
    (ours / "predict" / "cam" / "a_Cardiomegaly.png").write_text("new model")
    meta = reference.save(ours, tmp_path / "ref")
    assert meta["kept_from_before"] == ["figure1.png", "seeds/table1.csv"]
    assert not (tmp_path / "ref" / "predict" / "cam" / "a_Emphysema.png").exists()
    assert "predict/cam/a_Emphysema.png" not in meta["sha256"] and "predict/cam/a_Cardiomegaly.png" in meta["sha256"]
    assert (tmp_path / "ref" / "seeds" / "table1.csv").read_text() == "old model"


def test_identical_results_say_so_and_json_records_do_not_count(tmp_path):
    reference.save(_results(tmp_path / "ref_src"), tmp_path / "ref")
    ours = _results(tmp_path / "ours", config='{"code": "a later commit"}')
    result = reference.compare(ours, tmp_path / "ref")
    assert result["compared"] == 2 and result["identical"] == ["figure1.png", "table1.csv"]
    assert result["differ"] == [] and result["missing"] == []
    lines = reference.summary_lines(result, ours, tmp_path / "ref")
    assert len(lines) == 1 and "all 2 tables and figures identical" in lines[0]
    assert reference.main(["compare", "--ours", str(ours), "--reference", str(tmp_path / "ref"),
                           "--strict"]) == 0


def test_different_table1_gives_the_largest_auc_change_and_each_mean(tmp_path, capsys):
    reference.save(_results(tmp_path / "ref_src"), tmp_path / "ref")
    moved = TABLE.replace("0.7000,0.5000", "0.6500,0.5200").replace("AVE,0.8000,0.5500", "AVE,0.7750,0.5600")
    ours = _results(tmp_path / "ours", table=moved)
    (tmp_path / "ref" / "ablation.csv").write_text("loss\n")  # made by make ablation only
    result = reference.compare(ours, tmp_path / "ref")
    assert result["differ"] == ["table1.csv"] and result["missing"] == ["ablation.csv"]
    # By hand: |0.65 - 0.70| = 0.05 is the largest cell change (AVE moved 0.025, 0.01).
    assert result["table1"]["max_abs_auc"] == pytest.approx(0.05)
    assert result["table1"]["mean_auc"] == {"vgg16_wce": (0.775, 0.8), "densenet121_ewl": (0.56, 0.55)}
    argv = ["compare", "--ours", str(ours), "--reference", str(tmp_path / "ref")]
    assert reference.main(argv) == 0  # informs only
    out = capsys.readouterr().out
    assert "1 of 2 tables and figures identical; Table I max |ΔAUC| 0.0500" in out
    assert "vgg16_wce 0.7750 (reference 0.8000)" in out and "1 more only in the reference (ablation.csv)" in out
    assert reference.main([*argv, "--strict"]) == 1


def test_a_onednn_cap_is_part_of_the_machine_and_of_the_lines(tmp_path, monkeypatch):
    """ONEDNN_MAX_CPU_ISA changes oneDNN's kernels, so their round-off: the reference records it,
    and the compare names it for both machines; without it the record has no such key."""
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    reference.save(_results(tmp_path / "plain_src"), tmp_path / "plain")
    assert "onednn_max_cpu_isa" not in json.loads((tmp_path / "plain" / "reference.json").read_text())["machine"]
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    reference.save(_results(tmp_path / "ref_src"), tmp_path / "ref")
    assert json.loads((tmp_path / "ref" / "reference.json").read_text())["machine"]["onednn_max_cpu_isa"] == "AVX2"
    ours = _results(tmp_path / "ours", table=TABLE.replace("0.7000,0.5000", "0.6500,0.5200"))
    lines = reference.summary_lines(reference.compare(ours, tmp_path / "ref"), ours, tmp_path / "ref")
    assert ", oneDNN capped at AVX2, " in lines[0] and lines[-1].startswith("this machine: ")
    assert ", oneDNN capped at AVX2, " in lines[-1]


def test_missing_table1_is_one_error_line(tmp_path, capsys):
    ours = _results(tmp_path / "ours")
    shutil.copytree(ours, tmp_path / "ref")
    (ours / "table1.csv").unlink()
    assert reference.main(["compare", "--ours", str(ours), "--reference", str(tmp_path / "ref")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "table1.csv" in err[0]
    assert reference.main(["compare", "--ours", str(ours), "--reference", str(tmp_path / "none")]) == 1
    assert "no reference folder" in capsys.readouterr().err


def test_make_demo_writes_an_ignored_folder_and_ends_by_comparing_with_the_reference():
    """The clean-tree promise: nothing make demo writes is tracked, and its last step compares."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    if shutil.which("make") is None or shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("needs make and a git checkout")
    done = subprocess.run(["make", "--no-print-directory", "-n", "-o", ".venv/.setup-stamp", "demo"],
                          capture_output=True, text=True, cwd=root, timeout=60)
    assert done.returncode == 0, done.stderr
    commands = [line for line in done.stdout.splitlines() if not line.startswith("make")]
    assert commands[-1].endswith(
        "-m reproduce.report.reference compare --ours results/demo --reference results/reference/demo")
    for path in ("results/demo/table1.csv", "results/demo/runs/vgg16_wce/best.keras", "results/rehearsal/table1.csv"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=root).returncode == 0, path
    for path in ("results/reference/demo/table1.csv", "results/reference/demo/figure1.png"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=root).returncode == 1, path
