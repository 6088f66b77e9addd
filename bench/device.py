"""The device benchmark without TensorFlow (bench/device.sh → here): what Table I costs on one GPU
under Keras' JAX backend, where only JAX, NumPy and Keras are installed.

    KERAS_BACKEND=jax python -m bench.device [--out FILE] [--budget-s 330] [--tiny --out FILE]

At the paper's shapes (§IV.B: 224², batch 32), on synthetic uint8 images held in memory, with
the model of reproduce.models, the paper's loss and Adam 1e-3 compiled as reproduce.train does,
each task in its own process (bench/device_worker.py: an out-of-memory stop or an XLA failure
costs that task, not the benchmark), in this order, under one deadline:
  1. DenseNet121, ResNet50, VGG16 in bf16 (mixed_bfloat16): training img/s, the first
     (compiling) step apart, then validation img/s (predict, batch 128)
  2. the largest training batch that fits for DenseNet121 in its faster precision: powers of two
     from --max-batch-cap down, each try in its own process (on a large GPU the first or second
     try answers; doubling up from 32 would compile five times)
  3. the same as 1 in fp32 and in fp16 (mixed_float16, loss scaling)
  4. DenseNet121 with Eq. (2), to check that it costs what Eq. (1) costs (the projection assumes so)
Then the projected hours of Table I (bench/projection.py) from each backbone's fastest precision,
sequential and one run per GPU. A task that would not fit in what is left is skipped with the
reason. Writes results/bench/gpu_<device>_jax.json after every task (an outside kill keeps what
was measured); `python -m bench.readme` puts it in docs/gpus.md. This process imports neither
Keras nor JAX; the workers import JAX and Keras, never TensorFlow.
--tiny: a CPU dry run of exactly this path (the tiny CNN, 32², batch 4; JSON to --out only).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from bench import device_worker
from bench.device_report import brief, report
from bench.projection import TABLE1_RUNS, table1_hours
from bench.workers import run_for_rows
from common import cli, provenance
from reproduce.paper import BENCHMARKED

ROOT = Path(__file__).resolve().parents[1]
BACKBONES = BENCHMARKED  # reproduce/paper.py: the paper's baseline first (§III)
PRECISIONS = tuple(device_worker.PRECISIONS)  # bf16, fp32, fp16 (the default order)
SIZES = {False: {"image_size": 224, "batch_size": 32, "val_batch_size": 128, "steps": 20, "epochs": 2,
                 "val_batches": 16, "max_batch_cap": 1024, "budget_s": 330, "min_task_s": 30},
         True: {"image_size": 32, "batch_size": 4, "val_batch_size": 8, "steps": 2, "epochs": 1,
                "val_batches": 2, "max_batch_cap": 16, "budget_s": 60, "min_task_s": 3}}
LIBRARIES = ("jax", "jaxlib", "keras", "numpy", "ml-dtypes", "optree", "namex", "h5py",
             "jax-cuda13-plugin", "jax-cuda13-pjrt", "jax-cuda12-plugin")


def slug(device_kind: str) -> str:
    """'NVIDIA H200' → 'NVIDIA_H200' (as bench/gpu.sh names its files)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", device_kind).strip("_") or "unknown"


def code_digest() -> str:
    """SHA-256 of the code's files: the device gets a copy of the tree without git, so the commit
    may be unknown there; this digest, recomputed at a commit, says whether that was the code."""
    h = hashlib.sha256()
    for path in sorted(p for pkg in ("data_prep", "reproduce", "bench") for p in (ROOT / pkg).rglob("*.py")):
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def say(text: str) -> None:
    print(f"[bench-device] {time.strftime('%H:%M:%S')} {text}", flush=True)


def run_worker(argv: list[str], name: str, work: Path, deadline: float, tiny: bool) -> list[dict]:
    """One worker process; its rows, plus a row saying why it stopped if it did not end well."""
    rows_path, log = work / f"{name}.jsonl", work / f"{name}.log"
    rows_path.unlink(missing_ok=True)
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONUNBUFFERED": "1"}
    if tiny:
        env["JAX_PLATFORMS"] = "cpu"  # a dry run stays on the CPU, also where a GPU is present
    cmd = [sys.executable, "-m", "bench.device_worker", "--rows", str(rows_path), "--deadline", str(deadline),
           "--cache", str(work / "jax_cache"), *argv]
    return run_for_rows(cmd, rows_path, log, deadline, env, failure={"part": "task"}, cwd=ROOT)


def entry(rows: list[dict]) -> dict:
    """One task's rows as one entry: the train fields, `validation`, and why it stopped if it did."""
    out: dict = {}
    for r in rows:
        fields = {k: v for k, v in r.items() if k not in ("part", "backbone", "loss", "precision")}
        if r.get("part") == "validation":
            fields.pop("batch_size", None)  # the training batch; val_batch_size is the one here
            out["validation"] = fields
        elif r.get("part") in ("train", "task"):
            out.update(fields)
    return out


