"""reproduce.report: Table I / Figure 1 from prediction CSVs with known AUCs, bad inputs, and the
CLI end to end in a subprocess (which must never import TensorFlow)."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_prep.schema import CLASSES
from reproduce import metrics
from reproduce.report import cli as report
from reproduce.report.table1 import read_paper_table

ROOT = Path(__file__).resolve().parents[3]
N_POS, N_NEG = 10, 30  # 40 images, 2 per patient
# Concordant pairs k of 300 per class j: AUC = k/300 exactly (no ties, see _scores).
TARGETS = {
    "vgg16_wce": lambda j: 200 + j,
    "densenet121_wce": lambda j: 210 + 2 * j,
    "densenet121_ewl": lambda j: 240 + j,
}


def _labels() -> np.ndarray:
    """[40, 14]: class j is positive on the 10 images with (i + j) % 4 == 0."""
    i = np.arange(N_POS + N_NEG)[:, None]
    return ((i + np.arange(14)[None, :]) % 4 == 0).astype(int)


def _scores(y: np.ndarray, k: int) -> np.ndarray:
    """Negatives score (r + 1)/100 (r = 0…29); positive number p scores (c_p + ½)/100, above
    exactly the c_p negatives r = 0…c_p − 1, with Σ c_p = k → AUC = k / (10·30), no ties."""
    c = np.full(N_POS, k // N_POS) + (np.arange(N_POS) < k % N_POS)
    s = np.empty(y.size)
    s[y == 0] = (np.arange(N_NEG) + 1) / 100
    s[y == 1] = (c + 0.5) / 100
    return s


SHARDS_SHA256 = "0" * 64  # every run of this module trained on the same build (run_data)


def write_run(run: Path, key: str, k_of_class, image_offset: int = 0, config: dict | None = None):
    y = _labels()
    df = pd.DataFrame({"image_index": [f"{i + image_offset:08d}_000.png" for i in range(len(y))],
                       "patient_id": np.arange(len(y)) // 2})
    for j, c in enumerate(CLASSES):
        df[f"label_{c}"] = y[:, j]
    for j, c in enumerate(CLASSES):
        df[f"score_{c}"] = _scores(y[:, j], k_of_class(j))
    run.mkdir(parents=True, exist_ok=True)
    df.sample(frac=1, random_state=0).to_csv(run / "predictions_test.csv", index=False)  # any row order
    config = config or {"model": key.split("_")[0], "seed": 0}
    (run / "config.json").write_text(json.dumps({"manifest_sha256": SHARDS_SHA256, **config}))
    return df


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    for key, target in TARGETS.items():
        write_run(base / key, key, target)
    return base


def _args(runs: Path, out: Path, what="table1", keys=TARGETS, extra=()):
    argv = [what, "--out", str(out), "--n-resamples", "20", *extra]
    for key in keys:
        argv += ["--runs", f"{key}={runs / key}"]
    return argv


@pytest.fixture(scope="module")
def table_out(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    assert report.main(_args(runs, out, extra=["--synthetic"])) == 0
    return out


def test_table1_values_equal_constructed_aucs(table_out):
    ours = pd.read_csv(table_out / "table1.csv", index_col="pathology")
    for key, target in TARGETS.items():
        expected = [round(target(j) / 300, 4) for j in range(14)]
        assert ours[key].iloc[:14].tolist() == pytest.approx(expected, abs=1e-12)
        assert ours.loc["AVE", key] == pytest.approx(round(np.mean([target(j) for j in range(14)]) / 300, 4))


def test_table1_layout_matches_paper_table(table_out):
    paper = read_paper_table()
    ours = pd.read_csv(table_out / "table1.csv", index_col="pathology")
    assert ours.index.tolist() == paper.index.tolist()
    assert ours.columns.tolist() == [c for c in paper.columns if c in TARGETS]  # paper's order
    assert (table_out / "table1.csv").read_text().splitlines()[0] == "pathology," + ",".join(ours.columns)
    source = (table_out / "DATA_SOURCE.md").read_text()
    assert source.startswith("# synthetic ChestX-ray14 (phantom)") and "40 images, 20 patients" in source


def test_comparison_csv_columns_and_delong(table_out, runs):
    comp = pd.read_csv(table_out / "table1_comparison.csv")
    assert (comp["data"] == "synthetic").all()
    assert comp.columns.tolist() == ["data", "pathology", "run", "paper", "ours", "sd_over_seeds",
                                     "n_seeds", "ci_low", "ci_high", "ours_minus_paper",
                                     "delong_p_ewl_vs_wce", "n_resamples_used"]
    assert (comp["n_seeds"] == 1).all() and comp["sd_over_seeds"].isna().all()  # one run per key
    assert len(comp) == 3 * 15
    row = comp[(comp.pathology == "Hernia") & (comp.run == "densenet121_ewl")].iloc[0]
    assert row.paper == 0.9637  # Table I, Hernia, DenseNet121 proposed loss
    assert row.ours == pytest.approx(round((240 + 7) / 300, 4))
    assert row.ours_minus_paper == pytest.approx(row.ours - row.paper, abs=1e-4)
    assert row.ci_low <= row.ours <= row.ci_high
    y = _labels()[:, 7]
    expected_p = metrics.delong_test(y, _scores(y, 247), _scores(y, 210 + 14))["p_value"]
    assert row.delong_p_ewl_vs_wce == pytest.approx(expected_p, abs=1e-4)
    pair = comp[comp.run.isin(["densenet121_ewl", "densenet121_wce"]) & (comp.pathology != "AVE")]
    assert pair.delong_p_ewl_vs_wce.between(0, 1).all()
    assert comp[comp.run == "vgg16_wce"].delong_p_ewl_vs_wce.isna().all()
    assert comp[comp.pathology == "AVE"].delong_p_ewl_vs_wce.isna().all()


def test_markdown_configs_and_report_config(table_out, runs):
    md = (table_out / "table1.md").read_text()
    assert md.splitlines()[0].startswith("# Table I reproduction — data: synthetic ChestX-ray14 (phantom)")
    assert "split: test; 40 images" in md and "DeLong p (ewl vs wce)" in md
    assert json.loads((table_out / "configs" / "vgg16_wce.json").read_text()) == {
        "manifest_sha256": SHARDS_SHA256, "model": "vgg16", "seed": 0}
    rc = json.loads((table_out / "report_config.json").read_text())
    assert list(rc) == ["table1"]
    rc = rc["table1"]
    assert rc["argv"][:3] == ["table1", "--out", str(table_out)]
    assert rc["synthetic"] is True and rc["n_resamples"] == 20 and rc["split"] == "test"
    assert rc["runs"]["densenet121_ewl"] == str(runs / "densenet121_ewl")
    assert len(rc["predictions_sha256"]["vgg16_wce"]) == 64


def test_real_data_header_without_synthetic(runs, tmp_path):
    assert report.main(_args(runs, tmp_path, keys=["vgg16_wce"])) == 0
    assert "data: ChestX-ray14 (NIH)" in (tmp_path / "table1.md").read_text()
    assert "synthetic" not in (tmp_path / "table1.csv").read_text()


def test_figure1_files(runs, tmp_path):
    assert report.main(_args(runs, tmp_path, what="figure1", keys=["densenet121_ewl"], extra=["--synthetic"])) == 0
    png, pdf = (tmp_path / "figure1.png").read_bytes(), (tmp_path / "figure1.pdf").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    assert pdf[:5] == b"%PDF-" and len(pdf) > 10_000
    assert not (tmp_path / "table1.csv").exists()
    assert report.main(_args(runs, tmp_path, keys=["densenet121_ewl"])) == 0  # table1 into the same DIR
    rc = json.loads((tmp_path / "report_config.json").read_text())
    assert rc["figure1"]["command"] == "figure1" and rc["table1"]["command"] == "table1"


def test_figure_panels_not_run_and_curves():
    from reproduce.report import figure1 as figures

    y = _labels()
    scores = np.stack([_scores(y[:, j], 200 + j) for j in range(14)], axis=1)
    curves = metrics.roc_curve_per_class(y, scores, CLASSES)
    fig = figures.figure1({"densenet121_ewl": curves}, "synthetic ChestX-ray14 (phantom) — not real-data results")
    axes = fig.axes
    assert [t.get_text() for t in axes[0].texts] == ["not run"]
    assert len(axes[3].lines) == 15  # 14 classes + chance diagonal
    legend = [t.get_text() for t in axes[3].get_legend().get_texts()]
    assert f"Hernia {207 / 300:.3f}" in legend
    assert "not real-data" in fig._suptitle.get_text()
    figures.plt.close(fig)


def _error(capsys, argv) -> str:
    assert report.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_bad_inputs_one_line_errors(runs, tmp_path, capsys):
    out = tmp_path / "out"
    assert "predictions file not found" in _error(capsys, _args(runs, out, extra=["--split", "val"]))
    assert "KEY=RUN" in _error(capsys, ["table1", "--out", str(out), "--runs", "Bad Key=x"])
    bad = tmp_path / "bad"
    df = write_run(bad, "vgg16_wce", TARGETS["vgg16_wce"])
    df.drop(columns=["score_Hernia"]).to_csv(bad / "predictions_test.csv", index=False)
    err = _error(capsys, ["table1", "--out", str(out), "--runs", f"vgg16_wce={bad}"])
    assert "missing column(s) score_Hernia" in err and str(bad / "predictions_test.csv") in err
    df.assign(label_Mass=2).to_csv(bad / "predictions_test.csv", index=False)
    assert "only 0 and 1" in _error(capsys, ["table1", "--out", str(out), "--runs", f"vgg16_wce={bad}"])
    (bad / "config.json").unlink()
    assert "config.json: run config not found" in _error(capsys, ["table1", "--out", str(out), "--runs", f"vgg16_wce={bad}"])


def test_different_image_sets_refused(runs, tmp_path, capsys):
    other = tmp_path / "shifted"
    write_run(other, "densenet121_ewl", TARGETS["densenet121_ewl"], image_offset=5)
    argv = ["table1", "--out", str(tmp_path / "o"), "--runs", f"densenet121_wce={runs / 'densenet121_wce'}",
            "--runs", f"densenet121_ewl={other}"]
    assert "different image sets" in _error(capsys, argv)
    assert not (tmp_path / "o" / "table1.csv").exists()
    relabelled = tmp_path / "relabelled"
    df = write_run(relabelled, "densenet121_ewl", TARGETS["densenet121_ewl"])
    df.loc[0, "label_Mass"] = 1 - df.loc[0, "label_Mass"]
    df.to_csv(relabelled / "predictions_test.csv", index=False)
    argv[-1] = f"densenet121_ewl={relabelled}"
    assert "different labels" in _error(capsys, argv)


def _summary(seed: int) -> dict:
    return {"split_method": "paper", "split_seed": seed, "size": 224, "encoding": "raw",
            "synthetic": False, "splits": {"test": {"images": 40, "patients": 20, "shards": 1,
                                                    "shards_sha256": f"{seed:064d}"}}}


def test_synthetic_is_a_fact_of_the_data_not_a_flag(tmp_path, capsys):
    """Runs trained on the phantom record it (manifest.json → config.json): every output says
    synthetic without --synthetic (before: "data: ChestX-ray14 (NIH)" for make smoke's runs); an
    older run is known by the phantom in its paths; --synthetic cannot relabel real data."""
    argv = ["table1", "--n-resamples", "5"]
    marked, old, real = tmp_path / "marked", tmp_path / "old", tmp_path / "real"
    write_run(marked, "vgg16_wce", TARGETS["vgg16_wce"],
              config={"data_dir": "data/smoke_tfrecords", "synthetic": True})
    write_run(old, "vgg16_wce", TARGETS["vgg16_wce"], config={"data_dir": "data/phantom_tfrecords"})
    write_run(real, "vgg16_wce", TARGETS["vgg16_wce"],
              config={"data_dir": "data/nih_tfrecords", "synthetic": False})
    for run in (marked, old):
        out = tmp_path / f"out_{run.name}"
        assert report.main([*argv, "--out", str(out), "--runs", f"vgg16_wce={run}"]) == 0
        assert "not real-data results" in (out / "table1.md").read_text().splitlines()[0]
        assert (out / "DATA_SOURCE.md").is_file()
    assert "--synthetic, but run" in _error(capsys, [*argv, "--out", str(tmp_path / "o"), "--synthetic",
                                                    "--runs", f"vgg16_wce={real}"])
    assert "(synthetic data) and" in _error(capsys, [*argv, "--out", str(tmp_path / "o"), "--runs",
                                                    f"vgg16_wce={marked}", f"resnet50_wce={real}"])


def test_runs_trained_on_different_builds_are_refused(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    write_run(a, "densenet121_wce", TARGETS["densenet121_wce"],
              config={"manifest_sha256": "1" * 64, "data_summary": _summary(0)})
    write_run(b, "densenet121_ewl", TARGETS["densenet121_ewl"],
              config={"manifest_sha256": "2" * 64, "data_summary": _summary(1)})
    err = _error(capsys, ["table1", "--out", str(tmp_path / "o"), "--runs", f"densenet121_wce={a}",
                          f"densenet121_ewl={b}"])
    assert f"runs {a} and {b} were trained on different data (split seed 0 vs 1; test shard files differ)" in err
    # The same build described by two manifest files (rewritten by a newer build): accepted.
    write_run(b, "densenet121_ewl", TARGETS["densenet121_ewl"],
              config={"manifest_sha256": "2" * 64, "data_summary": _summary(0)})
    assert report.main(["table1", "--out", str(tmp_path / "o"), "--n-resamples", "5", "--runs",
                        f"densenet121_wce={a}", f"densenet121_ewl={b}"]) == 0


def test_departures_from_the_paper_settings_are_said_and_recorded(tmp_path, capsys):
    """A demo-preset run, or one killed after 2 of its 6 epochs, gives numbers Table I's do not
    assume: the report says so on one line per set of departures and records them."""
    run = tmp_path / "demo"
    write_run(run, "vgg16_wce", TARGETS["vgg16_wce"],
              config={"model": "vgg16", "seed": 0, "image_size": 48, "epochs": 6, "weights": "none",
                      "learning_rate": 0.001, "synthetic": True})
    (run / "history.csv").write_text("epoch,loss\n1,0.5\n2,0.4\n")
    out = tmp_path / "o"
    assert report.main(["table1", "--out", str(out), "--n-resamples", "5", "--runs", f"vgg16_wce={run}"]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note: ")]
    expected = ["image_size 48 (paper 224)", "epochs 6 (paper 50)", "weights none (paper imagenet)",
                "unfinished: 2 of 6 epochs trained"]
    assert notes == [f"note: {run} departs from the paper's settings (§IV.B): {'; '.join(expected)}"]
    recorded = json.loads((out / "report_config.json").read_text())["table1"]["departures"]
    assert recorded == {str(run): expected}


def test_runs_of_older_code_are_reported_with_one_warning(tmp_path, capsys):
    run = tmp_path / "old"
    write_run(run, "vgg16_wce", TARGETS["vgg16_wce"], config={"model": "vgg16"})
    (run / "config.json").write_text(json.dumps({"model": "vgg16", "seed": 0}))  # no manifest
    assert report.main(["table1", "--out", str(tmp_path / "o"), "--n-resamples", "5", "--runs",
                        f"vgg16_wce={run}"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"warning: run(s) {run} record no training data")


def test_cli_end_to_end_subprocess_without_tensorflow(runs, tmp_path):
    out = tmp_path / "cli"
    # -X importtime logs every module the process imports to stderr: a whole report run (tables
    # and figure) must not import TensorFlow.
    cmd = [sys.executable, "-X", "importtime", "-m", "reproduce.report",
           *_args(runs, out, what="all", extra=["--synthetic"])]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "import time:" in line]
    assert "matplotlib" in imported and "sklearn" in imported  # the log is real
    assert not [m for m in imported if m.split(".")[0] in ("tensorflow", "keras")]
    assert "not real-data results" in proc.stdout and "| Hernia |" in proc.stdout
    for name in ("table1.csv", "table1_comparison.csv", "table1.md", "figure1.png", "figure1.pdf",
                 "report_config.json", "configs/densenet121_ewl.json"):
        assert (out / name).is_file(), name


def test_cli_bad_input_subprocess_one_line(tmp_path):
    cmd = [sys.executable, "-m", "reproduce.report", "table1", "--out", str(tmp_path),
           "--runs", f"vgg16_wce={tmp_path / 'nope'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


# --- regressions: layouts, figure panels and styles, no-positive classes -----------------------------
FOUR = {**TARGETS, "resnet50_wce": lambda j: 230 - j}


def test_table1_four_keys_in_shuffled_order_keep_the_paper_layout(tmp_path):
    for key, target in FOUR.items():
        write_run(tmp_path / key, key, target)
    shuffled = ["densenet121_ewl", "vgg16_wce", "densenet121_wce", "resnet50_wce"]
    assert report.main(_args(tmp_path, tmp_path / "out", keys=shuffled)) == 0
    lines = (tmp_path / "out" / "table1.csv").read_text().splitlines()
    assert lines[0] == "pathology,vgg16_wce,resnet50_wce,densenet121_wce,densenet121_ewl"
    assert [line.split(",")[0] for line in lines[1:]] == read_paper_table().index.tolist()
    assert len(lines) == 16 and lines[-1].startswith("AVE,")
    cells = [c for line in lines[1:] for c in line.split(",")[1:]]
    assert len(cells) == 60 and all(re.fullmatch(r"0\.\d{4}", c) for c in cells), cells
    assert lines[8] == f"Hernia,{207 / 300:.4f},{223 / 300:.4f},{224 / 300:.4f},{247 / 300:.4f}"


def test_figure1_panels_titles_curves_and_styles():
    from reproduce.report import figure1 as figures

    y = _labels()
    curves = {key: metrics.roc_curve_per_class(
        y, np.stack([_scores(y[:, j], target(j)) for j in range(14)], axis=1), CLASSES)
        for key, target in FOUR.items()}
    fig = figures.figure1(curves, "t")
    axes = fig.axes
    assert len(axes) == 4
    assert [ax.get_title()[:3] for ax in axes] == ["(a)", "(b)", "(c)", "(d)"]
    assert [ax.get_title() for ax in axes] == [title for _, title in figures.PANELS]
    fig.canvas.draw()
    styles = []
    for ax in axes:
        lines = [line for line in ax.get_lines() if not line.get_label().startswith("chance")]
        assert len(lines) == 14  # one curve per class
        chance = [line for line in ax.get_lines() if line.get_label().startswith("chance")]
        assert len(chance) == 1 and chance[0].get_zorder() > max(line.get_zorder() for line in lines)
        styles.append([(line.get_color(), line.get_label().rsplit(" ", 1)[0]) for line in lines])
        legend = ax.get_legend()
        assert legend.get_window_extent().x0 >= ax.get_window_extent().x1  # outside: hides no curve
    assert all(s == styles[0] for s in styles)  # a class looks the same in every panel
    assert [name for _, name in styles[0]] == [c.replace("_", " ") for c in CLASSES]
    assert [c for c, _ in styles[0]] == [figures.class_style(j)["color"] for j in range(14)]
    assert len({c for c, _ in styles[0]}) == 14  # colour unique per class
    assert len({str(figures.class_style(j)["linestyle"]) for j in range(14)}) == 14  # line style too
    figures.plt.close(fig)


def test_class_without_positives_is_na_not_nan(tmp_path):
    y = _labels()
    for key, target in TARGETS.items():
        df = write_run(tmp_path / key, key, target)
        df["label_Hernia"] = 0  # no positives in this test set
        df.to_csv(tmp_path / key / "predictions_test.csv", index=False)
    with pytest.warns(metrics.DegenerateClassWarning, match="Hernia"):  # says which class
        assert report.main(_args(tmp_path, tmp_path / "out", what="all")) == 0
    md = (tmp_path / "out" / "table1.md").read_text()
    hernia = next(line for line in md.splitlines() if line.startswith("| Hernia |"))
    assert hernia.count("n/a (no positives)") == 3 and "nan" not in hernia.lower()
    for name in ("table1.csv", "table1_comparison.csv", "table1_seeds.csv"):
        text = (tmp_path / "out" / name).read_text()
        assert "nan" not in text.lower(), name
    table = (tmp_path / "out" / "table1.csv").read_text().splitlines()
    assert next(line for line in table if line.startswith("Hernia,")) == "Hernia,,,"
    ave = pd.read_csv(tmp_path / "out" / "table1.csv", index_col="pathology").loc["AVE", "vgg16_wce"]
    assert ave == pytest.approx(round(np.mean([200 + j for j in range(14) if j != 7]) / 300, 4))
    assert y[:, 7].sum() == 10  # the constructed labels did have positives before
