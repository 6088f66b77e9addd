"""Several training seeds per Table I run: which run is which seed, and the statistics over seeds.

The paper reports one training run per Table I cell (§IV.D) and reads 0.8430 vs 0.8004 (mean AUC)
as Eq. (2)'s gain. A cell also moves when nothing but the training seed changes, which the
patient-bootstrap CIs do not capture (they are test-set sampling only). So the report accepts the
same KEY several times, one run per seed, and here:

- `group_by_seed`: each run's seed is its config.json `seed`; two runs of one key with the same
  seed, or that differ in anything but the seed, are refused;
- `align_seed_runs`: every run of every key on the same images (`predictions.align_runs`);
- `seed_summary`: mean and sample sd (n − 1) over seeds, our choice;
- `paired_difference`: seed k of one run with seed k of the other, mean difference and its
  Student-t interval (our choice: the seeds are the replicates, n − 1 degrees of freedom);
- `delong_agreement`: how many seeds' DeLong tests are significant with the same sign.

Pure NumPy and scipy.stats (the t quantile); no TensorFlow.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import stats

from reproduce.config import field_names
from reproduce.report.predictions import ReportError, align_runs

ALPHA = 0.05  # our choice: 95% t-intervals; DeLong "significant" = two-sided p < 0.05
# What must be equal in all runs of one key besides the Config fields (the seed excepted): the
# preset they started from and the data they were trained on.
SAME_IN_EVERY_SEED = ("preset", "manifest_sha256")


def run_seed(config: dict) -> int | None:
    """The training seed a run's config.json records (None when it records none)."""
    seed = config.get("seed")
    return None if seed is None else int(seed)


def run_label(key: str, seed: int | None, n_runs: int) -> str:
    """A run's name in outputs: KEY when the key has one run, KEY_s<seed> when it has several."""
    return key if n_runs == 1 else f"{key}_s{seed}"


def group_by_seed(runs: dict[str, list[Path]], configs: dict[Path, dict]) -> dict[str, dict]:
    """{key: [run dirs]} → {key: {seed: run dir}} with seeds ascending; refuses a repeated key
    whose runs lack a seed, share a seed, or differ in more than the seed (config.json)."""
    grouped = {}
    for key, paths in runs.items():
        by_seed: dict = {}
        for run in paths:
            seed = run_seed(configs[run])
            if len(paths) > 1 and seed is None:
                raise ReportError(f"{Path(run) / 'config.json'}: no 'seed'; needed to tell the runs "
                                  f"of {key} apart")
            if seed in by_seed:
                raise ReportError(f"runs {by_seed[seed]} and {run} of {key} both have seed {seed} "
                                  "(config.json); give each seed once")
            by_seed[seed] = run
        _check_only_seed_differs(key, by_seed, configs)
        grouped[key] = {s: by_seed[s] for s in sorted(by_seed, key=lambda s: (s is not None, s))}
    return grouped


def _check_only_seed_differs(key: str, by_seed: dict, configs: dict) -> None:
    compared = [f for f in field_names() if f != "seed"] + list(SAME_IN_EVERY_SEED)
    first, *others = by_seed.values()
    for run in others:
        a, b = configs[first], configs[run]
        diff = [f"{f} {a[f]!r} vs {b[f]!r}" for f in compared if f in a and f in b and a[f] != b[f]]
        if diff:
            raise ReportError(f"runs {first} and {run} of {key} differ in more than the seed "
                              f"({'; '.join(diff[:3])}; config.json): not seeds of one run")


def align_seed_runs(frames: dict[str, dict], runs: dict[str, dict], split: str) -> dict[str, dict]:
    """`predictions.align_runs` over every run of every key (its error names the runs);
    {key: {seed: frame}} in, the same sorted by image_index out."""
    flat, paths = {}, {}
    for key, by_seed in frames.items():
        for seed, frame in by_seed.items():
            label = run_label(key, seed, len(by_seed))
            flat[label], paths[label] = frame, runs[key][seed]
    aligned = align_runs(flat, paths, split)
    return {key: {seed: aligned[run_label(key, seed, len(by_seed))] for seed in by_seed}
            for key, by_seed in frames.items()}


def as_seed_groups(aligned: dict) -> dict[str, dict]:
    """{key: frame} (one run per key, seed unknown) or {key: {seed: frame}} → the latter."""
    return {k: v if isinstance(v, dict) else {None: v} for k, v in aligned.items()}


# --- statistics over seeds (pure functions of AUC arrays) ------------------------------------------
def seed_summary(values) -> dict:
    """Mean, sample sd (n − 1; NaN for one seed), min, max, n of one cell's AUCs over seeds.

    An undefined AUC (a class without positives: NaN in every seed) gives NaN everywhere."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or not np.isfinite(v).all():
        nan = float("nan")
        return {"mean": nan, "sd": nan, "min": nan, "max": nan, "n": int(v.size)}
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else float("nan"),
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def t_quantile(n: int, alpha: float = ALPHA) -> float:
    """Two-sided Student-t quantile t_{1−α/2, n−1} (NaN for n < 2)."""
    return float(stats.t.ppf(1 - alpha / 2, n - 1)) if n >= 2 else float("nan")


def paired_difference(a, b, alpha: float = ALPHA) -> dict:
    """Differences a_k − b_k of runs paired by seed: their mean, sd (n − 1) and the Student-t
    interval mean ± t_{1−α/2, n−1}·sd/√n (NaN with one pair: one pair has no spread)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    summary = seed_summary(d)
    half = t_quantile(d.size, alpha) * summary["sd"] / np.sqrt(d.size) if d.size else float("nan")
    return {"n_pairs": int(d.size), "mean_difference": summary["mean"],
            "sd_difference": summary["sd"], "t_low": float(summary["mean"] - half),
            "t_high": float(summary["mean"] + half)}


def delong_agreement(tests: list[dict], mean_difference: float, alpha: float = ALPHA) -> dict:
    """Of the seeds' DeLong tests ({"p_value", "difference"} each): how many are significant
    (p < alpha) with the sign of the mean paired difference, and how many with the other sign."""
    sign = np.sign(mean_difference) if np.isfinite(mean_difference) else 0.0
    significant = [t for t in tests if np.isfinite(t["p_value"]) and t["p_value"] < alpha]
    same = sum(1 for t in significant if sign != 0 and np.sign(t["difference"]) == sign)
    return {"delong_n_tests": len(tests), "delong_n_significant_same_sign": same,
            "delong_n_significant_opposite": len(significant) - same}


def seeds_text(seeds) -> str:
    """'0, 1, 2' (or '?' for a run whose config records no seed)."""
    return ", ".join("?" if s is None else str(s) for s in seeds)