class Bench:
    """The tasks in order under one deadline; `self.result` is the JSON, rewritten after each task."""

    def __init__(self, args, sizes: dict, work: Path, write):
        self.args, self.sizes, self.work, self.write = args, sizes, work, write
        self.deadline = time.time() + args.budget_s
        self.backbones = ("tiny",) if args.tiny else tuple(args.backbones)
        self.subject = "tiny" if args.tiny else "densenet121"  # max batch and Eq. (2): the baseline
        self.result = {"backbones": {b: {p: {"skipped": "not selected (--precisions)"} for p in PRECISIONS}
                                     for b in self.backbones},
                       "max_batch": {"backbone": self.subject, "cap": args.max_batch_cap, "largest_fitting": None,
                                     "at_cap": False, "tries": []},
                       "ewl": {"skipped": "not reached"}, "task_errors": []}

    def left(self) -> float:
        return self.deadline - time.time()

    def task(self, name: str, backbone: str, precision: str, loss: str = "wce", batch: int | None = None,
             validation: bool = True, steps: int | None = None, epochs: int | None = None) -> dict:
        """One worker (or a skip row when too little time is left); its entry."""
        s = self.sizes
        batch, steps, epochs = batch or s["batch_size"], steps or s["steps"], epochs or s["epochs"]
        if self.left() < s["min_task_s"]:
            return {"skipped": f"time budget: {max(0.0, self.left()):.0f} s left"}
        say(f"{name}: {backbone} {loss} {precision} batch {batch} ({self.left():.0f} s of the budget left)")
        argv = ["--backbone", backbone, "--loss", loss, "--precision", precision, "--image-size", str(s["image_size"]),
                "--batch-size", str(batch), "--steps", str(steps), "--epochs", str(epochs),
                "--val-batch-size", str(s["val_batch_size"]),
                "--val-batches", str(s["val_batches"] if validation else 0)]
        got = entry(run_worker(argv, f"{name}_{backbone}_{loss}_{precision}_{batch}", self.work, self.deadline,
                               self.args.tiny))
        say("  " + brief(got))
        if "task_error" in got:
            self.result["task_errors"].append({"task": name, "backbone": backbone, "loss": loss, "precision": precision,
                                               "batch_size": batch, "task_error": got["task_error"]})
        return got

    def train(self, precision: str) -> None:
        for b in self.backbones:
            self.result["backbones"][b][precision] = self.task("train", b, precision)
            self.write(self)

    def best_precision(self, backbone: str) -> str | None:
        rates = {p: e["img_s"] for p, e in self.result["backbones"].get(backbone, {}).items()
                 if isinstance(e, dict) and "img_s" in e}
        return max(rates, key=rates.get) if rates else None

    def max_batch(self) -> None:
        """Powers of two from the cap down to twice the training batch; the first that trains wins."""
        mb, cap = self.result["max_batch"], self.args.max_batch_cap
        mb["precision"] = precision = self.best_precision(self.subject) or self.args.precisions[0]
        if cap <= self.sizes["batch_size"]:
            mb["skipped"] = f"--max-batch-cap {cap} is not above the training batch"
            return
        batch = 1 << (cap.bit_length() - 1)
        while batch > self.sizes["batch_size"]:
            got = {"batch_size": batch, **self.task("max_batch", self.subject, precision, batch=batch,
                                                    validation=False, steps=3, epochs=1)}
            mb["tries"].append(got)
            self.write(self)
            if "img_s" in got:
                mb["largest_fitting"], mb["at_cap"] = batch, batch == cap
                return
            if not got.get("out_of_memory"):  # a skip, a crash or a non-memory error ends the search
                return
            batch //= 2
        fits = "img_s" in self.result["backbones"].get(self.subject, {}).get(precision, {})
        mb["largest_fitting"] = self.sizes["batch_size"] if fits else None

    def run(self) -> dict:
        first, rest = self.args.precisions[0], self.args.precisions[1:]
        self.train(first)
        if self.args.max_batch_cap:
            self.max_batch()
        else:
            self.result["max_batch"]["skipped"] = "--max-batch-cap 0"
        for precision in rest:
            self.train(precision)
        precision = self.best_precision(self.subject) or first
        self.result["ewl"] = {"backbone": self.subject, "precision": precision,
                              **self.task("train", self.subject, precision, loss="ewl", validation=False)}
        self.write(self)
        return self.result


