"""reproduce.report over several training seeds: constructed predictions whose every
per-seed AUC is known exactly (k concordant pairs of 300), so mean, sd, the paired difference and
its t-interval are checked against hand-computed numbers; the layout of table1_seeds.csv and
table1_ewl_vs_wce.csv; the refusals; Figure 1's seed note; and byte-identical regeneration."""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_prep.schema import CLASSES
from reproduce import metrics
from reproduce.report import cli as report
from reproduce.report import seeds

N_POS, N_NEG = 10, 30  # 40 images, 2 per patient; every class 10 positives
T_975_2DF = 4.302652729749464  # Student t, 0.975 quantile, 2 degrees of freedom (tables: 4.303)
# AUC of (key, seed, class j) = k / 300 with k = BASE[key] + j + SHIFT[key][seed].
BASE = {"vgg16_wce": 200, "densenet121_wce": 210, "densenet121_ewl": 240}
SHIFT = {"vgg16_wce": {0: 0}, "densenet121_wce": {0: 0, 1: 6, 2: 12},
         "densenet121_ewl": {0: 0, 1: 3, 2: 9}}
# By hand: wce shifts 0, 6, 12 → mean 6, sd 6 (n − 1); ewl shifts 0, 3, 9 → mean 4, sd √21;
# ewl − wce per seed: 30, 27, 27 (+ 0 for the class) → mean 28, sd √3; all over 300.


def _labels() -> np.ndarray:
    i = np.arange(N_POS + N_NEG)[:, None]
    return ((i + np.arange(14)[None, :]) % 4 == 0).astype(int)


