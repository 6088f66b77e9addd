"""Train and evaluate Table I's runs: every KEY × seed, one after another or one per GPU at a time.

    python -m reproduce.runs --data SHARDS --preset paper --runs-dir runs
        --keys vgg16_wce resnet50_wce densenet121_wce densenet121_ewl
        [--seeds 0 1 2] [--gpus 0,1,2,3] [--split val test] [--steps train evaluate]
        [--run-options RUN=OPTIONS ...] [--dry-run] [-- extra reproduce.train options]

(`make paper [SEEDS="0 1 2"] [GPUS=0,1,2,3]`, `make demo-seeds`.) KEY is <model>_<loss>. Each run
is `python -m reproduce.train` then `python -m reproduce.evaluate --split SPLIT …`, run as
subprocesses through their own CLIs, into RUNS/<key> (no --seeds) or RUNS/<key>_s<seed> (with
--seeds; `--seed <seed>` goes to train, which records it in RUN/config.json). A finished run is
not retrained (train sees it is complete and says so); evaluation is redone (it is cheap).

Without --gpus: one run after the other, output streamed to the terminal and appended to
RUN/train.log and RUN/evaluate_<splits>.log (evaluate_val_test.log by default: validation
predictions for the reports that choose thresholds there, test predictions for Table I). With --gpus: one run per listed GPU at a time, each
process seeing only its GPU (CUDA_VISIBLE_DEVICES) with memory growth on
(TF_FORCE_GPU_ALLOW_GROWTH), its output only in those logs, one status line per start and finish
here. A failed run does not stop the others; at the end, one `error:` line per failed run names
it and its log, and the exit status is 1. This process never imports TensorFlow, so it holds no
GPU itself.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from common import cli
from data_prep.schema import SPLITS
from reproduce import backbones
from reproduce.config import PRESETS
from reproduce.report.predictions import KEY_RE
from reproduce.scheduler import Job, failure_line, run_jobs, say

STEPS = ("train", "evaluate")
# The options this program sets itself for every run; given after `--` they would contradict it.
OWNED = ("--data", "--out", "--model", "--loss", "--preset")


def parse_key(key: str) -> tuple[str, str]:
    """'densenet121_ewl' → ('densenet121', 'ewl'); the loss may hold underscores (ewl_neg)."""
    model, _, loss = key.partition("_")
    if not KEY_RE.match(key) or model not in backbones.names() or not loss:
        raise ValueError(f"--keys {key!r}: expected <model>_<loss> with model one of "
                         f"{', '.join(backbones.names())} (e.g. densenet121_ewl)")
    return model, loss


def parse_gpus(text: str | None) -> list[str]:
    """'0,1,2,3' → ['0', '1', '2', '3']; each listed once."""
    if text is None:
        return []
    gpus = [g.strip() for g in text.split(",")]
    if not all(gpus) or len(set(gpus)) != len(gpus):
        raise ValueError(f"--gpus {text!r}: expected distinct GPU ids separated by commas, e.g. 0,1,2,3")
    return gpus


# Run in a subprocess, so that this process never starts TensorFlow (nor holds a GPU).
_PROBE = ("from common import quiet; quiet.start_tensorflow(); from reproduce.engine import backend; "
          "print(backend.name(), backend.gpu_count())")


def visible_gpus(gpus: list[str]) -> tuple[str, int]:
    """(Keras backend, how many of `gpus` its runtime sees): asked with CUDA_VISIBLE_DEVICES set
    to the list, as the runs will be, in one subprocess (CUDA stops at the first id it does not
    know, so the count says which one that is)."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(gpus)}
    done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ValueError(f"--gpus: could not ask the Keras backend which GPUs it sees ({last})")
    name, count = done.stdout.split()[-2:]
    return name, int(count)


def check_gpus(gpus: list[str]) -> None:
    """Refuse GPU ids the Keras backend does not see, in one line, before any run starts (before:
    `start … on GPU 0`, then training on the CPU, the warning only in train.log)."""
    name, seen = visible_gpus(gpus)
    if seen >= len(gpus):
        return
    listed = ",".join(gpus)
    if seen == 0:
        raise ValueError(f"--gpus {listed}: {name} sees no GPU here, so every run would train on the "
                         "CPU (TensorFlow without CUDA? .venv/bin/pip install -e '.[gpu]', "
                         "docs/gpus.md); leave out --gpus to run one after another")
    raise ValueError(f"--gpus {listed}: {name} sees only the first {seen} of them; GPU id "
                     f"{gpus[seen]} is not a GPU here (CUDA ids count from 0)")


def check_train_options(options: list[str], seeds: list[int] | None, where: str) -> None:
    """Refuse options that would contradict what this program sets for every run."""
    names = {o.split("=", 1)[0] for o in options if o.startswith("--")}
    owned = sorted(names & set(OWNED + (("--seed",) if seeds else ())))
    if owned:
        raise ValueError(f"{where}: {', '.join(owned)} is set by reproduce.runs for every run "
                         "(use --keys, --seeds, --runs-dir, --data, --preset)")


