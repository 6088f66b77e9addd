"""Which data a run was trained on, and whether other shards (or another run's) are the same.

`reproduce.train` records in RUN/config.json the training manifest's SHA-256 and its summary
(`data_prep.shards.manifest_summary`: split method and seed, size, encoding, whether synthetic,
per split the images, patients and a digest of the shard files). Everything that reads a run
with data checks it here, before anything is written:
- `check_trained_on`: evaluate, localize and the ablation refuse shards that are not the run's
  training build (a run evaluated on a rebuilt split can have its training patients in "test"),
  unless asked on purpose (`--other-data`, recorded in their outputs);
- `check_same_data`: a report refuses runs trained on different builds;
- `synthetic`: whether runs were trained on the phantom, as a fact of the data (manifest.json),
  not of a folder name.
No TensorFlow: the report side uses it too.
"""
from __future__ import annotations

import sys
from pathlib import Path

from data_prep.shards import manifest_summary, summary_differences


class DataMismatch(ValueError):
    """Shards or runs that are not the data a run was trained on; one-line message."""


def data_differences(config: dict, manifest_sha256: str, summary: dict | None) -> list[str] | None:
    """None when `config`'s training data are these (the same manifest, or one that describes
    the same build); else how they differ, in words."""
    if config.get("manifest_sha256") == manifest_sha256:
        return None
    if "data_summary" not in config or summary is None:
        return ["manifest.json differs (a run of older code records only its SHA-256)"]
    return summary_differences(config["data_summary"], summary) or None


def check_trained_on(config: dict, run, data_dir, manifest: dict, manifest_sha256: str,
                     other_data: bool) -> dict:
    """The record written beside the outputs; DataMismatch if SHARDS are not the run's training
    build and `other_data` is not set. A run from before the check (no manifest recorded) is
    checked by nothing: one warning line says so."""
    record = {"manifest_sha256": manifest_sha256, "other_data": bool(other_data)}
    if "manifest_sha256" not in config:
        print(f"warning: {run}/config.json records no training data (a run of older code): "
              f"cannot check that {data_dir} holds its splits", file=sys.stderr)
        return {**record, "trained_on_these_data": None}
    differences = data_differences(config, manifest_sha256, manifest_summary(manifest))
    if differences and not other_data:
        raise DataMismatch(f"{data_dir}/manifest.json: not the data {run} was trained on "
                           f"({'; '.join(differences)}); to use other data on purpose, pass "
                           "--other-data (recorded in the outputs)")
    if differences:
        print(f"note: {run}: other data than its training ({'; '.join(differences)}), as "
              "--other-data asks", file=sys.stderr)
    return {**record, "trained_on_these_data": not differences, "differences": differences or []}


def check_same_data(configs: dict) -> None:
    """DataMismatch unless every run ({label: config.json}) was trained on the same build. Runs
    that record no training data (older code) are skipped with one warning line."""
    known = {label: c for label, c in configs.items() if "manifest_sha256" in c}
    unknown = sorted(str(label) for label in set(configs) - set(known))
    if unknown:
        print(f"warning: run(s) {', '.join(unknown)} record no training data (runs of older "
              "code): not checked against the others", file=sys.stderr)
    if not known:
        return
    first, reference = next(iter(known.items()))
    for label, config in known.items():
        differences = data_differences(reference, config["manifest_sha256"], config.get("data_summary"))
        if differences:
            raise DataMismatch(f"runs {first} and {label} were trained on different data "
                               f"({'; '.join(differences)}); report runs of one build together")


def run_synthetic(config: dict) -> bool | None:
    """Whether a run was trained on the phantom: config.json `synthetic` (from manifest.json);
    for runs of older code, whether a path it records names the phantom; None = not known."""
    if isinstance(config.get("synthetic"), bool):
        return config["synthetic"]
    if any(isinstance(v, str) and "phantom" in v.lower() for v in config.values()):
        return True
    return None


def synthetic(configs: dict, asserted: bool = False) -> bool:
    """Whether the runs' results are synthetic, for labelling every output. `asserted`: the
    caller's --synthetic (kept for old runs that record nothing); it cannot make real data
    synthetic, and runs of both kinds together are refused."""
    facts = {label: run_synthetic(config) for label, config in configs.items()}
    real = sorted(str(label) for label, fact in facts.items() if fact is False)
    fake = sorted(str(label) for label, fact in facts.items() if fact is True)
    if real and fake:
        raise DataMismatch(f"runs {fake[0]} (synthetic data) and {real[0]} (real data) cannot be "
                           "reported together")
    if asserted and real:
        raise DataMismatch(f"--synthetic, but run {real[0]} was trained on real data (its "
                           "manifest.json says so)")
    return bool(fake) or asserted


# §IV.B's settings, which Table I's numbers assume (the model and loss are a run's own choice).
PAPER_SETTINGS = ("image_size", "batch_size", "optimizer", "learning_rate", "epochs",
                  "steps_per_epoch", "weights", "horizontal_flip")


def departures(config: dict, run) -> list[str]:
    """How a run departs from what Table I assumes: each of §IV.B's settings it changed (a demo
    or rehearsal run, a shortened one), and whether it finished its epochs. [] for a paper run."""
    from reproduce.config import paper

    reference = paper().to_dict()
    found = [f"{k} {config[k]} (paper {reference[k]})" for k in PAPER_SETTINGS
             if k in config and config[k] != reference[k]]
    if "epochs" in config and (Path(run) / "history.csv").is_file():
        done = trained_epochs(run)
        if done < config["epochs"]:
            found.append(f"unfinished: {done} of {config['epochs']} epochs trained")
    return found


def trained_epochs(run_dir) -> int:
    """Epochs RUN/history.csv records (one row per completed epoch; 0 without the file)."""
    path = Path(run_dir) / "history.csv"
    if not path.is_file():
        return 0
    with open(path) as fh:
        return max(0, sum(1 for line in fh if line.strip()) - 1)  # less the header
