"""The GPU benchmark (`make bench-gpu` → bench/gpu.sh → here): what Table I costs on this machine.

    python -m bench.gpu --data SHARDS --out results/bench/gpu_<device>.json --device NAME
        [--budget-s 390] [--work DIR] [--tiny]

At the paper's shapes (§IV.B: 224², batch 32), each task in its own process (bench/gpu_worker.py:
a crash, an out-of-memory stop or an XLA failure costs that task's rest, not the benchmark):
  input           the training input pipeline alone: img/s and CPU ms per image on this host
  single B        for DenseNet121 (the paper's baseline, first), ResNet50, VGG16: Model.fit img/s
                  in fp32, mixed precision, mixed precision + XLA; validation img/s in the best
  mirrored B      with more than one visible GPU: --distribute mirrored, best precision, XLA off,
                  global batch 32, then the largest global batch that fits (reported apart)
Then the projected hours of Table I (bench/projection.py): sequential (`make paper`) and one run
per GPU (`make paper GPUS=0,1,2,3`). The tasks share one time budget: a task gets what is left
and is stopped at the deadline, a measurement that would not fit is skipped with the reason, so
the benchmark ends within --budget-s whatever happens. This process never imports TensorFlow.
--tiny: a CPU dry run of every path (the tiny CNN, 32², batch 8, two logical CPUs for mirrored).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from bench.projection import TABLE1_RUNS, table1_hours
from bench.workers import run_for_rows
from common import cli
from reproduce.paper import BENCHMARKED

BACKBONES = BENCHMARKED  # reproduce/paper.py: the baseline first
GOALS = {"densenet121_mixed_xla_img_s": 1500.0, "table1_one_per_gpu_hours": 3.0}  # our goals, H100-class
MIN_TASK_S = 20  # our choice: a task is not started with less left (TensorFlow start-up alone ~10 s)


def tasks(tiny: bool) -> list[dict]:
    backbones = ("tiny",) if tiny else BACKBONES
    return [{"task": "input", "backbone": "densenet121"}] + \
        [{"task": "single", "backbone": b} for b in backbones] + \
        [{"task": "mirrored", "backbone": b} for b in backbones]


def run_task(task: dict, args, deadline: float, work: Path, extra: list[str]) -> list[dict]:
    """Start one worker; return its rows (plus a row saying why it stopped, if it did not end well)."""
    name = f"{task['task']}_{task['backbone']}"
    rows_path, log = work / f"{name}.jsonl", work / f"{name}.log"
    rows_path.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "bench.gpu_worker", task["task"], "--data", str(args.data),
            "--rows", str(rows_path), "--deadline", str(deadline), "--backbone", task["backbone"],
            "--steps", str(args.steps), "--epochs", str(args.epochs), *extra,
            *(["--tiny"] if args.tiny else [])]
    env = dict(os.environ)
    if task["task"] == "input":
        env["CUDA_VISIBLE_DEVICES"] = ""  # the pipeline runs on the CPU; leave the GPUs alone
    return run_for_rows(argv, rows_path, log, deadline, env, failure=task)


def best_mode(rows: list[dict], backbone: str) -> str | None:
    for row in rows:
        if row.get("task") == "single" and row.get("backbone") == backbone and "best_mode" in row:
            return row["best_mode"]
    return None


def visible_gpus(rows: list[dict]) -> int | None:
    for row in rows:
        if "machine" in row:
            return len(row["machine"]["gpus"])
    return None


def measure(args, work: Path, after_task=lambda rows: None) -> list[dict]:
    """Every task in order within the budget; the rows of all of them. `after_task(rows)` is
    called after each task (the JSON is rewritten: an outside kill keeps what was measured)."""
    deadline = time.time() + args.budget_s
    rows: list[dict] = []
    for task in tasks(args.tiny):
        extra = []
        if task["task"] == "mirrored":
            gpus, mode = visible_gpus(rows), best_mode(rows, task["backbone"])
            reason = ("no single-GPU result to choose the precision from" if mode is None else
                      None if args.tiny or (gpus or 0) > 1 else f"{gpus or 0} GPU(s) visible; needs 2 or more")
            if reason:
                rows.append({**task, "skipped": reason})
                continue
            extra = ["--mode", mode]
        if deadline - time.time() < MIN_TASK_S:
            rows.append({**task, "skipped": f"time budget: {max(0.0, deadline - time.time()):.0f} s left"})
            continue
        say(f"{task['task']} {task['backbone']} ({deadline - time.time():.0f} s of the budget left)")
        new = run_task(task, args, deadline, work, extra)
        rows.extend(new)
        briefs = [_brief(r) for r in new if _brief(r)]
        if briefs:
            say("  " + "; ".join(briefs))
        after_task(rows)
    return rows


def _brief(row: dict) -> str:
    """A measured row in a few words (the status line after each task)."""
    what = " ".join(str(row[k]) for k in ("mode", "batch_size") if k in row)
    if "img_s" in row:
        return f"{what} {row['img_s']:,.0f} img/s"
    for key in ("error", "skipped", "task_error"):
        if key in row:
            return f"{what} {key}: {row[key]}".strip()
    return ""


def say(text: str) -> None:
    print(f"[bench-gpu] {time.strftime('%H:%M:%S')} {text}", flush=True)


def _rows(rows, task, backbone=None) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("task", "backbone")} for r in rows
            if r.get("task") == task and (backbone is None or r.get("backbone") == backbone)]


def summarise(rows: list[dict], tiny: bool) -> dict:
    """The JSON written: per backbone its modes, validation and mirrored rows; the input
    pipeline; the Table I projection from each backbone's best mode; the goals."""
    backbones, rates, mirrored_rates = {}, {}, {}
    for b in ("tiny",) if tiny else BACKBONES:
        single = _rows(rows, "single", b)
        entry = {r["mode"]: r for r in single if "mode" in r}
        entry["best_mode"] = best_mode(rows, b)
        entry["notes"] = [r for r in single if "mode" not in r and "machine" not in r and "best_mode" not in r]
        entry["mirrored"] = _rows(rows, "mirrored", b)
        backbones[b] = entry
        best, val = entry.get(entry["best_mode"] or "", {}), entry.get("validation", {})
        if "img_s" in best and "img_s" in val:
            rates[b] = (best["img_s"], val["img_s"])
            at_32 = [r for r in entry["mirrored"] if r.get("batch_size") == 32 and "img_s" in r]
            if at_32:
                mirrored_rates[b] = (at_32[0]["img_s"], val["img_s"])
    runs = {key: "tiny" for key in TABLE1_RUNS} if tiny else TABLE1_RUNS
    projection = table1_hours(rates, runs)
    projection["mirrored_sequential_hours"] = table1_hours(mirrored_rates, runs)["sequential_hours"]
    inputs = next((r for r in _rows(rows, "input") if r.get("mode") == "input"), {})
    if projection["missing"] == [] and "img_s" in inputs:
        # Four runs side by side share this host's CPU for their input pipelines.
        projection["input_headroom_one_per_gpu"] = inputs["img_s"] / sum(rates[runs[k]][0] for k in runs)
    machine = next((r["machine"] for r in rows if "machine" in r), None)
    dense = backbones.get("densenet121", {}).get("mixed_xla", {})
    goals = {"densenet121_mixed_xla_img_s": {"goal": GOALS["densenet121_mixed_xla_img_s"],
                                             "measured": dense.get("img_s")},
             "table1_one_per_gpu_hours": {"goal": GOALS["table1_one_per_gpu_hours"],
                                          "measured": projection["one_per_gpu_hours"]}}
    goals["densenet121_mixed_xla_img_s"]["met"] = _met(dense.get("img_s"), GOALS["densenet121_mixed_xla_img_s"], ">=")
    goals["table1_one_per_gpu_hours"]["met"] = _met(projection["one_per_gpu_hours"], GOALS["table1_one_per_gpu_hours"], "<=")
    if tiny:  # a dry run meets or misses nothing
        goals = {name: {**g, "met": None} for name, g in goals.items()}
    return {"machine": machine, "input_pipeline": inputs, "backbones": backbones,
            "task_errors": [r for r in rows if "task_error" in r or ("skipped" in r and "mode" not in r)],
            "table1_projection": projection, "goals": goals}


