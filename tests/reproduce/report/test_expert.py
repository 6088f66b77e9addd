"""Against radiologists: the expert label file, Cohen's kappa, and `reproduce.report expert` on
hand-made predictions whose expert and NIH AUCs are counted by hand (max-mapping included)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_prep.labels import EXPERT_FINDINGS, LabelFileError, read_expert_labels, read_label_file
from data_prep.schema import CLASSES
from data_prep.split import patient_split
from reproduce import metrics
from reproduce.report import cli as report
from reproduce.report import expert

ROOT = Path(__file__).resolve().parents[3]
HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
          "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],Fracture,Pneumothorax,"
          "Airspace opacity,Nodule or mass,Set Id")

# Eight expert-labelled images, two per patient (0-3), plus two of patient 4 without expert labels.
IMAGES = [f"{p:08d}_{k:03d}.png" for p in range(5) for k in range(2)]
PATIENTS = [p for p in range(5) for _ in range(2)]
EXPERT = {  # radiologists, images 0-7
    "Pneumothorax":     [1, 0, 1, 0, 0, 0, 0, 0],
    "Nodule or mass":   [0, 0, 0, 0, 1, 1, 0, 0],
    "Airspace opacity": [0, 1, 1, 1, 0, 0, 0, 0],
    "Fracture":         [0, 0, 0, 0, 0, 0, 0, 1],
}
NIH = {  # NIH text-mined labels of images 0-9 (other classes 0)
    "Pneumothorax":  [1, 1, 0, 0, 0, 0, 0, 0, 1, 0],
    "Nodule":        [0, 0, 0, 0, 1, 0, 0, 0, 0, 0],
    "Mass":          [0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
    "Infiltration":  [0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
    "Edema":         [0, 0, 0, 1, 0, 0, 0, 0, 0, 0],
    "Consolidation": [0, 0, 0, 0, 0, 0, 0, 1, 0, 0],
}
SCORES = {  # densenet121_wce; classes not named score 0.05 (below every named score)
    "Pneumothorax":  [.9, .8, .7, .1, .2, .3, .4, .5, .01, .6],
    "Nodule":        [.1, .2, .1, .2, .9, .1, .3, .2, .1, .1],
    "Mass":          [.2, .1, .3, .1, .1, .8, .6, .1, .1, .1],
    "Consolidation": [.1, .1, .7, .1, .1, .1, .1, .1, .1, .1],
    "Pneumonia":     [.1, .1, .1, .1, .1, .1, .1, .6, .1, .1],
    "Infiltration":  [.1, .8, .1, .1, .1, .1, .1, .1, .1, .1],
    "Edema":         [.4, .1, .1, .5, .1, .1, .1, .1, .1, .1],
}
# Counted by hand over images 0-7 (the two unlabelled images must not count):
# Pneumothorax: expert positives .9, .7 beat 6 and 5 of the 6 negatives → 11/12; NIH positives
#   .9, .8 beat all 6 → 12/12. Nodule or mass: max(Nodule, Mass) = .2 .2 .3 .2 .9 .8 .6 .2; expert
#   .9, .8 beat all 6 → 12/12; NIH (OR: images 4, 6) .9 beats 6, .6 beats 5 of .2 .2 .3 .2 .8 .2 →
#   11/12. Airspace opacity: max of the four = .4 .8 .7 .5 .1 .1 .1 .6; expert (1, 2, 3) .8, .7
#   beat all 5 negatives, .5 beats 4 → 14/15; NIH (OR: 1, 3, 7) .8 beats 5, .5 and .6 beat 4 → 13/15.
AUC_EXPERT = {"Pneumothorax": 11 / 12, "Nodule or mass": 1.0, "Airspace opacity": 14 / 15}
AUC_NIH = {"Pneumothorax": 1.0, "Nodule or mass": 11 / 12, "Airspace opacity": 13 / 15}


def write_expert_file(path: Path, expert=EXPERT, images=IMAGES[:8], values=("NO", "YES")) -> Path:
    lines = [HEADER]
    for i, name in enumerate(images):
        cells = [values[expert[f][i]] for f in ("Fracture", "Pneumothorax", "Airspace opacity", "Nodule or mass")]
        lines.append(f"{name},No Finding,{i % 2},{PATIENTS[i]},50,M,PA,2500,2048,0.168,0.168,"
                     f"{','.join(cells)},{'test' if i < 4 else 'val'}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_run(run: Path, scores=SCORES, keep=slice(None), config=None) -> None:
    df = pd.DataFrame({"image_index": IMAGES, "patient_id": PATIENTS})
    for c in CLASSES:
        df[f"label_{c}"] = NIH.get(c, [0] * len(IMAGES))
    for c in CLASSES:
        df[f"score_{c}"] = scores.get(c, [0.05] * len(IMAGES))
    run.mkdir(parents=True, exist_ok=True)
    df.iloc[keep].to_csv(run / "predictions_test.csv", index=False)
    config = {"manifest_sha256": "0" * 64, **(config or {"model": "densenet121"})}
    (run / "config.json").write_text(json.dumps(config))


# The ewl run differs in Pneumothorax: expert positives .9 and .2 beat 6 and 1 negatives → 7/12.
EWL = {**SCORES, "Pneumothorax": [.9, .8, .2, .1, .7, .3, .4, .5, .01, .6]}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("expert")
    write_run(base / "densenet121_wce")
    write_run(base / "densenet121_ewl", EWL)
    return base, write_expert_file(base / "google.csv")


def _argv(base, labels, out, keys=("densenet121_wce", "densenet121_ewl"), extra=()):
    argv = ["expert", "--expert-labels", str(labels), "--out", str(out), "--n-resamples", "50", *extra]
    for key in keys:
        argv += ["--runs", f"{key}={base / key}"]
    return argv


@pytest.fixture(scope="module")
def out(setup, tmp_path_factory):
    base, labels = setup
    out = tmp_path_factory.mktemp("out")
    assert report.main(_argv(base, labels, out, extra=["--synthetic"])) == 0
    return out


def _error(capsys, argv) -> str:
    assert report.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


# ---- the label file ------------------------------------------------------------------------------
def test_expert_file_round_trip(tmp_path):
    df = read_expert_labels(write_expert_file(tmp_path / "g.csv"))
    assert df["image_index"].tolist() == IMAGES[:8] and df["patient_id"].tolist() == PATIENTS[:8]
    for f in EXPERT_FINDINGS:
        assert df[f].tolist() == EXPERT[f] and df[f].dtype == np.uint8
    assert df["set_id"].tolist() == ["test"] * 4 + ["val"] * 4


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace(",YES,", ",MAYBE,", 1), r"g.csv:\d+: \w[\w ]* must be YES or NO, got 'MAYBE'"),
    (lambda t: t.replace(",val\n", ",train\n", 1), r"g.csv:6: Set Id must be test or val, got 'train'"),
    (lambda t: t.replace(",Nodule or mass,", ",Nodule,"), "not the Google 2019 expert label file"),
    (lambda t: t.replace("00000003_001.png", "00000003_000.png"), r"g.csv:9: image listed twice"),
])
def test_bad_expert_file_names_the_line(tmp_path, edit, message):
    path = write_expert_file(tmp_path / "g.csv")
    path.write_text(edit(path.read_text()))
    with pytest.raises(LabelFileError, match=message) as err:
        read_expert_labels(path)
    assert "\n" not in str(err.value)


def test_real_expert_file_counts(real_expert, real_labels):
    """Majkowska et al. (2019)'s 4,376 images; 893 fall in our paper test split (seed 0)."""
    df = read_expert_labels(real_expert)
    assert len(df) == 4376 and df["set_id"].value_counts().to_dict() == {"val": 2414, "test": 1962}
    assert {f: int(df[f].sum()) for f in EXPERT_FINDINGS} == {
        "Pneumothorax": 238, "Nodule or mass": 605, "Airspace opacity": 2166, "Fracture": 186}
    test = patient_split(read_label_file(real_labels), seed=0)["test"]
    ours = df[df["image_index"].isin(set(test["image_index"]))]
    assert len(ours) == 893
    assert {f: int(ours[f].sum()) for f in EXPERT_FINDINGS} == {
        "Pneumothorax": 46, "Nodule or mass": 105, "Airspace opacity": 443, "Fracture": 32}