def projection(backbones: dict, tiny: bool) -> dict:
    """Table I hours from each backbone's fastest precision (its training and validation img/s),
    and, per precision measured for all three, the hours in that precision alone."""
    runs = {key: "tiny" for key in TABLE1_RUNS} if tiny else TABLE1_RUNS

    def rates(pick) -> dict:
        out = {}
        for b, entries in backbones.items():
            p = pick(b, entries)
            e = entries.get(p, {}) if p else {}
            if "img_s" in e and "img_s" in e.get("validation", {}):
                out[b] = (e["img_s"], e["validation"]["img_s"])
        return out

    def fastest(b, entries):
        measured = {p: e["img_s"] for p, e in entries.items() if "img_s" in e and "img_s" in e.get("validation", {})}
        return max(measured, key=measured.get) if measured else None

    result = table1_hours(rates(fastest), runs)
    result["precision_per_backbone"] = {b: fastest(b, e) for b, e in backbones.items()}
    result["per_precision"] = {}
    for p in PRECISIONS:
        hours = table1_hours(rates(lambda b, entries, p=p: p), runs)
        result["per_precision"][p] = {k: hours[k] for k in ("sequential_hours", "one_per_gpu_hours", "missing")}
    return result


def build_parser():
    p = cli.make_parser("bench.device", __doc__)
    p.add_argument("--out", type=Path, help="JSON file to write (default: results/bench/gpu_<device>_jax.json; "
                                            "--tiny needs one: a dry run is not a result)")
    p.add_argument("--work", type=Path, help="folder for the workers' rows, logs and compilation cache "
                                             "(default: a new temporary folder)")
    p.add_argument("--budget-s", type=float, help="seconds all measurements may take (default: 330; --tiny: 60)")
    p.add_argument("--backbones", action="extend", nargs="+", choices=BACKBONES,
                   help=f"backbones to measure (default: {' '.join(BACKBONES)}; --tiny: the tiny CNN)")
    p.add_argument("--precisions", action="extend", nargs="+", choices=PRECISIONS,
                   help=f"precisions, the first for every backbone first (default: {' '.join(PRECISIONS)})")
    p.add_argument("--max-batch-cap", type=int, help="largest batch tried for the batch search, 0 skips it "
                                                     "(default: 1024; --tiny: 16)")
    p.add_argument("--tiny", action="store_true", help="CPU dry run: tiny CNN, 32², batch 4, 2 steps")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.tiny and args.out is None:
        parser.error("--tiny needs --out (a dry run does not go in results/bench)")
    sizes = SIZES[args.tiny]
    args.budget_s = sizes["budget_s"] if args.budget_s is None else args.budget_s
    args.max_batch_cap = sizes["max_batch_cap"] if args.max_batch_cap is None else args.max_batch_cap
    # Each named once, in the order given (the first precision is measured for every backbone first).
    args.backbones = list(dict.fromkeys(args.backbones or BACKBONES))
    args.precisions = list(dict.fromkeys(args.precisions or PRECISIONS))
    return cli.run(lambda: measure(args, sizes))


def header(args, sizes: dict, machine: dict, started: str) -> dict:
    """The JSON's first fields: what was asked for, on what, by which code."""
    settings = {k: v for k, v in sizes.items() if k not in ("budget_s", "max_batch_cap", "min_task_s")}
    settings.update(budget_s=args.budget_s, max_batch_cap=args.max_batch_cap,
                    backbones=["tiny"] if args.tiny else list(args.backbones), precisions=list(args.precisions),
                    positive_label_rate=device_worker.POSITIVE_RATE)
    return {"device": machine["device_kind"], "keras_backend": "jax", "dry_check": args.tiny, "settings": settings,
            "machine": machine, "provenance": {"code": provenance.code_version(), "code_sha256": code_digest(),
                                               "libraries": provenance.library_versions(LIBRARIES)},
            "started_utc": started}


def measure(args, sizes: dict) -> None:
    """Probe the device, then every task; the JSON rewritten after each, the table printed at the end."""
    start, started = time.monotonic(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_device_"))
    work.mkdir(parents=True, exist_ok=True)
    probe = run_worker(["--probe"], "probe", work, time.time() + 120, args.tiny)
    machine = next((r["machine"] for r in probe if "machine" in r), None)
    if machine is None:
        raise RuntimeError(f"JAX did not start: {probe[-1]['task_error'] if probe else 'no output'}")
    if not args.tiny and machine["platform"] != "gpu":
        raise RuntimeError(f"JAX sees no GPU (platform {machine['platform']}); use --tiny --out FILE for a CPU dry run")
    out = args.out or ROOT / "results" / "bench" / f"gpu_{slug(machine['device_kind'])}_jax.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    say(f"{machine['device_kind']} x{machine['device_count']}, JAX {machine['jax']}, Keras {machine['keras']}; "
        f"budget {args.budget_s:.0f} s; rows and logs in {work}")
    head = header(args, sizes, machine, started)

    def write(bench: Bench) -> dict:
        result = {**head, **bench.result, "table1_projection": projection(bench.result["backbones"], args.tiny),
                  "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "seconds": time.monotonic() - start}
        out.write_text(json.dumps(result, indent=2) + "\n")
        return result

    bench = Bench(args, sizes, work, write)
    bench.run()
    result = write(bench)
    for line in report(result):
        print(line)
    print(f"wrote {provenance.portable_path(out)} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