def _met(value, goal, how):
    if value is None:
        return None
    return value >= goal if how == ">=" else value <= goal


def _fmt(entry: dict) -> str:
    if "img_s" in entry:
        return f"{entry['img_s']:,.0f} img/s"
    return "skipped" if "skipped" in entry else "failed" if "error" in entry else "not measured"


def report(result: dict) -> list[str]:
    """The lines printed at the end."""
    lines = ["dry check (--tiny): the tiny CNN on a CPU; these numbers say nothing about a GPU"] \
        if result["dry_check"] else []
    inp = result["input_pipeline"]
    if "img_s" in inp:
        lines.append(f"input pipeline alone: {inp['img_s']:,.0f} img/s, {inp['cpu_ms_per_image']:.3f} CPU ms "
                     f"per image ({result['machine'] and result['machine']['cpu_count']} cores)")
    for b, e in result["backbones"].items():
        lines.append(f"{b}: fp32 {_fmt(e.get('fp32', {}))}, mixed {_fmt(e.get('mixed', {}))}, mixed+XLA "
                     f"{_fmt(e.get('mixed_xla', {}))}; validation {_fmt(e.get('validation', {}))} "
                     f"(best: {e['best_mode']})")
        for r in e["mirrored"]:
            if "batch_size" in r:
                lines.append(f"  mirrored x{r['replicas']}, global batch {r['batch_size']}: {_fmt(r)}"
                             + (" (out of memory)" if r.get("out_of_memory") else ""))
    p = result["table1_projection"]
    if p["sequential_hours"] is None:
        lines.append(f"Table I projection: incomplete (not measured: {', '.join(p['missing'])})")
    else:
        lines.append(f"Table I (4 runs x {p['epochs']} epochs x ({p['train_images']:,} train + "
                     f"{p['val_images']:,} val images)): sequential {p['sequential_hours']:.1f} h; "
                     f"one run per GPU (GPUS=0,1,2,3) {p['one_per_gpu_hours']:.1f} h"
                     + (f"; mirrored, each run on all GPUs {p['mirrored_sequential_hours']:.1f} h"
                        if p.get("mirrored_sequential_hours") else ""))
    for name, g in result["goals"].items():
        lines.append(f"goal {name}: {g['goal']} — measured {g['measured'] if g['measured'] is None else round(g['measured'], 2)}"
                     f" ({'met' if g['met'] else 'not met' if g['met'] is False else 'n/a'})")
    return lines