def parse_run_options(items: list[str], names: set[str], seeds) -> dict[str, list[str]]:
    """RUN=OPTIONS (RUN a key or a run folder name, OPTIONS shell-quoted) → {RUN: [options]}."""
    options = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or name not in names:
            raise ValueError(f"--run-options {item!r}: expected RUN=OPTIONS with RUN one of "
                             f"{', '.join(sorted(names))}")
        options[name] = shlex.split(text)
        check_train_options(options[name], seeds, f"--run-options {name}")
    return options


def plan_jobs(args, extra: list[str]) -> list[Job]:
    """One Job per (seed, key), seed-major: with --gpus the first seed of every key runs first."""
    if len(set(args.keys)) != len(args.keys):
        raise ValueError("--keys: a key is listed twice")
    if args.seeds and len(set(args.seeds)) != len(args.seeds):
        raise ValueError("--seeds: a seed is listed twice")
    check_train_options(extra, args.seeds, "options after --")
    pairs = [(key, seed) for seed in (args.seeds or [None]) for key in args.keys]
    dirs = {(k, s): args.runs_dir / (k if s is None else f"{k}_s{s}") for k, s in pairs}
    names = set(args.keys) | {d.name for d in dirs.values()}
    per_run = parse_run_options(args.run_options or [], names, args.seeds)
    jobs = []
    for key, seed in pairs:
        model, loss = parse_key(key)
        run_dir = dirs[key, seed]
        train = [sys.executable, "-m", "reproduce.train", "--data", str(args.data), "--model", model,
                 "--loss", loss, "--preset", args.preset, "--out", str(run_dir),
                 *([] if seed is None else ["--seed", str(seed)]), *extra,
                 *per_run.get(key, []), *per_run.get(run_dir.name, [])]
        evaluate = [sys.executable, "-m", "reproduce.evaluate", "--run", str(run_dir),
                    "--data", str(args.data), "--split", *args.split]
        jobs.append(Job(run_dir, {"train": train, "evaluate": evaluate}, tuple(args.split)))
    return jobs


def build_parser():
    p = cli.make_parser("reproduce.runs", __doc__)
    p.add_argument("--data", required=True, metavar="SHARDS", type=Path, help="TFRecord folder of data_prep.build")
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS), help="training preset of every run")
    p.add_argument("--runs-dir", required=True, type=Path, help="folder of the run folders")
    p.add_argument("--keys", required=True, action="extend", nargs="+", metavar="KEY",
                   help="runs to make, <model>_<loss>, e.g. vgg16_wce densenet121_ewl")
    p.add_argument("--seeds", action="extend", nargs="+", type=int, metavar="SEED",
                   help="one run per key and seed, in RUNS/<key>_s<seed> (default: one run per key, "
                        "RUNS/<key>, the preset's seed)")
    p.add_argument("--gpus", help="GPU ids, comma-separated: one run per GPU at a time "
                                  "(default: one run after another, on what TensorFlow finds)")
    p.add_argument("--split", nargs="+", default=["val", "test"], choices=SPLITS, metavar="SPLIT",
                   help="the splits reproduce.evaluate predicts (val: for the reports that choose "
                        "thresholds or recalibrate there; test: Table I)")
    p.add_argument("--steps", action="extend", nargs="+", choices=STEPS, metavar="STEP",
                   help="train, evaluate or both (default: both, train first)")
    p.add_argument("--run-options", action="extend", nargs="+", metavar="RUN=OPTIONS",
                   help="extra reproduce.train options for one key or one run folder name, "
                        "shell-quoted, e.g. 'vgg16_wce=--batch-size 16'")
    p.add_argument("--dry-run", action="store_true", help="print each run's commands and stop")
    return p


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """(this program's options, reproduce.train options after `--`)."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def main(argv: list[str] | None = None) -> int:
    own, extra = split_argv(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(own)
    steps = [s for s in STEPS if s in (args.steps or STEPS)]  # train always before evaluate

    def body():
        jobs = plan_jobs(args, extra)
        gpus = parse_gpus(args.gpus)
        if gpus and not args.dry_run:
            check_gpus(gpus)
        if args.dry_run:
            for job in jobs:
                for step in steps:
                    print(f"{job.name} {step}: python {shlex.join(job.commands[step][1:])}")
            return 0
        results = run_jobs(jobs, steps, gpus)
        failed = [r for r in results if r.failed_step is not None]
        for r in failed:
            print(failure_line(r), file=sys.stderr)
        say(f"{len(results) - len(failed)} of {len(results)} runs done"
            + (f"; failed: {', '.join(r.job.name for r in failed)}" if failed else ""))
        return 1 if failed else 0

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