def test_real_file_agreement(real_expert, real_labels):
    """The numbers in results/README.md and docs/radiologists.md (all 4,376 rows, no image needed)."""
    table = expert.file_agreement(real_expert, real_labels).set_index("finding")
    got = table[["positives_expert", "positives_nih", "nih_pos_expert_neg", "nih_neg_expert_pos"]]
    assert got.to_dict("index") == {
        "Pneumothorax": {"positives_expert": 238, "positives_nih": 238, "nih_pos_expert_neg": 129,
                         "nih_neg_expert_pos": 129},
        "Nodule or mass": {"positives_expert": 605, "positives_nih": 455, "nih_pos_expert_neg": 199,
                           "nih_neg_expert_pos": 349},
        "Airspace opacity": {"positives_expert": 2166, "positives_nih": 1266, "nih_pos_expert_neg": 307,
                             "nih_neg_expert_pos": 1207},
    }
    assert table["kappa"].round(3).to_dict() == {"Pneumothorax": 0.427, "Nodule or mass": 0.413,
                                                 "Airspace opacity": 0.305}
    # ... and the two pages that quote them hold these numbers, row by row
    for page in ("results/README.md", "docs/radiologists.md"):
        rows = [line for line in (ROOT / page).read_text().splitlines() if line.startswith("| ")]
        for finding, r in table.iterrows():
            cells = (f"{r['positives_expert']:,}", f"{r['positives_nih']:,}", f"{r['nih_pos_expert_neg']:,}",
                     f"{r['nih_neg_expert_pos']:,}", f"{r['kappa']:.3f}")
            got = [[c.split(" (")[0] for c in line.strip("|").split("|")[1:6]] for line in rows
                   if line.strip("|").split("|")[0].strip().startswith(finding)]
            assert [[c.strip() for c in g] for g in got] == [list(cells)], f"{page}: {finding} row"


