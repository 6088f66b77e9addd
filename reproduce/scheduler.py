"""Running Table I's jobs: each run's steps (train, then evaluate) as subprocesses of their own
CLIs, one after another (streamed to the terminal and appended to the run's logs) or one per
GPU at a time (each process seeing only its GPU; output in the logs, one status line per start
and finish here). A failed run does not stop the others; Ctrl-C stops the running subprocesses
and starts no other. `reproduce.runs` (the program) plans the jobs and calls `run_jobs`. Never
imports TensorFlow, so the process that schedules holds no GPU itself.
"""
from __future__ import annotations

import dataclasses
import json
import os
import queue
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Job:
    """One run: its folder (named KEY or KEY_s<seed>), the argv of each step, the splits evaluated
    (the last one's mean AUC is shown when the run is done)."""
    run_dir: Path
    commands: dict  # step -> argv
    splits: tuple

    @property
    def name(self) -> str:
        return self.run_dir.name

    def log(self, step: str) -> Path:
        return self.run_dir / ("train.log" if step == "train" else f"evaluate_{'_'.join(self.splits)}.log")


@dataclasses.dataclass
class Result:
    job: Job
    failed_step: str | None = None  # None: every step succeeded
    status: int = 0
    seconds: float = 0.0


def say(text: str) -> None:
    """One status line on the terminal: `[runs] HH:MM:SS text`."""
    print(f"[runs] {time.strftime('%H:%M:%S')} {text}", flush=True)


class Runner:
    """Runs jobs' steps as subprocesses; remembers the live ones so Ctrl-C can stop them all."""

    def __init__(self, steps, stream: bool):
        self.steps, self.stream = steps, stream
        self.live: set[subprocess.Popen] = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def say(self, text: str) -> None:
        with self.lock:
            say(text)

    def step(self, argv: list[str], env: dict, log: Path) -> int:
        """One subprocess; its output appended to `log` (and, streaming, to the terminal)."""
        with open(log, "a", encoding="utf-8", errors="replace") as fh:
            fh.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(argv[1:])}"
                     f" (CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES', 'unset')})\n")
            fh.flush()
            out = subprocess.PIPE if self.stream else fh
            proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    text=True, errors="replace")
            with self.lock:
                self.live.add(proc)
            try:
                if self.stream:  # tee: the terminal as before, and the log
                    for line in proc.stdout:
                        sys.stdout.write(line)
                        sys.stdout.flush()
                        fh.write(line)
                return proc.wait()
            finally:
                with self.lock:
                    self.live.discard(proc)

    def run(self, job: Job, gpu: str | None) -> Result:
        result, start = Result(job), time.monotonic()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if gpu is not None:  # each process sees only its GPU and takes memory as it needs it
            env.update(CUDA_VISIBLE_DEVICES=gpu, TF_FORCE_GPU_ALLOW_GROWTH="true")
        if "train" not in self.steps and not job.run_dir.is_dir():
            result.failed_step, result.status = "evaluate", 1
            self.say(finish_line(result))
            return result
        job.run_dir.mkdir(parents=True, exist_ok=True)
        self.say(f"start {job.name}" + (f" on GPU {gpu}" if gpu is not None else "")
                 + f" ({', '.join(self.steps)}; log {job.log(self.steps[0])})")
        for step in self.steps:
            if self.stopping.is_set():
                result.failed_step, result.status = step, 130
                break
            status = self.step(job.commands[step], env, job.log(step))
            if status != 0:
                result.failed_step, result.status = step, status
                break
        result.seconds = time.monotonic() - start
        self.say(finish_line(result))
        return result

    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            for proc in self.live:
                proc.terminate()


def finish_line(result: Result) -> str:
    """'done RUN in N s, test mean AUC X' (from RUN/metrics_<split>.json) or 'FAILED RUN (step, exit)'."""
    job, split = result.job, result.job.splits[-1]
    if result.failed_step is not None:
        return f"FAILED {job.name} ({result.failed_step}, exit {result.status})"
    try:
        value = json.loads((job.run_dir / f"metrics_{split}.json").read_text()).get("mean_auc")
    except (OSError, json.JSONDecodeError):
        value = None
    auc = f", {split} mean AUC {value:.4f}" if isinstance(value, (int, float)) else ""
    return f"done {job.name} in {result.seconds:.0f} s{auc}"


def last_error(log: Path) -> str:
    """The log's last `error:` line (the CLIs' one-line errors), else its last line."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["empty log"])[-1]


def failure_line(result: Result) -> str:
    """One line naming a failed run, the step, its log and the log's error."""
    job, step = result.job, result.failed_step
    if step == "evaluate" and not job.run_dir.is_dir():
        return f"error: run {job.name}: {job.run_dir} does not exist (train it first: --steps train)"
    log = job.log(step)
    return (f"error: run {job.name} failed in {step} (exit {result.status}); log {log}: "
            f"{last_error(log)}")


def run_jobs(jobs: list[Job], steps, gpus: list[str]) -> list[Result]:
    """Sequentially (no GPUs: streamed), or one job per GPU at a time (logged). Ctrl-C stops
    the running subprocesses and starts no other."""
    runner = Runner(steps, stream=not gpus)
    if not gpus:
        try:
            return [runner.run(job, None) for job in jobs]
        except KeyboardInterrupt:
            runner.stop()
            raise
    free: queue.Queue = queue.Queue()
    for gpu in gpus:
        free.put(gpu)

    def on_free_gpu(job):
        gpu = free.get()
        try:
            return runner.run(job, gpu)
        finally:
            free.put(gpu)

    with ThreadPoolExecutor(max_workers=len(gpus)) as pool:
        futures = [pool.submit(on_free_gpu, job) for job in jobs]
        try:
            return [f.result() for f in futures]
        except KeyboardInterrupt:
            runner.stop()
            for f in futures:
                f.cancel()
            raise
