"""The docs' benchmark numbers, generated from results/bench/*.json (never typed by hand).

    python -m bench.readme            # rewrite the generated sections of README.md and docs/
    python -m bench.readme --check    # exit 1 if a file differs from what the JSON files give

Each section sits between `<!-- generated: NAME ... -->` and `<!-- end: NAME -->` in the file that
holds it (FILES; `--file NAME=PATH` points a section elsewhere); the text between is replaced as a
whole. tests/bench/test_bench.py fails when a file is stale, so a new `make bench` / `make bench-gpu`
result is followed by `python -m bench.readme`.
  bench-table   docs/benchmarks.md: build, reads, training vs in memory, input pipeline, uint8 input,
                XLA and steps per execution on a CPU, and one row per GPU benchmarked
  gpu-flags     docs/gpus.md: what each flag costs or saves, CPU and GPU numbers
  gpu-jax       docs/gpus.md: the device benchmark without TensorFlow (bench/device.py, Keras on
                JAX), one table per gpu_<device>_jax.json
  backends      docs/gpus.md: one demo run under Keras' TensorFlow and JAX backends (backends.json)
  times         README.md: `make demo`, `make rehearse`, `make test` per kind of CPU (times_*.json,
                bench/make_times.py)
  demo-profile  docs/demo.md: `make demo` step by step per kind of CPU (the same files)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.backends import backends_section
from bench.device_report import gpu_jax
from bench.make_times import demo_profile, times_section
from common import cli
from common.provenance import portable_path

ROOT = Path(__file__).resolve().parents[1]
BUILD_GOAL = 2.0  # our target for the build vs a naive loop (per core)
NOT_RUN = "GPU: measured by `make bench-gpu`, not yet run"


def load(results: Path) -> dict:
    """{"data_prep": dict | None, "train": dict | None, "gpu": [dict, …] (bench/gpu.py, one per device,
    by name), "gpu_jax": [dict, …] (bench/device.py's gpu_<device>_jax.json), "backends": dict | None,
    "times": [dict, …] (bench/make_times.py, one per kind of CPU)}; dry runs left out."""
    def read(name):
        path = results / name
        return json.loads(path.read_text()) if path.is_file() else None

    def measured(paths):
        return [g for g in (json.loads(p.read_text()) for p in sorted(paths)) if not g.get("dry_check")]

    return {"data_prep": read("data_prep.json"), "train": read("train.json"), "backends": read("backends.json"),
            "gpu": measured(p for p in results.glob("gpu_*.json") if not p.name.endswith("_jax.json")),
            "gpu_jax": measured(results.glob("gpu_*_jax.json")),
            # the CPU as it is first, then the same CPU with oneDNN capped
            "times": [json.loads(p.read_text()) for p in
                      sorted(results.glob("times_*.json"), key=lambda p: ("-capped-" in p.stem, p.stem))]}


def _x(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}×"


def _rate(value: float) -> str:
    return f"{value:,.1f} img/s" if value < 1000 else f"{value:,.0f} img/s"


def _data_rows(d: dict) -> list[str]:
    one, naive = d["build_1_worker"], d["naive_pil"]
    ratio = d["speedup_1_worker_vs_naive"]
    met = "met" if ratio >= BUILD_GOAL else (
        f"not met: both are bound by PNG decoding, {d['png_decode_share']:.0%} of our per-image cost, "
        f"{d['stage_ms_per_image']['png_decode']:.1f} ms; zlib inflate is the same in both")
    two = d["build_2_workers"]
    read = d["read"]
    return [
        f"| build, 1024² PNG → {d['size']}² TFRecord, 1 worker | {_rate(one['images_per_s'])} | naive "
        f"single-process PIL open+resize loop, {_rate(naive['images_per_s'])} | {_x(ratio)} per core | "
        f"≥ {BUILD_GOAL:.0f}× ({met}) |",
        f"| build, 2 workers vs 1 | | | {_x(d['scaling_2_vs_1_workers_steady'])} between first and last "
        f"shard ({_x(d['scaling_2_vs_1_workers'])} end to end, with {two['pool_startup_s']:.1f} s of worker "
        f"start-up on {d['images']:,} images) | |",
        f"| tf.data read, raw bytes vs PNG-encoded {d['size']}² records | {_rate(read['raw']['images_per_s'])} "
        f"| {_rate(read['png']['images_per_s'])} | {_x(d['read']['raw_over_png'])} | raw is the default "
        "(`manifest.json: encoding`) |"]


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def _train_rows(t: dict) -> list[str]:
    c, tr = t["config"], t["training"]
    rows = [f"| training {c['model']} {c['image_size']}², batch {c['batch_size']}, from TFRecords vs the "
            f"same images in memory | {_rate(tr['pipeline_img_s'])} | {_rate(tr['in_memory_img_s'])} | "
            f"{tr['ratio']:.3f} | ≥ {tr['goal']} ({_met(tr['ratio'] >= tr['goal'])}) |"]
    if t.get("input"):
        i = t["input"]
        rows.append(f"| input pipeline alone vs a Keras `PyDataset` opening and resizing the 1024² PNGs "
                    f"every epoch | {_rate(i['tfrecord_pipeline_img_s'])} | {_rate(i['png_pydataset_img_s'])} "
                    f"| {_x(i['ratio'], 1)} | ≥ {i['goal']:.0f}× ({_met(i['ratio'] >= i['goal'])}) |")
    if t.get("input_normalisation"):
        n = t["input_normalisation"]
        rows.append(f"| input pipeline at {n['image_size']}², CPU per image: uint8 gray out (normalised in "
                    f"the model) vs float32 RGB normalised on the CPU (the old pipeline) | "
                    f"{n['after']['cpu_ms_per_image']:.3f} ms, {_rate(n['after']['img_s'])}, "
                    f"{n['after']['bytes_per_image'] / 1000:.0f} KB | {n['before']['cpu_ms_per_image']:.3f} ms, "
                    f"{_rate(n['before']['img_s'])}, {n['before']['bytes_per_image'] / 1000:.0f} KB | "
                    f"{_x(n['cpu_ratio'], 1)} less CPU | ≥ {n['goal_cpu_ratio']:.0f}× "
                    f"({_met(n['cpu_ratio'] >= n['goal_cpu_ratio'])}) |")
    if t.get("switches"):
        s = t["switches"]
        base = s["baseline"]
        for name, label in (("xla", "`--jit-compile on` (XLA)"),
                            ("steps_per_execution", f"`--steps-per-execution {s['steps_per_execution']['steps_per_execution']}`")):
            rows.append(f"| training {s['model']} {s['image_size']}², batch {s['batch_size']}: {label} vs "
                        f"the CPU default (XLA off, 1 step per call) | {_rate(s[name]['img_s'])} | "
                        f"{_rate(base['img_s'])} | {_x(s['ratios'][f'{name}_vs_baseline'])} | |")
    return rows


def _gpu_rows(g: dict) -> list[str]:
    rows = []
    for b, e in g["backbones"].items():
        best = e.get(e.get("best_mode") or "", {})
        fp32 = e.get("fp32", {})
        if "img_s" in best and "img_s" in fp32:
            rows.append(f"| {g['device']}: training {b} 224², batch 32, best ({e['best_mode']}) vs fp32 | "
                        f"{_rate(best['img_s'])} | {_rate(fp32['img_s'])} | {_x(best['img_s'] / fp32['img_s'])} | |")
    p = g["table1_projection"]
    if p.get("one_per_gpu_hours") is not None:
        rows.append(f"| {g['device']}: whole Table I (4 runs × 50 epochs), one run per GPU vs sequential | "
                    f"{p['one_per_gpu_hours']:.1f} h | {p['sequential_hours']:.1f} h | | ≤ 3 h one per GPU "
                    f"({'met' if p['one_per_gpu_hours'] <= 3 else 'not met'}) |")
    return rows


def bench_table(r: dict) -> str:
    rows = ["| what | ours | baseline | ratio | goal |", "| --- | --- | --- | --- | --- |"]
    if r["data_prep"]:
        rows += _data_rows(r["data_prep"])
    if r["train"]:
        rows += _train_rows(r["train"])
    for g in r["gpu"]:
        rows += _gpu_rows(g)
    if not r["gpu"]:
        rows.append(f"| GPU training, validation, Table I hours | | | | {NOT_RUN} |")
    load = ((r["train"] or {}).get("machine") or {}).get("load_average_1_5_15_min")
    if load:  # other jobs on the machine: say how loaded it was
        rows += ["", f"`make bench-train` ran with a load average of {load[0]:.1f} (1 min) on "
                     f"{r['train']['machine']['cpu_count']} cores; above the core count, other jobs shared them."]
    return "\n".join(rows)


def _per_gpu(r: dict, cell, label: str = "") -> str:
    """One GPU column cell: `label` + `cell(gpu_json)` for every benchmarked device, or NOT_RUN."""
    parts = [f"{g['device']}: {text}" for g in r["gpu"] if (text := cell(g))]
    return label + "; ".join(parts) if parts else NOT_RUN


def _modes(g: dict, a: str, b: str) -> str | None:
    out = [f"{name} {_rate(e[b]['img_s'])} vs {_rate(e[a]['img_s'])}"
           for name, e in g["backbones"].items() if "img_s" in e.get(a, {}) and "img_s" in e.get(b, {})]
    return ", ".join(out) or None


def _mirrored(g: dict) -> str | None:
    out = []
    for name, e in g["backbones"].items():
        fits = [m for m in e.get("mirrored", []) if "img_s" in m]
        if fits:
            big = max(fits, key=lambda m: m["batch_size"])
            out.append(f"{name} ×{big['replicas']} GPUs: {_rate(fits[0]['img_s'])} at global batch "
                       f"{fits[0]['batch_size']}, {_rate(big['img_s'])} at {big['batch_size']}")
    return ", ".join(out) or None


def _validation(g: dict) -> str | None:
    out = [f"{name} {_rate(e['validation']['img_s'])}" for name, e in g["backbones"].items()
           if "img_s" in e.get("validation", {})]
    return ", ".join(out) or None


def _input_alone(g: dict) -> str | None:
    rate = g["input_pipeline"].get("img_s")
    return f"input pipeline alone {_rate(rate)} on {g['machine']['cpu_count']} cores" if rate else None


def _hours(g: dict) -> str | None:
    p = g["table1_projection"]
    if p.get("one_per_gpu_hours") is None:
        return None
    return f"{p['one_per_gpu_hours']:.1f} h one run per GPU vs {p['sequential_hours']:.1f} h sequential"


def gpu_flags(r: dict) -> str:
    t = r["train"] or {}
    n, s = t.get("input_normalisation"), t.get("switches")
    cpu_uint8 = (f"{_x(n['cpu_ratio'], 1)} less CPU per {n['image_size']}² image "
                 f"({n['before']['cpu_ms_per_image']:.2f} → {n['after']['cpu_ms_per_image']:.2f} ms), "
                 f"{n['before']['bytes_per_image'] / 1000:.0f} → {n['after']['bytes_per_image'] / 1000:.0f} KB "
                 "per image to the device") if n else "not measured"
    cpu_xla = (f"{_x(s['ratios']['xla_vs_baseline'])} the img/s of XLA off ({_rate(s['xla']['img_s'])} vs "
               f"{_rate(s['baseline']['img_s'])}, {s['model']} {s['image_size']}²) after a first step of "
               f"{s['xla']['compile_s']:.0f} s (XLA compiling); Keras' `auto` leaves it off on a CPU") if s else "not measured"
    spe = s["steps_per_execution"] if s else None
    cpu_spe = (f"{spe['steps_per_execution']}: {_x(s['ratios']['steps_per_execution_vs_baseline'])} the img/s "
               f"of 1 ({_rate(spe['img_s'])} vs {_rate(s['baseline']['img_s'])})") if s else "not measured"
    rows = [
        "| flag (train option) | what it changes | CPU (2 cores, `make bench-train`) | GPU (`make bench-gpu`) |",
        "| --- | --- | --- | --- |",
        f"| (always) uint8 images into the model | gray → RGB and the ImageNet normalisation run in the model's "
        f"first layer, on the device | {cpu_uint8} | "
        f"{_per_gpu(r, _input_alone)} |",
        f"| `--jit-compile auto\\|on\\|off` | XLA; `auto` (default) = on for one GPU without tf.distribute or "
        f"`--deterministic`, off on a CPU | {cpu_xla} | "
        f"{_per_gpu(r, lambda g: _modes(g, 'mixed', 'mixed_xla'), 'mixed+XLA vs mixed: ')} |",
        f"| `--steps-per-execution N` | N training steps per call from the host (default 1) | {cpu_spe} | "
        "not timed (bench-gpu runs 1, the default) |",
        f"| `--mixed-precision` | float16 compute, float32 weights, input layer and head | refused on a CPU "
        f"(warning; trains in float32) | {_per_gpu(r, lambda g: _modes(g, 'fp32', 'mixed'), 'mixed vs fp32: ')} |",
        f"| `--distribute mirrored` | one run on every local GPU, global batch 32 (§IV.B), synchronized "
        f"BatchNorm; XLA off under `auto` | (`--cpu-replicas 2` simulates it) | {_per_gpu(r, _mirrored)} |",
        f"| `--val-batch-size N` | images per validation forward pass (default 128) | | "
        f"{_per_gpu(r, _validation, 'validation: ')} |",
        f"| `make paper GPUS=0,1,2,3` | the four Table I runs side by side, one GPU each | | {_per_gpu(r, _hours)} |",
    ]
    return "\n".join(rows)


SECTIONS = {"bench-table": bench_table, "gpu-flags": gpu_flags, "gpu-jax": gpu_jax,
            "backends": backends_section, "times": times_section, "demo-profile": demo_profile}
# The file that holds each section, relative to the project (the default of --file).
FILES = {"bench-table": Path("docs/benchmarks.md"), "gpu-flags": Path("docs/gpus.md"),
         "gpu-jax": Path("docs/gpus.md"), "backends": Path("docs/gpus.md"), "times": Path("README.md"),
         "demo-profile": Path("docs/demo.md")}


def begin_marker(name: str) -> str:
    return f"<!-- generated: {name} (python -m bench.readme, from results/bench/*.json; do not edit) -->"


def end_marker(name: str) -> str:
    return f"<!-- end: {name} -->"


def section(text: str, name: str, shown: str | None = None) -> str:
    """What `text` (the file `shown`, by default the one FILES names) holds between the markers
    of section `name`."""
    begin, end = begin_marker(name), end_marker(name)
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f"{shown or FILES[name].as_posix()}: expected one '{begin}' followed by one '{end}'")
    return text[text.index(begin) + len(begin):text.index(end)].strip("\n")


def regenerate(text: str, results: dict, names=None, shown: str | None = None) -> str:
    """`text` with the lines of every section in `names` (default: all) replaced by what `results`
    give now."""
    for name in SECTIONS if names is None else names:
        section(text, name, shown)  # both markers present, in order
        start = text.index(begin_marker(name)) + len(begin_marker(name))
        text = text[:start] + "\n" + SECTIONS[name](results) + "\n" + text[text.index(end_marker(name)):]
    return text


def build_parser():
    p = cli.make_parser("bench.readme", __doc__)
    # Defaults are shown and taken relative to the project (no machine path in a help).
    defaults = ", ".join(f"{name}={path.as_posix()}" for name, path in FILES.items())
    p.add_argument("--file", action="extend", nargs="+", metavar="NAME=PATH", default=None,
                   help=f"put section NAME in the file PATH instead (default: {defaults})")
    p.add_argument("--results", type=Path, default=Path("results/bench"), help="folder of the JSON files")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is stale")
    return p


def section_files(parser, given) -> dict[Path, list[str]]:
    """{file: [section names it holds]}: FILES under the project, with --file NAME=PATH applied."""
    files = {name: ROOT / path for name, path in FILES.items()}
    for item in given or []:
        name, sep, path = item.partition("=")
        if not sep or not path or name not in SECTIONS:
            parser.error(f"--file {item}: expected NAME=PATH with NAME one of {', '.join(SECTIONS)}")
        files[name] = Path(path)
    grouped: dict[Path, list[str]] = {}
    for name, path in files.items():
        grouped.setdefault(path, []).append(name)
    return grouped


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.results == parser.get_default("results"):
        args.results = ROOT / args.results
    files = section_files(parser, args.file)

    def body():
        source = portable_path(args.results)
        results = load(args.results)
        stale = []
        for path, names in files.items():
            shown = portable_path(path)
            text = path.read_text()
            new = regenerate(text, results, names, shown)
            if args.check:
                if new != text:
                    stale.append(shown)
                else:
                    print(f"{shown}: benchmark sections match {source}")
            elif new != text:
                path.write_text(new)
                print(f"{shown}: benchmark sections regenerated from {source}")
            else:
                print(f"{shown}: already up to date")
        if stale:
            raise ValueError(f"{', '.join(stale)}: benchmark sections are stale; run python -m bench.readme")

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