# ---- kappa and the mapping -----------------------------------------------------------------------
def test_cohen_kappa_hand_computed():
    # agree on 4 of 6 (p_o = 2/3); both raters 1/2 positive (p_e = 1/2) → κ = (2/3 − 1/2)/(1/2) = 1/3
    assert metrics.cohen_kappa([1, 1, 0, 0, 1, 0], [1, 0, 0, 0, 1, 1]) == pytest.approx(1 / 3)
    assert metrics.cohen_kappa([1, 0, 1, 0], [1, 0, 1, 0]) == 1.0
    assert metrics.cohen_kappa([1, 0, 1, 0], [0, 1, 0, 1]) == -1.0
    assert np.isnan(metrics.cohen_kappa([1, 1, 1], [1, 1, 1]))  # p_e = 1: undefined
    with pytest.raises(ValueError, match="0 or 1"):
        metrics.cohen_kappa([1, 2], [1, 0])


def test_per_finding_takes_the_max_of_its_classes():
    m = np.zeros((1, 14))
    m[0, CLASSES.index("Mass")], m[0, CLASSES.index("Nodule")] = 0.7, 0.2
    m[0, CLASSES.index("Edema")], m[0, CLASSES.index("Atelectasis")] = 0.3, 0.9  # Atelectasis: not mapped
    assert expert.per_finding(m).tolist() == [[0.0, 0.7, 0.3]]


# ---- the report ----------------------------------------------------------------------------------
def test_expert_and_nih_aucs_equal_hand_counts(out):
    table = pd.read_csv(out / "expert_auc.csv")
    assert table.columns.tolist() == ["data", *expert.AUC_COLUMNS] and (table["data"] == "synthetic").all()
    wce = table[table.run == "densenet121_wce"].set_index("finding")
    for f in expert.SCORED:
        assert wce.loc[f, "auc_expert"] == pytest.approx(round(AUC_EXPERT[f], 4), abs=1e-12)
        assert wce.loc[f, "auc_nih"] == pytest.approx(round(AUC_NIH[f], 4), abs=1e-12)
        assert wce.loc[f, "auc_expert_ci_low"] <= wce.loc[f, "auc_expert"] <= wce.loc[f, "auc_expert_ci_high"]
    assert (wce["images"] == 8).all()
    assert wce[["positives_expert", "positives_nih"]].loc["Nodule or mass"].tolist() == [2, 2]
    ewl = table[table.run == "densenet121_ewl"].set_index("finding")
    assert ewl.loc["Pneumothorax", "auc_expert"] == pytest.approx(round(7 / 12, 4))


def test_fracture_counts_only(out):
    text = (out / "expert_auc.csv").read_text().splitlines()
    fracture = [line for line in text if ",Fracture," in line]
    assert fracture == ["synthetic,densenet121_wce,Fracture,8,1,,,,,,,,,",
                        "synthetic,densenet121_ewl,Fracture,8,1,,,,,,,,,"]


def test_delong_on_expert_and_nih_labels(out):
    table = pd.read_csv(out / "expert_auc.csv").set_index(["run", "finding"])
    e = np.array(EXPERT["Pneumothorax"])
    a, b = np.array(EWL["Pneumothorax"][:8]), np.array(SCORES["Pneumothorax"][:8])
    p = metrics.delong_test(e, a, b)["p_value"]
    assert table.loc[("densenet121_ewl", "Pneumothorax"), "delong_p_ewl_vs_wce_expert"] == pytest.approx(p, abs=1e-4)
    assert table.loc[("densenet121_wce", "Pneumothorax"), "delong_p_ewl_vs_wce_expert"] == pytest.approx(p, abs=1e-4)
    p_nih = metrics.delong_test(np.array(NIH["Pneumothorax"][:8]), a, b)["p_value"]
    assert table.loc[("densenet121_ewl", "Pneumothorax"), "delong_p_ewl_vs_wce_nih"] == pytest.approx(p_nih, abs=1e-4)