def _scores(y: np.ndarray, k: int) -> np.ndarray:
    """Positive p beats exactly c_p of the 30 negatives, Σ c_p = k → AUC k/300, no ties."""
    c = np.full(N_POS, k // N_POS) + (np.arange(N_POS) < k % N_POS)
    s = np.empty(y.size)
    s[y == 0] = (np.arange(N_NEG) + 1) / 100
    s[y == 1] = (c + 0.5) / 100
    return s


def write_run(run: Path, k_of_class, seed, image_offset=0, config=None, labels=None) -> Path:
    y = _labels() if labels is None else labels
    df = pd.DataFrame({"image_index": [f"{i + image_offset:08d}_000.png" for i in range(len(y))],
                       "patient_id": np.arange(len(y)) // 2})
    for j, c in enumerate(CLASSES):
        df[f"label_{c}"] = y[:, j]
    for j, c in enumerate(CLASSES):
        df[f"score_{c}"] = _scores(y[:, j], k_of_class(j)) if y[:, j].any() else np.linspace(0, 1, len(y))
    run.mkdir(parents=True, exist_ok=True)
    df.sample(frac=1, random_state=seed or 0).to_csv(run / "predictions_test.csv", index=False)
    config = config or {"model": run.name.split("_")[0], "seed": seed, "epochs": 8}
    (run / "config.json").write_text(json.dumps({"manifest_sha256": "0" * 64, **config}))
    return run


def k_of(key, seed):
    return lambda j: BASE[key] + j + SHIFT[key][seed]


@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory) -> list[str]:
    """--runs arguments: vgg16_wce once, densenet121_wce and densenet121_ewl three seeds each,
    given in a shuffled order."""
    base = tmp_path_factory.mktemp("seed_runs")
    items = []
    for key, shifts in SHIFT.items():
        for seed in shifts:
            items.append(f"{key}={write_run(base / f'{key}_s{seed}', k_of(key, seed), seed)}")
    return [items[i] for i in (4, 0, 6, 2, 1, 5, 3)]


def _report(out: Path, runs: list[str], what="table1", extra=()) -> int:
    return report.main([what, "--out", str(out), "--n-resamples", "30", "--synthetic", *extra,
                        *[a for item in runs for a in ("--runs", item)]])


@pytest.fixture(scope="module")
def seeds_out(seed_runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seeds_out")
    assert _report(out, seed_runs) == 0
    return out


# --- statistics ----------------------------------------------------------------------------------
def test_seed_summary_and_t_quantile_hand_computed():
    s = seeds.seed_summary([0.70, 0.72, 0.74])
    assert s["mean"] == pytest.approx(0.72) and s["sd"] == pytest.approx(0.02) and s["n"] == 3
    assert (s["min"], s["max"]) == (0.70, 0.74)
    assert math.isnan(seeds.seed_summary([0.7])["sd"]) and seeds.seed_summary([0.7])["mean"] == 0.7
    assert math.isnan(seeds.seed_summary([0.7, float("nan")])["mean"])  # class without positives
    assert seeds.t_quantile(3) == pytest.approx(T_975_2DF, abs=1e-9)
    assert seeds.t_quantile(2) == pytest.approx(12.706204736, abs=1e-6)  # 1 df
    assert math.isnan(seeds.t_quantile(1))


def test_paired_difference_hand_computed():
    # a − b = 0.10, 0.12, 0.08 → mean 0.10, sd 0.02, half-width 4.3027 · 0.02 / √3 = 0.049683.
    d = seeds.paired_difference([0.80, 0.83, 0.78], [0.70, 0.71, 0.70])
    assert d["n_pairs"] == 3
    assert d["mean_difference"] == pytest.approx(0.10) and d["sd_difference"] == pytest.approx(0.02)
    assert d["t_low"] == pytest.approx(0.10 - 0.0496827, abs=1e-6)
    assert d["t_high"] == pytest.approx(0.10 + 0.0496827, abs=1e-6)
    one = seeds.paired_difference([0.8], [0.7])
    assert one["mean_difference"] == pytest.approx(0.1) and math.isnan(one["t_low"])


def test_delong_agreement_counts_sign_and_significance():
    tests = [{"p_value": 0.01, "difference": 0.05}, {"p_value": 0.20, "difference": 0.04},
             {"p_value": 0.03, "difference": -0.02}, {"p_value": float("nan"), "difference": 0.1}]
    assert seeds.delong_agreement(tests, 0.03) == {
        "delong_n_tests": 4, "delong_n_significant_same_sign": 1, "delong_n_significant_opposite": 1}
    assert seeds.delong_agreement(tests, -0.01)["delong_n_significant_same_sign"] == 1


# --- the CSV files ---------------------------------------------------------------------------------
def test_table1_cells_are_means_over_seeds(seeds_out):
    t = pd.read_csv(seeds_out / "table1.csv", index_col="pathology")
    assert t.columns.tolist() == ["vgg16_wce", "densenet121_wce", "densenet121_ewl"]  # paper order
    for j, name in enumerate(CLASSES):
        assert t.loc[name, "densenet121_wce"] == pytest.approx(round((216 + j) / 300, 4), abs=1e-12)
        assert t.loc[name, "densenet121_ewl"] == pytest.approx(round((244 + j) / 300, 4), abs=1e-12)
        assert t.loc[name, "vgg16_wce"] == pytest.approx(round((200 + j) / 300, 4), abs=1e-12)
    assert t.loc["AVE", "densenet121_wce"] == pytest.approx(round((216 + 6.5) / 300, 4))


def test_comparison_has_sd_and_n_seeds(seeds_out):
    comp = pd.read_csv(seeds_out / "table1_comparison.csv").set_index(["pathology", "run"])
    wce, ewl = comp.loc[("Hernia", "densenet121_wce")], comp.loc[("Hernia", "densenet121_ewl")]
    assert wce.n_seeds == 3 and wce.sd_over_seeds == pytest.approx(6 / 300, abs=1e-4)
    assert ewl.sd_over_seeds == pytest.approx(math.sqrt(21) / 300, abs=1e-4)
    assert comp.loc[("AVE", "densenet121_wce")].sd_over_seeds == pytest.approx(6 / 300, abs=1e-4)
    vgg = comp.loc[("Hernia", "vgg16_wce")]
    assert vgg.n_seeds == 1 and math.isnan(vgg.sd_over_seeds)
    assert wce.ci_low <= wce.ours <= wce.ci_high
    assert comp["delong_p_ewl_vs_wce"].isna().all()  # several seeds: per seed in table1_seeds.csv


def test_seeds_csv_layout_and_values(seeds_out):
    s = pd.read_csv(seeds_out / "table1_seeds.csv")
    assert s.columns.tolist() == ["data", "pathology", "run", "seed", "auc", "ci_low", "ci_high",
                                  "delong_p_ewl_vs_wce"]
    assert len(s) == 15 * 7  # (14 classes + AVE) × 7 runs
    assert s["pathology"].iloc[:7].eq("Atelectasis").all() and s["pathology"].iloc[-1] == "AVE"
    assert s["run"].iloc[:7].tolist() == ["vgg16_wce"] + ["densenet121_wce"] * 3 + ["densenet121_ewl"] * 3
    assert s["seed"].iloc[:7].tolist() == [0, 0, 1, 2, 0, 1, 2]
    row = s[(s.pathology == "Hernia") & (s.run == "densenet121_wce") & (s.seed == 1)].iloc[0]
    assert row.auc == pytest.approx(round((210 + 7 + 6) / 300, 4))
    y = _labels()[:, 7]
    p = metrics.delong_test(y, _scores(y, 240 + 7 + 3), _scores(y, 210 + 7 + 6))["p_value"]
    assert row.delong_p_ewl_vs_wce == pytest.approx(p, abs=1e-4)
    assert s[s.run == "vgg16_wce"].delong_p_ewl_vs_wce.isna().all()


def test_paired_difference_file_hand_computed(seeds_out):
    d = pd.read_csv(seeds_out / "table1_ewl_vs_wce.csv")
    assert d.columns.tolist() == ["data", "pathology", "seeds", "n_pairs", "mean_difference",
                                  "sd_difference", "t_low", "t_high", "delong_n_tests",
                                  "delong_n_significant_same_sign", "delong_n_significant_opposite"]
    assert d["pathology"].tolist() == [*CLASSES, "AVE"]
    for _, row in d.iterrows():  # every class (and AVE): differences 30, 27, 27 of 300
        assert row.seeds == "0 1 2" and row.n_pairs == 3
        assert row.mean_difference == pytest.approx(28 / 300, abs=1e-4)
        assert row.sd_difference == pytest.approx(math.sqrt(3) / 300, abs=1e-4)
        assert row.t_low == pytest.approx(28 / 300 - T_975_2DF / 300, abs=1e-4)
        assert row.t_high == pytest.approx(28 / 300 + T_975_2DF / 300, abs=1e-4)
    y = _labels()[:, 0]
    expected = sum(metrics.delong_test(y, _scores(y, 240 + SHIFT["densenet121_ewl"][s]),
                                       _scores(y, 210 + SHIFT["densenet121_wce"][s]))["p_value"] < 0.05
                   for s in (0, 1, 2))
    assert d.loc[0, "delong_n_significant_same_sign"] == expected
    assert d.loc[0, "delong_n_significant_opposite"] == 0
    ave = (seeds_out / "table1_ewl_vs_wce.csv").read_text().splitlines()[-1]
    assert ave.startswith("synthetic,AVE,0 1 2,3,") and ave.endswith(",,,")  # no DeLong for AVE: empty
    assert "nan" not in (seeds_out / "table1_ewl_vs_wce.csv").read_text().lower()


def test_markdown_mean_sd_spread_and_pair(seeds_out, seed_runs):
    md = (seeds_out / "table1.md").read_text()
    assert "densenet121_wce (seeds 0, 1, 2)" in md and "vgg16_wce (seeds 0)" in md
    assert f"| Hernia | {207 / 300:.4f} (0.7200) | {223 / 300:.4f} ± 0.0200 (0.9042) |" in md
    assert f"| densenet121_wce | 0, 1, 2 | {216.5 / 300:.4f}, {222.5 / 300:.4f}, {228.5 / 300:.4f} |" in md
    assert f"range (max − min)" in md and f"| {12 / 300:.4f} |" in md
    assert f"| AVE | +{28 / 300:.4f} [+{(28 - T_975_2DF) / 300:.4f}, +{(28 + T_975_2DF) / 300:.4f}] |  |" in md
    rc = json.loads((seeds_out / "report_config.json").read_text())["table1"]
    assert rc["seeds"] == {"vgg16_wce": [0], "densenet121_wce": [0, 1, 2], "densenet121_ewl": [0, 1, 2]}
    assert sorted(rc["runs"]) == sorted(["vgg16_wce", *[f"densenet121_{l}_s{s}" for l in ("wce", "ewl")
                                                         for s in (0, 1, 2)]])
    assert (seeds_out / "configs" / "densenet121_ewl_s2.json").is_file()


# --- refusals ------------------------------------------------------------------------------------
def _error(capsys, out, runs) -> str:
    assert _report(out, runs) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_repeated_key_on_other_images_is_refused_naming_the_run(seed_runs, tmp_path, capsys):
    other = write_run(tmp_path / "densenet121_other", k_of("densenet121_wce", 0), 3, image_offset=7)
    err = _error(capsys, tmp_path / "o", seed_runs + [f"densenet121_wce={other}"])
    assert "different image sets" in err and "densenet121_wce_s3" in err and str(other) in err
    assert not (tmp_path / "o").exists()  # nothing written


def test_same_seed_twice_and_runs_differing_in_more_than_the_seed(seed_runs, tmp_path, capsys):
    twin = write_run(tmp_path / "twin", k_of("densenet121_wce", 1), 1)
    err = _error(capsys, tmp_path / "o", seed_runs + [f"densenet121_wce={twin}"])
    assert "both have seed 1" in err and str(twin) in err
    longer = write_run(tmp_path / "longer", k_of("densenet121_wce", 0), 5,
                       config={"model": "densenet121", "seed": 5, "epochs": 50})
    err = _error(capsys, tmp_path / "o", seed_runs + [f"densenet121_wce={longer}"])
    assert "differ in more than the seed" in err and "epochs 8 vs 50" in err
    no_seed = write_run(tmp_path / "no_seed", k_of("densenet121_wce", 0), None, config={"model": "x"})
    assert "no 'seed'" in _error(capsys, tmp_path / "o", seed_runs + [f"densenet121_wce={no_seed}"])
    assert "given twice" in _error(capsys, tmp_path / "o", seed_runs + [seed_runs[0]])


# --- Figure 1 and byte-identical outputs ---------------------------------------------------------
def _frame(k_of_class) -> pd.DataFrame:
    y = _labels()
    df = pd.DataFrame({"image_index": [f"{i:08d}_000.png" for i in range(len(y))],
                       "patient_id": np.arange(len(y)) // 2})
    for j, c in enumerate(CLASSES):
        df[f"label_{c}"] = y[:, j]
    for j, c in enumerate(CLASSES):
        df[f"score_{c}"] = _scores(y[:, j], k_of_class(j))
    return df


def test_figure1_draws_the_first_seed_and_states_the_sd():
    from reproduce.report import figure1

    by_seed = {s: _frame(k_of("densenet121_wce", s)) for s in (0, 1, 2)}
    assert figure1.seed_note({0: by_seed[0]}) == ("", "")  # one seed: nothing to say
    which, spread = figure1.seed_note(by_seed)
    assert which == ", seed 0"
    assert spread == f"\nmean over seeds 0, 1, 2: {222.5 / 300:.3f} ± {6 / 300:.3f} sd"
    curves = {"densenet121_wce": metrics.roc_curve_per_class(*_arrays(by_seed[0]), CLASSES)}
    fig = figure1.figure1(curves, "t", {"densenet121_wce": (which, spread)})
    title = fig.axes[2].get_legend().get_title().get_text()
    assert title == f"AUC, seed 0 (mean {216.5 / 300:.3f}){spread}"  # the drawn seed's own mean
    figure1.plt.close(fig)


def _arrays(df):
    from reproduce.report.predictions import arrays

    return arrays(df)


def test_report_twice_gives_the_same_bytes(seed_runs, tmp_path):
    out = tmp_path / "twice"
    assert _report(out, seed_runs, what="all") == 0
    first = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert {"table1.csv", "table1_seeds.csv", "table1_comparison.csv", "table1_ewl_vs_wce.csv",
            "table1.md", "figure1.png", "figure1.pdf", "report_config.json",
            "DATA_SOURCE.md"} <= {str(p) for p in first}
    assert b"/CreationDate" not in first[Path("figure1.pdf")]  # a date would differ each run
    assert _png_chunks(first[Path("figure1.png")]) == ["IHDR", "tEXt", "pHYs", "IDAT", "IEND"]  # no tIME
    assert _report(out, seed_runs, what="all") == 0
    second = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert second.keys() == first.keys()
    assert [str(p) for p in first if first[p] != second[p]] == []


def _png_chunks(data: bytes) -> list[str]:
    """The chunk types of a PNG, in order, each named once (several IDAT are one entry)."""
    import struct

    names, i = [], 8
    while i < len(data):
        length, kind = struct.unpack(">I4s", data[i:i + 8])
        if not names or names[-1] != kind.decode():
            names.append(kind.decode())
        i += 12 + length
    return names
