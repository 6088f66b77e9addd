"""The benchmarks (bench/): the Table I projection by hand, the "before" pipeline being the old
normalisation, the GPU benchmark's CPU dry run and how it degrades (skips, failures, a spent
budget), `bench.train` end to end at tiny scale, the README's generated benchmark sections, and
`make rehearse` running the paper preset with only its three stated changes.
Runtime: ~5 s, plus ~1 min for the dry run and ~40 s for bench.train (slow)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import gpu, projection, readme

ROOT = Path(__file__).resolve().parents[2]


# --- the Table I projection ---------------------------------------------------------------------
def test_run_hours_by_hand():
    # 50 × (78,430 / 1,000 + 11,835 / 2,000) s = 50 × 84.3475 s = 4,217.375 s = 1.17149 h
    assert projection.run_hours(1000, 2000) == pytest.approx(4217.375 / 3600, rel=1e-12)
    assert projection.run_hours(10, 10, epochs=1, train_images=30, val_images=6) == pytest.approx(3.6 / 3600)
    with pytest.raises(ValueError):
        projection.run_hours(0, 1)


def test_schedule_hours_starts_runs_in_order_on_the_first_free_gpu():
    # GPU0: 3; GPU1: 1, then 2 (free at 1) → 3; the last 2 goes to GPU0 (free at 3, first) → 5.
    assert projection.schedule_hours([3, 1, 2, 2], 2) == 5
    assert projection.schedule_hours([3, 1, 2, 2], 1) == 8
    assert projection.schedule_hours([3, 1, 2, 2], 4) == 3
    assert projection.schedule_hours([], 4) == 0


def test_table1_hours_prices_ewl_at_densenet_speed_and_says_what_is_missing():
    rates = {"vgg16": (1000, 2000), "resnet50": (2000, 4000), "densenet121": (500, 1000)}
    p = projection.table1_hours(rates)
    one = projection.run_hours(1000, 2000)  # vgg16 = 1.1715 h; resnet50 half; densenet121 twice
    assert p["per_run_hours"] == pytest.approx({"vgg16_wce": one, "resnet50_wce": one / 2,
                                                "densenet121_wce": 2 * one, "densenet121_ewl": 2 * one})
    assert p["sequential_hours"] == pytest.approx(5.5 * one) and p["one_per_gpu_hours"] == pytest.approx(2 * one)
    partial = projection.table1_hours({"densenet121": (500, 1000)})
    assert partial["missing"] == ["vgg16_wce", "resnet50_wce"] and partial["sequential_hours"] is None


# --- the pipeline before/after --------------------------------------------------------------------
@pytest.mark.parametrize("family", ["vgg16", "resnet50", "densenet121", "tiny"])
def test_before_pipeline_normalises_like_the_model_input_layer(family):
    from bench.pipeline import cpu_normalise
    from reproduce.models import BackboneInput

    images = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3, 1) * 13
    old = np.stack([cpu_normalise(image, family).numpy() for image in images])
    new = np.asarray(BackboneInput(family)(images))
    assert old.shape == new.shape == (2, 3, 3, 3) and old.dtype == np.float32
    np.testing.assert_allclose(old, new, rtol=0, atol=1e-5)


def test_normalisation_ratio_measures_both_pipelines(shards_dir):
    from bench.pipeline import normalisation_ratio
    from reproduce.config import paper

    config = paper().override(weights="none", image_size=32, batch_size=8, steps_per_epoch=4, shuffle_buffer=16)
    r = normalisation_ratio(shards_dir, config, batches=3, repeats=2, warmup=1)
    assert r["after"]["batch_shape"] == [8, 32, 32, 1] and r["after"]["dtype"] == "uint8"
    assert r["before"]["batch_shape"] == [8, 32, 32, 3] and r["before"]["dtype"] == "float32"
    assert (r["after"]["bytes_per_image"], r["before"]["bytes_per_image"], r["bytes_ratio"]) == (1024, 12288, 12)
    assert len(r["before"]["runs_cpu_ms_per_image"]) == 2 and r["before"]["cpu_ms_per_image"] > 0
    assert r["cpu_ratio"] == pytest.approx(r["before"]["cpu_ms_per_image"] / r["after"]["cpu_ms_per_image"])


def test_fit_timing_refuses_steps_that_are_not_whole_executions():
    from bench.timing import fit_seconds

    class Model:
        steps_per_execution = 8

    with pytest.raises(ValueError, match="--steps-per-execution 8 does not divide the 12 steps"):
        fit_seconds(Model(), None, steps=12)


@pytest.mark.slow
def test_bench_train_end_to_end_at_tiny_scale(shards_dir, phantom_dir, tmp_path):
    out = tmp_path / "train.json"
    cmd = [sys.executable, "-m", "bench.train", "--data", str(shards_dir), "--images-dir", str(phantom_dir),
           "--out", str(out), "--model", "tiny", "--image-size", "32", "--batch-size", "8", "--steps", "4",
           "--repeats", "1", "--input-batches", "3", "--png-batches", "1", "--norm-batches", "2",
           "--steps-per-execution", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(out.read_text())
    assert r["training"]["ratio"] == pytest.approx(r["training"]["pipeline_img_s"] / r["training"]["in_memory_img_s"])
    assert r["input_normalisation"]["image_size"] == 32 and r["input_normalisation"]["bytes_ratio"] == 12
    sw = r["switches"]
    assert {k: (sw[k]["jit_compile"], sw[k]["steps_per_execution"]) for k in ("baseline", "steps_per_execution", "xla")} \
        == {"baseline": ("off", 1), "steps_per_execution": ("off", 2), "xla": ("on", 1)}
    assert sw["ratios"]["xla_vs_baseline"] == pytest.approx(sw["xla"]["img_s"] / sw["baseline"]["img_s"])
    assert "less CPU (goal >= 4x)" in proc.stdout and f"wrote {out}" in proc.stdout


# --- the GPU benchmark ------------------------------------------------------------------------------
@pytest.mark.slow
def test_gpu_benchmark_dry_run_measures_every_path(shards_dir, tmp_path):
    """`bash bench/gpu.sh --tiny` on a CPU: every task, two logical CPUs standing in for GPUs."""
    env = {**os.environ, "WORK": str(tmp_path), "SHARDS": str(shards_dir), "PY": sys.executable}
    proc = subprocess.run(["bash", "bench/gpu.sh", "--tiny"], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads((tmp_path / "gpu_cpu_dry_check.json").read_text())
    assert r["dry_check"] and r["task_errors"] == [] and r["input_pipeline"]["img_s"] > 0
    tiny = r["backbones"]["tiny"]
    assert [tiny[m]["jit_compile"] for m in ("fp32", "mixed", "mixed_xla")] == ["off", "off", "on"]
    assert [tiny[m]["mixed_precision"] for m in ("fp32", "mixed", "mixed_xla")] == [False, True, True]
    assert tiny["best_mode"] == max(("fp32", "mixed", "mixed_xla"), key=lambda m: tiny[m]["img_s"])
    assert tiny["validation"]["of_mode"] == tiny["best_mode"] and tiny["validation"]["val_batch_size"] == 32
    # mirrored on 2 replicas: global batch 8 (the preset's), then 2 × 16 per replica (the dry run's cap)
    assert [(m["replicas"], m["batch_size"]) for m in tiny["mirrored"]] == [(2, 8), (2, 32)]
    rates = {"tiny": (tiny[tiny["best_mode"]]["img_s"], tiny["validation"]["img_s"])}
    expected = projection.table1_hours(rates, {k: "tiny" for k in projection.TABLE1_RUNS})
    assert r["table1_projection"]["sequential_hours"] == pytest.approx(expected["sequential_hours"])
    assert all(g["met"] is None for g in r["goals"].values())  # a dry run meets nothing
    assert "dry check (--tiny)" in proc.stdout and "one run per GPU (GPUS=0,1,2,3)" in proc.stdout


def test_gpu_benchmark_with_no_time_left_skips_every_task_and_still_writes(shards_dir, tmp_path):
    out = tmp_path / "gpu.json"
    assert gpu.main(["--data", str(shards_dir), "--out", str(out), "--budget-s", "0", "--tiny"]) == 0
    r = json.loads(out.read_text())
    assert [(e["task"], e["skipped"].split(":")[0]) for e in r["task_errors"]] == [
        ("input", "time budget"), ("single", "time budget"),
        ("mirrored", "no single-GPU result to choose the precision from")]
    assert r["table1_projection"]["sequential_hours"] is None and r["input_pipeline"] == {}


def test_gpu_benchmark_refuses_a_folder_without_shards(tmp_path, capsys):
    assert gpu.main(["--data", str(tmp_path), "--out", str(tmp_path / "g.json")]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path / 'manifest.json'}: not found (build the shards first)\n"
    assert not (tmp_path / "g.json").exists()


def _rows():
    """What workers write when ResNet50's XLA fails, VGG16 runs out of time and a mirrored search
    stops on out-of-memory (two GPUs)."""
    machine = {"gpus": ["/physical_device:GPU:0", "/physical_device:GPU:1"], "cpu_count": 16}
    rows = [{"task": "input", "backbone": "densenet121", "mode": "input", "img_s": 9000.0, "cpu_ms_per_image": 1.5},
            {"task": "single", "backbone": "densenet121", "machine": machine}]
    for b, rates in (("densenet121", (500, 900, 1600)), ("resnet50", (800, 1400, None))):
        for mode, rate in zip(("fp32", "mixed", "mixed_xla"), rates):
            rows.append({"task": "single", "backbone": b, "mode": mode, "img_s": rate} if rate else
                        {"task": "single", "backbone": b, "mode": mode, "error": "InternalError: XLA"})
        best = "mixed_xla" if b == "densenet121" else "mixed"
        rows += [{"task": "single", "backbone": b, "best_mode": best},
                 {"task": "single", "backbone": b, "mode": "validation", "of_mode": best, "img_s": 4000.0}]
    rows += [{"task": "single", "backbone": "vgg16", "mode": "fp32", "skipped": "time budget: 5 s left"},
             {"task": "mirrored", "backbone": "densenet121", "mode": "mirrored", "replicas": 2, "batch_size": 32,
              "img_s": 1700.0},
             {"task": "mirrored", "backbone": "densenet121", "mode": "mirrored", "replicas": 2, "batch_size": 128,
              "error": "ResourceExhaustedError: OOM", "out_of_memory": True}]
    return rows


def test_gpu_summary_keeps_what_was_measured_and_names_what_was_not():
    r = gpu.summarise(_rows(), tiny=False)
    assert r["backbones"]["resnet50"]["best_mode"] == "mixed" and "error" in r["backbones"]["resnet50"]["mixed_xla"]
    p = r["table1_projection"]
    assert p["missing"] == ["vgg16_wce"] and p["sequential_hours"] is None
    assert p["per_run_hours"]["densenet121_ewl"] == pytest.approx(projection.run_hours(1600, 4000))
    assert r["goals"]["densenet121_mixed_xla_img_s"] == {"goal": 1500.0, "measured": 1600, "met": True}
    assert r["goals"]["table1_one_per_gpu_hours"]["met"] is None  # not projected: VGG16 missing
    lines = gpu.report({"dry_check": False, **r})
    assert "resnet50: fp32 800 img/s, mixed 1,400 img/s, mixed+XLA failed; validation 4,000 img/s (best: mixed)" in lines
    assert "vgg16: fp32 skipped, mixed not measured, mixed+XLA not measured; validation not measured (best: None)" in lines
    assert "  mirrored x2, global batch 128: failed (out of memory)" in lines
    assert "Table I projection: incomplete (not measured: vgg16_wce)" in lines


def test_gpu_worker_goes_on_after_a_failing_mode(shards_dir, tmp_path, monkeypatch):
    """single(): XLA fails → the other modes and the validation of the best one still run."""
    from bench import gpu_worker

    def fake_train_rate(config, manifest, data, steps, epochs, replicas=1):
        if config.jit_compile == "on":
            raise RuntimeError("XLA compilation failed")
        return f"model-{config.mixed_precision}", {"img_s": 200.0 if config.mixed_precision else 100.0}

    seen = []
    monkeypatch.setattr(gpu_worker, "train_rate", fake_train_rate)
    monkeypatch.setattr(gpu_worker.distribute, "configure_devices", lambda config: None)
    monkeypatch.setattr(gpu_worker, "validation_rate",
                        lambda model, config, data, jit, min_images: seen.append((model, jit)) or {"img_s": 1.0})
    args = gpu_worker.build_parser().parse_args(["single", "--data", str(shards_dir), "--rows", "x",
                                                 "--deadline", "0", "--tiny", "--steps", "2"])
    rows = gpu_worker.Rows(tmp_path / "rows.jsonl", deadline=float("inf"), base={"task": "single"})
    gpu_worker.single(args, rows)
    got = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [r.get("mode", r.get("best_mode")) for r in got[1:]] == ["fp32", "mixed", "mixed_xla", "mixed", "validation"]
    assert got[3]["error"] == "RuntimeError: XLA compilation failed" and got[3]["out_of_memory"] is False
    assert seen == [("model-True", False)]


# --- the docs' benchmark numbers come from results/bench/*.json -------------------------------------
def test_readme_benchmark_sections_are_what_the_results_give():
    """Each generated section sits in the file bench.readme.FILES names, and is what the JSON give."""
    assert readme.FILES == {"bench-table": Path("docs/benchmarks.md"), "gpu-flags": Path("docs/gpus.md"),
                            "gpu-jax": Path("docs/gpus.md"), "backends": Path("docs/gpus.md"),
                            "times": Path("README.md"), "demo-profile": Path("docs/demo.md")}
    results = readme.load(ROOT / "results" / "bench")
    for name, render in readme.SECTIONS.items():
        text = (ROOT / readme.FILES[name]).read_text()
        assert readme.section(text, name) == render(results), \
            f"{readme.FILES[name]} section {name!r} is stale: run python -m bench.readme"
        others = [n for n in readme.SECTIONS if n != name]
        assert not any(readme.begin_marker(n) in text for n in others if readme.FILES[n] != readme.FILES[name])
    # the front page holds one generated section: the times of its commands (bench.make_times)
    assert (ROOT / "README.md").read_text().count("<!-- generated:") == 1
    raw = json.loads((ROOT / "results" / "bench" / "data_prep.json").read_text())["read"]["raw_over_png"]
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    assert f"| {raw:.2f}× | raw is the default" in text  # the number docs/paper_map.md used to misquote


def test_readme_check_fails_on_a_stale_copy_and_regenerating_fixes_it(tmp_path, capsys):
    copies = {}
    for name, path in readme.FILES.items():
        copies[name] = tmp_path / path.name
        copies[name].write_text((ROOT / path).read_text())
    bench_md, gpus_md = copies["bench-table"], copies["gpu-flags"]
    text = bench_md.read_text()
    table = readme.section(text, "bench-table")
    stale = text.replace(table, table.replace("img/s |", "img/z |", 1))
    assert stale != text
    bench_md.write_text(stale)
    args = [f"--file=bench-table={bench_md}", "--file", f"gpu-flags={gpus_md}", f"gpu-jax={gpus_md}",
            f"backends={gpus_md}", f"times={copies['times']}", f"demo-profile={copies['demo-profile']}",
            "--results", str(ROOT / "results" / "bench")]
    assert readme.main([*args, "--check"]) == 1
    assert capsys.readouterr().err == (f"error: {bench_md}: benchmark sections are stale; "
                                       "run python -m bench.readme\n")
    assert bench_md.read_text() == stale  # --check writes nothing
    assert readme.main(args) == 0 and readme.main([*args, "--check"]) == 0
    assert "benchmarks.md: benchmark sections match" in capsys.readouterr().out
    for name, path in readme.FILES.items():
        assert copies[name].read_text() == (ROOT / path).read_text()
    gpus_md.write_text("no markers here\n")
    assert readme.main(args) == 1
    assert capsys.readouterr().err.startswith(f"error: {gpus_md}: expected one '<!-- generated: gpu-flags")
    # one file may hold both sections; an unknown section name is a usage error
    both = tmp_path / "both.md"
    both.write_text("".join(f"{readme.begin_marker(n)}\n{readme.end_marker(n)}\n"
                            for n in ("gpu-flags", "bench-table", "gpu-jax", "backends", "times", "demo-profile")))
    assert readme.main(["--file", *(f"{n}={both}" for n in readme.FILES),
                        "--results", str(ROOT / "results" / "bench")]) == 0
    assert readme.section(both.read_text(), "bench-table") == readme.section(bench_md.read_text(), "bench-table")
    with pytest.raises(SystemExit) as usage:
        readme.main(["--file", f"no-such-section={both}"])
    assert usage.value.code == 2 and "expected NAME=PATH" in capsys.readouterr().err


def test_readme_help_shows_the_relative_default_files():
    parser = readme.build_parser()
    [option] = [a for a in parser._actions if "--file" in a.option_strings]
    assert option.help.endswith("(default: bench-table=docs/benchmarks.md, gpu-flags=docs/gpus.md, "
                                "gpu-jax=docs/gpus.md, backends=docs/gpus.md, times=README.md, "
                                "demo-profile=docs/demo.md)")
    assert str(ROOT) not in parser.format_help()


def test_readme_gpu_rows_from_a_gpu_result():
    """No GPU result is committed yet: the GPU rows and cells, from the summary of _rows()."""
    g = {"device": "NVIDIA H100", "dry_check": False, **gpu.summarise(_rows(), tiny=False)}
    results = {"data_prep": None, "train": None, "gpu": [g]}
    table, flags = readme.bench_table(results), readme.gpu_flags(results)
    assert ("| NVIDIA H100: training densenet121 224², batch 32, best (mixed_xla) vs fp32 | 1,600 img/s | "
            "500.0 img/s | 3.20× | |") in table
    assert readme.NOT_RUN not in table and "whole Table I" not in table  # VGG16 missing: no projection
    assert "mixed+XLA vs mixed: NVIDIA H100: densenet121 1,600 img/s vs 900.0 img/s |" in flags
    assert "NVIDIA H100: densenet121 ×2 GPUs: 1,700 img/s at global batch 32, 1,700 img/s at 32" in flags
    assert "validation: NVIDIA H100: densenet121 4,000 img/s, resnet50 4,000 img/s |" in flags
    assert "| NVIDIA H100: input pipeline alone 9,000 img/s on 16 cores |" in flags
    empty = readme.gpu_flags({"data_prep": None, "train": None, "gpu": []})
    assert empty.count(readme.NOT_RUN) == 6 and "not measured" in empty


# --- make rehearse -----------------------------------------------------------------------------------
def test_make_rehearse_is_the_paper_preset_with_three_stated_changes():
    import shlex

    from reproduce import config as config_module
    from reproduce import runs, train

    if shutil.which("make") is None:
        pytest.skip("make not installed")
    done = subprocess.run(["make", "-n", "-o", ".venv/.setup-stamp", "rehearse"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    [build] = [line for line in lines if "data_prep.build" in line]
    [run] = [line for line in lines if "reproduce.runs" in line]
    [report] = [line for line in lines if "reproduce.report all" in line]
    assert "--size 224" in build and "--data-dir data/rehearsal_phantom" in build
    own, extra = runs.split_argv(shlex.split(run)[3:])
    args = runs.build_parser().parse_args(own)
    assert args.preset == "paper" and args.keys == list(projection.TABLE1_RUNS) and not args.gpus
    parsed = train.build_parser().parse_args(["--data", "D", "--out", "O", *extra])
    config = config_module.paper().override(**config_module.overrides(parsed))
    paper = config_module.paper().to_dict()
    assert {k for k, v in config.to_dict().items() if v != paper[k]} == {"weights", "epochs", "steps_per_epoch"}
    assert (config.weights, config.image_size, config.batch_size, config.learning_rate, config.horizontal_flip) == \
        ("none", 224, 32, 1e-3, True)
    assert report.count("--runs ") == 4 and report.endswith("--out results/rehearsal --synthetic")


def test_backend_bound_is_the_95_percent_range_of_two_seeds_difference(tmp_path):
    """bench.backends: sd over seeds by hand, bound 1.96·√2·sd, and the verdict's two checks."""
    from bench.backends import compare, seed_spread, tolerance

    table = tmp_path / "seeds.csv"
    table.write_text("data,pathology,run,seed,auc\n"
                     "s,AVE,densenet121_wce,0,0.70\ns,AVE,densenet121_wce,1,0.68\n"
                     "s,AVE,densenet121_wce,2,0.66\ns,Hernia,densenet121_wce,0,0.10\n"
                     "s,AVE,densenet121_ewl,0,0.50\n")
    assert seed_spread("densenet121_wce", table) == pytest.approx(0.02)  # sd of 0.70, 0.68, 0.66
    with pytest.raises(ValueError, match="fewer than 2 seeds"):
        seed_spread("densenet121_ewl", table)
    assert tolerance(0.02) == pytest.approx(1.96 * 2 ** 0.5 * 0.02)
    run = {"test_mean_auc": 0.70, "loss_per_epoch": [2.0, 1.0]}
    close = compare({"tensorflow": run, "jax": {**run, "test_mean_auc": 0.66, "loss_per_epoch": [2.1]}}, 0.02)
    assert close["within_bound"] and close["both_learn"]
    assert close["abs_test_mean_auc_difference"] == pytest.approx(0.04)
    assert close["first_epoch_loss_relative_difference"] == pytest.approx(0.05)
    far = compare({"tensorflow": run, "jax": {**run, "test_mean_auc": 0.55}}, 0.02)
    assert not far["within_bound"] and not far["both_learn"]
