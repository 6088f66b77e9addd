"""The same DenseNet121 demo run under Keras' TensorFlow and JAX backends (`make bench-backends`).

    python -m bench.backends --data SHARDS [--runs-dir results/bench/backends]
                             [--out results/bench/backends.json] [--model densenet121] [--loss wce]

Trains `--model`/`--loss` at the demo preset with `--initializer numpy` (the same starting
network on both backends, reproduce.init_weights) once per backend, through the CLIs
(`KERAS_BACKEND=… python -m reproduce.train`, then `reproduce.evaluate --split test`), and
compares test mean AUC, the per-epoch training loss and validation AUC.

The tolerance, and why: the two backends do the same float32 arithmetic in another order. At the
demo's DenseNet121 (120 BatchNorm layers, Adam), such round-off grows into other weights (three
Adam steps at smoke shapes already differ by 4.3e-3 per weight, docs/exactness.md), so after 8
epochs the two runs are as different as two training seeds, not more: a real backend bug (a loss
or an initializer that differs, a layer that does not train) moves the AUC much further or stops
learning. The bound is the 95% range of the difference of two independent runs,
1.96·√2·sd_seeds, with sd_seeds the spread over seeds 0, 1, 2 of the same run in the committed
seed reference (results/reference/demo/seeds/table1_seeds.csv): 0.10 for DenseNet121 + wce.
Both runs must also learn (test mean AUC ≥ 0.60; weighted CE of make demo reaches ~0.7).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from common import cli
from common.provenance import cpu_facts, portable_path, provenance
from data_prep.schema import CLASSES
from reproduce.metrics import mean_auc, roc_auc_per_class
from reproduce.report.predictions import arrays, read_predictions

ROOT = Path(__file__).resolve().parents[1]
SEED_TABLE = ROOT / "results" / "reference" / "demo" / "seeds" / "table1_seeds.csv"
BACKENDS = ("tensorflow", "jax")
LEARNS = 0.60  # test mean AUC both runs must reach


def seed_spread(key: str, table: Path = SEED_TABLE) -> float:
    """The sample sd over seeds of run `key`'s test mean AUC (the AVE rows)."""
    frame = pd.read_csv(table)
    values = frame[(frame["pathology"] == "AVE") & (frame["run"] == key)]["auc"].to_numpy(float)
    if len(values) < 2:
        raise ValueError(f"{table}: fewer than 2 seeds of {key}; run make demo-seeds first")
    return float(np.std(values, ddof=1))


def tolerance(sd_seeds: float) -> float:
    """95% range of the difference of two independent runs with spread sd_seeds each."""
    return 1.96 * np.sqrt(2.0) * sd_seeds


def _run(argv: list[str], backend: str, log: Path) -> float:
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    with log.open("a") as out:
        done = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, env=env, stdout=out,
                              stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} under {backend} failed; see {log}")
    return time.perf_counter() - start


def train_and_evaluate(args, backend: str) -> dict:
    run = args.runs_dir / backend
    run.mkdir(parents=True, exist_ok=True)
    train = _run(["reproduce.train", "--data", str(args.data), "--out", str(run), "--preset", "demo",
                  "--model", args.model, "--loss", args.loss, "--initializer", "numpy"],
                 backend, run / "bench.log")
    evaluate = _run(["reproduce.evaluate", "--run", str(run), "--data", str(args.data), "--split", "test"],
                    backend, run / "bench.log")
    labels, scores = arrays(read_predictions(run, "test"))
    history = pd.read_csv(run / "history.csv")
    print(f"{backend}: trained in {train:.0f} s, evaluated in {evaluate:.0f} s", flush=True)
    return {"run": portable_path(run), "train_s": round(train, 1), "evaluate_s": round(evaluate, 1),
            "test_mean_auc": mean_auc(roc_auc_per_class(labels, scores, CLASSES)),
            "loss_per_epoch": history["loss"].round(6).tolist(),
            "val_mean_auc_per_epoch": history["val_mean_auc"].round(6).tolist()}


def compare(results: dict, sd_seeds: float) -> dict:
    tf_run, jax_run = results["tensorflow"], results["jax"]
    difference = abs(tf_run["test_mean_auc"] - jax_run["test_mean_auc"])
    bound = tolerance(sd_seeds)
    return {"abs_test_mean_auc_difference": difference, "sd_over_seeds": sd_seeds, "bound": bound,
            "first_epoch_loss_relative_difference":
                abs(tf_run["loss_per_epoch"][0] - jax_run["loss_per_epoch"][0]) / tf_run["loss_per_epoch"][0],
            "within_bound": bool(difference <= bound),
            "both_learn": bool(min(tf_run["test_mean_auc"], jax_run["test_mean_auc"]) >= LEARNS)}


def build_parser():
    p = cli.make_parser("bench.backends", __doc__)
    p.add_argument("--data", required=True, type=Path, metavar="SHARDS",
                   help="TFRecord folder of data_prep.build (make demo-shards)")
    p.add_argument("--runs-dir", type=Path, default=Path("results/bench/backends"),
                   help="one run folder per backend is written here")
    p.add_argument("--out", type=Path, default=Path("results/bench/backends.json"), help="JSON file to write")
    p.add_argument("--model", default="densenet121", help="backbone (reproduce.train --model)")
    p.add_argument("--loss", default="wce", help="loss (reproduce.train --loss)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        sd_seeds = seed_spread(f"{args.model}_{args.loss}")
        results = {backend: train_and_evaluate(args, backend) for backend in BACKENDS}
        verdict = compare(results, sd_seeds)
        record = {"what": "bench.backends", "model": args.model, "loss": args.loss, "preset": "demo",
                  "data": portable_path(args.data), "machine": cpu_facts(), "provenance": provenance(),
                  "runs": results, "comparison": verdict}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"test mean AUC: TensorFlow {results['tensorflow']['test_mean_auc']:.4f}, JAX "
              f"{results['jax']['test_mean_auc']:.4f}; |Δ| {verdict['abs_test_mean_auc_difference']:.4f} "
              f"(bound {verdict['bound']:.4f} = 1.96·√2·sd over seeds {sd_seeds:.4f}); wrote {args.out}")
        return 0 if verdict["within_bound"] and verdict["both_learn"] else 1

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())


def backends_section(results: dict) -> str:
    """docs/gpus.md's generated lines (bench.readme) from results/bench/backends.json."""
    record = results.get("backends")
    if not record:
        return "Not yet measured here: `make bench-backends` puts the comparison in this place."
    runs, verdict = record["runs"], record["comparison"]
    rows = [f"{record['model']} + {record['loss']}, demo preset, `--initializer numpy`, on "
            f"{record['machine']['cpu']} ({record['machine']['cpu_count']} cores):", "",
            "| backend | test mean AUC | first-epoch loss | training |", "| --- | --- | --- | --- |"]
    rows += [f"| {name} | {runs[name]['test_mean_auc']:.4f} | {runs[name]['loss_per_epoch'][0]:.4f} | "
             f"{runs[name]['train_s'] / 60:.1f} min |" for name in BACKENDS]
    rows += ["", f"|Δ test mean AUC| = {verdict['abs_test_mean_auc_difference']:.4f}, bound "
             f"{verdict['bound']:.4f} (1.96·√2 × sd over seeds {verdict['sd_over_seeds']:.4f}): "
             f"{'within' if verdict['within_bound'] else 'OUTSIDE'}; both learn (≥ {LEARNS}): "
             f"{'yes' if verdict['both_learn'] else 'NO'}."]
    return "\n".join(rows)