def build_parser():
    p = cli.make_parser("bench.gpu", __doc__)
    p.add_argument("--data", required=True, metavar="SHARDS", type=Path, help="TFRecord folder (data_prep.build) at 224²")
    p.add_argument("--out", required=True, type=Path, help="JSON file to write")
    p.add_argument("--device", default="unknown", help="device name recorded in the JSON")
    p.add_argument("--work", type=Path, help="folder for the workers' rows and logs (default: beside --out)")
    p.add_argument("--budget-s", type=float, default=390, help="seconds all measurements may take")
    p.add_argument("--steps", type=int, default=25, help="fit steps per epoch (one untimed epoch, then --epochs)")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per measurement")
    p.add_argument("--tiny", action="store_true", help="CPU dry run: tiny CNN, 32², batch 8")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        start = time.monotonic()
        if not (args.data / "manifest.json").is_file():
            raise ValueError(f"{args.data / 'manifest.json'}: not found (build the shards first)")
        work = args.work or args.out.parent / f".{args.out.stem}"
        work.mkdir(parents=True, exist_ok=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)

        def write(rows):
            result = {"device": args.device, "dry_check": args.tiny,
                      "settings": {"image_size": 32 if args.tiny else 224, "batch_size": 8 if args.tiny else 32,
                                   "steps": args.steps, "timed_epochs": args.epochs, "budget_s": args.budget_s},
                      **summarise(rows, args.tiny), "seconds": time.monotonic() - start}
            args.out.write_text(json.dumps(result, indent=2) + "\n")
            return result

        result = write(measure(args, work, write))
        for line in report(result):
            print(line)
        print(f"wrote {args.out} ({result['seconds']:.0f} s)")

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