def test_agreement_file_hand_counted(out):
    table = pd.read_csv(out / "expert_agreement.csv").set_index("finding")
    # Pneumothorax: NIH 1 1 0 0 0 0 0 0 vs expert 1 0 1 0 0 0 0 0: p_o = 6/8, p_e = 1/16 + 9/16.
    assert table.loc["Pneumothorax", ["nih_pos_expert_neg", "nih_neg_expert_pos"]].tolist() == [1, 1]
    assert table.loc["Pneumothorax", "kappa"] == pytest.approx(round(1 / 3, 4))
    # Airspace opacity: NIH (OR) 0 1 0 1 0 0 0 1 vs expert 0 1 1 1 0 0 0 0: p_o = 6/8, p_e = 34/64.
    assert table.loc["Airspace opacity", "kappa"] == pytest.approx(round(7 / 15, 4))
    assert table.loc["Airspace opacity", "nih_classes"] == "Consolidation|Pneumonia|Infiltration|Edema"


def test_markdown_config_and_printed_count(setup, tmp_path, capsys):
    base, labels = setup
    assert report.main(_argv(base, labels, tmp_path, keys=["densenet121_wce"])) == 0
    printed = capsys.readouterr().out
    assert "8 of the 10 images of split 'test' have expert labels (4 patients)" in printed
    md = (tmp_path / "expert.md").read_text()
    assert md.splitlines()[0].startswith("# Against radiologists — data: ChestX-ray14 (NIH)")
    assert "| Airspace opacity | densenet121_wce | 0.9333 [" in md and "DeLong" not in md
    assert not (tmp_path / "DATA_SOURCE.md").exists()
    rc = json.loads((tmp_path / "report_config.json").read_text())["expert"]
    assert rc["n_images"] == 8 and rc["n_split_images"] == 10 and len(rc["expert_labels_sha256"]) == 64
    assert rc["scores"]["Nodule or mass"] == "max(Nodule, Mass)" and "provenance" in rc


def test_run_missing_expert_images_is_named(setup, tmp_path, capsys):
    base, labels = setup
    short = tmp_path / "densenet121_ewl"
    write_run(short, EWL, keep=[i for i in range(10) if i != 3])
    argv = ["expert", "--expert-labels", str(labels), "--out", str(tmp_path / "o"),
            "--runs", f"densenet121_wce={base / 'densenet121_wce'}", f"densenet121_ewl={short}"]
    err = _error(capsys, argv)
    assert f"run densenet121_ewl ({short / 'predictions_test.csv'}) lacks 1 of the 8" in err
    assert "00000001_001.png" in err and not (tmp_path / "o").exists()


def test_no_expert_image_and_bad_inputs(setup, tmp_path, capsys):
    base, _ = setup
    other = write_expert_file(tmp_path / "other.csv", images=[f"9{n[1:]}" for n in IMAGES[:8]])
    assert "none of the 10 images of split 'test' has a label in" in _error(capsys, _argv(base, other, tmp_path / "o"))
    moved = write_expert_file(tmp_path / "moved.csv")
    moved.write_text(moved.read_text().replace(",0,50,M", ",7,50,M", 1))
    assert "00000000_000.png: patient 0 in the predictions but 7 in" in _error(capsys, _argv(base, moved, tmp_path / "o"))
    assert "cannot read expert label file" in _error(capsys, _argv(base, tmp_path / "nope.csv", tmp_path / "o"))
    with pytest.raises(SystemExit) as exc:  # usage error: exit 2
        report.main(["expert", "--runs", f"densenet121_wce={base / 'densenet121_wce'}", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "--expert-labels" in capsys.readouterr().err


def test_cli_subprocess_without_tensorflow(setup, tmp_path):
    base, labels = setup
    cmd = [sys.executable, "-X", "importtime", "-m", "reproduce.report",
           *_argv(base, labels, tmp_path, extra=["--synthetic"])]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "import time:" in line]
    assert "pandas" in imported and not [m for m in imported if m.split(".")[0] in ("tensorflow", "keras")]
    assert "not real-data results" in proc.stdout
    assert (tmp_path / "DATA_SOURCE.md").read_text().startswith("# synthetic ChestX-ray14 (phantom)")
