"""What `--jit-compile` and `--steps-per-execution` do to Model.fit img/s, side by side.

One model per setting, each compiled as `reproduce.train` compiles it (`timing.compiled_model`),
all fed by the same training pipeline; after each model's first (tracing / XLA compiling) fit,
the settings are timed in turn, `repeats` rounds, so that machine noise hits them alike. On a CPU
these are the demo-scale numbers (Keras' "auto" is XLA off there); the GPU's come from
`make bench-gpu` (bench/gpu.py).
"""
from __future__ import annotations

import statistics
import time

from bench.timing import compiled_model, fit_rates
from reproduce.data import endless_training_dataset


def settings(steps_per_execution: int) -> dict[str, tuple[str, int]]:
    """name -> (jit_compile, steps_per_execution); "baseline" is what `make demo` runs on a CPU
    (Keras' auto = XLA off there, one step per call)."""
    return {"baseline": ("off", 1), "steps_per_execution": ("off", steps_per_execution),
            "xla": ("on", 1)}


def switch_rates(data_dir, config, manifest, steps: int, repeats: int, steps_per_execution: int = 8,
                 baseline=None) -> dict:
    """{setting: {jit_compile, steps_per_execution, img_s (median), runs, compile_s}, ratios}.

    `baseline`: an already compiled and traced model with the baseline's settings (bench.train's
    part 1 model), which saves one tracing of the backbone. Each measurement is one fit of
    steps/2 untimed + 2 × steps/2 timed steps (steps/2 a multiple of steps_per_execution)."""
    data = endless_training_dataset(data_dir, config)
    chosen = settings(steps_per_execution)
    models, out = {}, {}
    for name, (jit, per_execution) in chosen.items():
        start = time.perf_counter()
        if name == "baseline" and baseline is not None:
            models[name], first = baseline, None  # traced already, in part 1
        else:
            models[name] = compiled_model(config.override(jit_compile=jit, steps_per_execution=per_execution),
                                          manifest)
            models[name].fit(data, epochs=1, steps_per_epoch=per_execution, verbose=0, shuffle=False)
            first = time.perf_counter() - start
        out[name] = {"jit_compile": jit, "steps_per_execution": per_execution, "compile_s": first, "runs": []}
    for _ in range(repeats):
        for name, model in models.items():
            out[name]["runs"].extend(fit_rates(model, data, steps // 2, config.batch_size, timed_epochs=2))
    for entry in out.values():
        entry["img_s"] = statistics.median(entry["runs"])
    base = out["baseline"]["img_s"]
    ratios = {f"{name}_vs_baseline": out[name]["img_s"] / base for name in chosen if name != "baseline"}
    return {**out, "ratios": ratios, "model": config.model, "image_size": config.image_size,
            "batch_size": config.batch_size, "steps": steps, "repeats": repeats}
