"""Your demo beside ours: what `make demo` just wrote (results/demo/, not tracked by git) against
the committed copy (results/reference/demo/) and the machine that made it.

    python -m reproduce.report.reference compare --ours results/demo --reference results/reference/demo
    python -m reproduce.report.reference save --ours results/demo --reference results/reference/demo

`compare` (the last step of `make demo`) prints whether every committed file was reproduced byte
for byte and, where not, how far Table I moved: the largest per-class |ΔAUC| and each run's mean
AUC beside the reference's. Training is bit-exact on one kind of CPU only: another instruction
set (AVX2 vs AVX-512) or core count rounds differently inside oneDNN, and the difference grows
through training (docs/demo.md, 'Same machine, same bytes'). So `compare` informs and exits 0; `--strict` exits 1
unless everything matches. Your results are never committed over ours by accident: results/demo/
is ignored by git, and only `save` writes the reference.
`save` replaces REFERENCE with every file of OURS except runs/ (the checkpoints) and writes
REFERENCE/reference.json: the machine (CPU, instruction sets, cores), the provenance (code version,
libraries) and each file's SHA-256.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd

from common import cli
from common.checksums import sha256_file
from common.provenance import cpu_facts, describe_cpu, portable_path, provenance

META = "reference.json"
SKIP = ("runs",)  # checkpoints and predictions: big, and remade by make demo
# What is compared: the tables and figures. The JSON files record how they were made (code
# version, paths), which changes with every commit without changing a number.
RESULT_SUFFIXES = (".csv", ".md", ".png", ".pdf")


class ReferenceError(ValueError):
    """A folder to compare is missing or holds no Table I."""


def result_files(folder: Path) -> dict[str, str]:
    """{path relative to folder: SHA-256} of every file but runs/ and reference.json."""
    files = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and relative.parts[0] not in SKIP and relative.as_posix() != META:
            files[relative.as_posix()] = sha256_file(path)
    return files


def table1_difference(ours: Path, reference: Path) -> dict:
    """{"max_abs_auc": largest |ΔAUC| over Table I's cells, "mean_auc": {run: (ours, reference)}}
    over the runs and classes both table1.csv files hold."""
    frames = []
    for folder in (ours, reference):
        path = folder / "table1.csv"
        if not path.is_file():
            raise ReferenceError(f"{path}: no Table I (run make demo first)")
        frames.append(pd.read_csv(path, index_col="pathology"))
    mine, theirs = frames
    runs = [c for c in theirs.columns if c in mine.columns]
    rows = [r for r in theirs.index if r in mine.index]
    delta = (mine.loc[rows, runs] - theirs.loc[rows, runs]).abs()
    mean = {run: (float(mine.loc["AVE", run]), float(theirs.loc["AVE", run])) for run in runs
            if "AVE" in rows}
    return {"max_abs_auc": float(delta.to_numpy().max()) if delta.size else float("nan"), "mean_auc": mean}


def compare(ours: Path, reference: Path) -> dict:
    """What `compare` prints, as data: the tables and figures both folders hold, identical or
    not; those only the reference holds (e.g. make ablation's, after make demo); Table I's
    difference; the reference's machine and provenance (reference.json)."""
    if not reference.is_dir():
        raise ReferenceError(f"{reference}: no reference folder")
    theirs, mine = result_files(reference), result_files(ours)
    theirs = {f: d for f, d in theirs.items() if f.endswith(RESULT_SUFFIXES)}
    meta_path = reference / META
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    both = [f for f in theirs if f in mine]
    return {"compared": len(both),
            "identical": sorted(f for f in both if mine[f] == theirs[f]),
            "differ": sorted(f for f in both if mine[f] != theirs[f]),
            "missing": sorted(f for f in theirs if f not in mine),
            "table1": table1_difference(ours, reference), "reference_meta": meta}


def _made_on(meta: dict) -> str:
    code = meta.get("provenance", {}).get("code", {}).get("git_commit", "unknown")[:7]
    return f"{describe_cpu(meta.get('machine', {}))}, code {code}"


def summary_lines(result: dict, ours: Path, reference: Path) -> list[str]:
    n, same = result["compared"], len(result["identical"])
    head = f"{ours} vs the committed {reference} (made on {_made_on(result['reference_meta'])})"
    lines = [f"{head}: all {n} tables and figures identical, byte for byte"]
    if same < n:
        table = result["table1"]
        means = ", ".join(f"{run} {a:.4f} (reference {b:.4f})" for run, (a, b) in table["mean_auc"].items())
        lines = [f"{head}: {same} of {n} tables and figures identical; Table I max |ΔAUC| "
                 f"{table['max_abs_auc']:.4f}; mean AUC {means}"]
    if result["missing"]:
        names = result["missing"]
        shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
        lines.append(f"{len(names)} more only in the reference ({shown}): make ablation and make "
                     "demo-seeds write those")
    if same == n:
        return lines
    lines.append(f"this machine: {describe_cpu(cpu_facts())}. Training is bit-exact on one kind of CPU "
                 "only; another one rounds differently and the runs drift apart (docs/demo.md, "
                 "'Same machine, same bytes').")
    return lines


def _folder(name: str) -> str | None:
    """The top-level folder of a result file (`predict`, `seeds`, `configs`), None at the top."""
    parts = Path(name).parts
    return parts[0] if len(parts) > 1 else None


def save(ours: Path, reference: Path) -> dict:
    """Copy the result files of `ours` into `reference` and write reference.json. Top-level files
    the reference holds and `ours` does not (make ablation's when only make demo ran) stay, with
    their recorded hashes, and so does a folder `ours` does not write (make demo-seeds' seeds/): a
    save never deletes a result it did not regenerate. A folder `ours` writes is replaced whole:
    `predict/cam/` holds each image's top classes, so an old model's overlays would outlive it."""
    files = result_files(ours)
    if "table1.csv" not in files:
        raise ReferenceError(f"{ours / 'table1.csv'}: no Table I to save (run make demo first)")
    kept = {}
    if (reference / META).is_file():
        recorded = json.loads((reference / META).read_text()).get("sha256", {})
        written = {_folder(name) for name in files} - {None}
        for name in recorded:
            if name not in files and _folder(name) in written:
                (reference / name).unlink(missing_ok=True)
        kept = {name: digest for name, digest in recorded.items()
                if name not in files and _folder(name) not in written and (reference / name).is_file()}
    for name in files:
        (reference / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ours / name, reference / name)
    meta = {"made_from": portable_path(ours), "machine": cpu_facts(), "provenance": provenance(),
            "sha256": dict(sorted({**kept, **files}.items())), "kept_from_before": sorted(kept)}
    (reference / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def build_parser():
    p = cli.make_parser("reproduce.report.reference", __doc__)
    p.add_argument("what", choices=("compare", "save"), help="compare OURS with REFERENCE, or save OURS as it")
    p.add_argument("--ours", required=True, type=Path, help="results folder of this machine's run")
    p.add_argument("--reference", required=True, type=Path, help="the committed results folder")
    p.add_argument("--strict", action="store_true",
                   help="compare: exit 1 unless every table and figure both folders hold is identical")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        if args.what == "save":
            meta = save(args.ours, args.reference)
            print(f"saved {len(meta['sha256']) - len(meta['kept_from_before'])} files of {args.ours} "
                  f"as {args.reference}; kept {len(meta['kept_from_before'])} it does not hold")
            return 0
        result = compare(args.ours, args.reference)
        print("\n".join(summary_lines(result, args.ours, args.reference)))
        return 1 if args.strict and result["differ"] else 0

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
