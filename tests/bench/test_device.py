"""The device benchmark without TensorFlow (bench/device.py, bench/device.sh): its --tiny CPU dry
run in processes where `import tensorflow` fails (every backbone and precision measured or skipped
with its reason, the numbers positive, the projection present, nothing even trying TensorFlow);
the compile call that stands in for reproduce.train's; the batch search; the refusal to run the
full benchmark without a GPU; and the docs' gpu-jax section from its JSON.
Runtime: ~65 s for the dry run (one process per task under a 60 s budget), ~15 s the rest."""
import json
import os
import re
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

from bench import device, device_report, readme

ROOT = Path(__file__).resolve().parents[2]
# On PYTHONPATH first, so the workers started by bench/device.py inherit it too; it notes who tried.
BLOCKER = ("import os, traceback\n"
           "with open(os.environ['NO_TF_LOG'], 'a') as fh:\n"
           "    fh.write(''.join(traceback.format_stack()) + '\\n')\n"
           "raise ImportError('tensorflow is blocked in this test')\n")
REASONS = ("skipped", "error", "task_error")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("device")
    (root / "blocker" / "tensorflow").mkdir(parents=True)
    (root / "blocker" / "tensorflow" / "__init__.py").write_text(BLOCKER)
    path = os.pathsep.join(filter(None, [str(root / "blocker"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "NO_TF_LOG": str(root / "tf_attempts.log"), "PY": sys.executable,
           "KERAS_BACKEND": "tensorflow"}  # device.sh must set jax itself
    out = root / "gpu_cpu_jax.json"
    done = subprocess.run(["bash", "bench/device.sh", "--tiny", "--out", str(out), "--work", str(root / "work")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {"result": json.loads(out.read_text()), "stdout": done.stdout, "root": root, "out": out}


def _measured_or_named(e: dict, where: str) -> bool:
    """True when measured (every number checked positive); False when skipped or failed with a reason."""
    if "img_s" in e:
        assert e["img_s"] > 0 and e["first_step_s"] > 0 and e["build_s"] > 0 and min(e["runs"]) > 0, where
        return True
    reasons = [e[k] for k in REASONS if k in e]
    assert reasons and all(isinstance(r, str) and r for r in reasons), f"{where}: neither measured nor a reason: {e}"
    return False


# In make test (issue 20: the TF-free benchmark's dry run passes there); the docs test that
# reuses the dry run is in the slow tier, so a make test worker runs the dry run once.
def test_tiny_dry_run_needs_no_tensorflow_and_writes_every_row(dry_run):
    r = dry_run["result"]
    assert not (dry_run["root"] / "tf_attempts.log").exists(), "something tried to import TensorFlow"
    assert r["dry_check"] is True and r["keras_backend"] == r["machine"]["keras_backend"] == "jax"
    assert r["machine"]["platform"] == "cpu" and r["device"] == "cpu"
    assert set(r["backbones"]) == {"tiny"} and set(r["backbones"]["tiny"]) == {"bf16", "fp32", "fp16"}
    for precision, e in r["backbones"]["tiny"].items():
        if _measured_or_named(e, precision):
            assert e["batch_size"] == 4 and e["policy"] == device.device_worker.PRECISIONS[precision]
            v = e["validation"]
            assert (v["img_s"] > 0 and v["first_pass_s"] > 0) if "img_s" in v else any(k in v for k in REASONS)
    # the first task starts with the whole budget: it is always measured, validation included
    assert r["backbones"]["tiny"]["bf16"]["validation"]["img_s"] > 0
    mb = r["max_batch"]
    fitted = [t["batch_size"] for t in mb["tries"] if _measured_or_named(t, f"max batch {t['batch_size']}")]
    assert mb["cap"] == 16 and (mb["tries"] or "skipped" in mb)
    assert mb["largest_fitting"] == (max(fitted) if fitted else mb["largest_fitting"])
    assert r["ewl"]["backbone"] == "tiny"
    _measured_or_named(r["ewl"], "ewl")
    p = r["table1_projection"]
    assert {"sequential_hours", "one_per_gpu_hours", "per_run_hours", "missing", "per_precision"} <= set(p)
    assert p["missing"] == [] and p["sequential_hours"] > p["one_per_gpu_hours"] > 0
    assert re.fullmatch(r"[0-9a-f]{64}", r["provenance"]["code_sha256"])
    assert r["provenance"]["libraries"]["jax"] and r["provenance"]["libraries"]["keras"]
    assert r["started_utc"] <= r["finished_utc"] and r["settings"]["budget_s"] == 60
    assert "dry check (--tiny)" in dry_run["stdout"] and "Table I (4 runs x 50 epochs" in dry_run["stdout"]


@pytest.mark.slow
def test_docs_section_from_a_device_json_and_dry_runs_left_out(dry_run, tmp_path):
    results = tmp_path / "bench"
    results.mkdir()
    (results / "gpu_cpu_jax.json").write_text(dry_run["out"].read_text())
    loaded = readme.load(results)
    assert loaded["gpu_jax"] == [] and loaded["gpu"] == []  # a dry run is not a result
    assert device_report.JAX_NOT_RUN in readme.gpu_jax(loaded)
    (results / "gpu_cpu_jax.json").write_text(json.dumps({**dry_run["result"], "dry_check": False}))
    loaded = readme.load(results)
    assert loaded["gpu"] == [] and len(loaded["gpu_jax"]) == 1  # never read as a bench/gpu.py result
    text = readme.gpu_jax(loaded)
    assert "| cpu | tiny | bf16 | " in text and "whole Table I" in text and device_report.JAX_NOT_RUN not in text


def test_compile_is_the_one_reproduce_train_makes():
    """compile_as_train stands in for reproduce.train.compile_for_training (which imports TensorFlow)."""
    from bench.device_worker import compile_as_train
    from reproduce.config import paper, smoke
    from reproduce.engine.training import compile_for_training

    class Recorder:
        trainable_variables = []

        def compile(self, **kwargs):
            self.kwargs, self.optimizer = kwargs, kwargs["optimizer"]

    for config in (paper(), smoke(), paper().override(optimizer="sgd", jit_compile="off", steps_per_execution=4)):
        ours, theirs = Recorder(), Recorder()
        compile_as_train(ours, config, "LOSS")
        compile_for_training(theirs, config, "LOSS")
        a, b = ours.kwargs.pop("optimizer"), theirs.kwargs.pop("optimizer")
        unnamed = [{k: v for k, v in o.get_config().items() if k != "name"} for o in (a, b)]  # adam, adam_1
        assert type(a) is type(b) and unnamed[0] == unnamed[1]
        assert a.built and b.built  # the optimizer's slots exist before the first step, in both
        assert ours.kwargs == theirs.kwargs


def _bench(max_batch_cap=1024, fail=lambda batch: {"error": "boom", "out_of_memory": False}, fits=256):
    args = Namespace(budget_s=100, tiny=False, backbones=["densenet121"], precisions=["bf16"],
                     max_batch_cap=max_batch_cap)
    bench = device.Bench(args, device.SIZES[False], Path("unused"), write=lambda b: None)
    bench.result["backbones"]["densenet121"]["bf16"] = {"img_s": 100.0}
    tried = []

    def task(name, backbone, precision, batch=None, **kwargs):
        tried.append(batch)
        return {"img_s": 1.0} if batch <= fits else fail(batch)

    bench.task = task
    return bench, tried


def test_batch_search_goes_down_from_the_cap_past_out_of_memory_only():
    oom = lambda batch: {"error": "RESOURCE_EXHAUSTED: Out of memory", "out_of_memory": True}  # noqa: E731
    bench, tried = _bench(fail=oom)
    bench.max_batch()
    assert tried == [1024, 512, 256] and bench.result["max_batch"]["largest_fitting"] == 256
    assert bench.result["max_batch"]["precision"] == "bf16" and not bench.result["max_batch"]["at_cap"]
    bench, tried = _bench(max_batch_cap=1000, fits=2048)
    bench.max_batch()
    assert tried == [512] and bench.result["max_batch"]["largest_fitting"] == 512
    bench, tried = _bench()  # an error that is not out of memory ends the search, unanswered
    bench.max_batch()
    assert tried == [1024] and bench.result["max_batch"]["largest_fitting"] is None
    bench, tried = _bench(fail=oom, fits=0)  # nothing above 32 fits: the training batch did
    bench.max_batch()
    assert tried == [1024, 512, 256, 128, 64] and bench.result["max_batch"]["largest_fitting"] == 32


def test_slug_names_the_file_as_bench_gpu_does():
    assert device.slug("NVIDIA H200") == "NVIDIA_H200" and device.slug("cpu") == "cpu"
    assert device.slug("NVIDIA H100 80GB HBM3") == "NVIDIA_H100_80GB_HBM3"


def test_a_dry_run_needs_out_and_the_full_run_needs_a_gpu(tmp_path, capsys):
    with pytest.raises(SystemExit) as usage:
        device.main(["--tiny"])
    assert usage.value.code == 2 and "--tiny needs --out" in capsys.readouterr().err
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-m", "bench.device", "--work", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.startswith("error: JAX sees no GPU (platform cpu)")
    assert done.stderr.count("\n") == 1 and not list((ROOT / "results" / "bench").glob("gpu_cpu*"))


def test_worker_refuses_another_keras_backend(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run([sys.executable, "-m", "bench.device_worker", "--rows", str(tmp_path / "r.jsonl"),
                           "--deadline", "0", "--probe"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and done.stderr == "error: KERAS_BACKEND=jax is required (got 'tensorflow')\n"
