"""How long the README's commands take on this machine, step by step (`make bench-times`).

    python -m bench.make_times [TARGET ...] [--out results/bench/times_<cpu>.json]

Runs `make TARGET` (default: demo rehearse test) in this checkout after `make setup`, one after
another, and times every line the command prints: make echoes each recipe line before it runs it,
so a line `….venv/bin/python -m MODULE …` starts a step; `plan: MODEL + LOSS` (reproduce.train)
starts one per training run, and its `epoch E/N: … (S s)` lines give the epoch times, from which
the first epoch's extra cost (graph tracing, the shuffle buffer filling) is estimated as
first − median(rest). The lines are shown as they come, prefixed with the seconds since the
target started.

The JSON (one file per kind of CPU: its model, its instruction sets, and `ONEDNN_MAX_CPU_ISA` when
set, which caps oneDNN's kernels, e.g. at AVX2 on an AVX-512 machine) is what the README's and
docs/demo.md's time tables are generated from (`python -m bench.readme`): those tables quote
measurements, never numbers typed by hand. A finished demo or rehearsal run is not trained again,
so `make demo`/`make rehearse` are refused while their run folders exist (`make clean-demo`,
`rm -r results/rehearsal` first): the time would not be the one a new user sees.
"""
from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import cli
from common.provenance import cpu_facts, portable_path, provenance

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("demo", "rehearse", "test")
# Run folders whose finished runs make skips (the Makefile's DEMO_RUNS, REHEARSE_RUNS).
RUN_FOLDERS = {"demo": Path("results/demo/runs"), "rehearse": Path("results/rehearsal/runs")}
COMMAND = re.compile(r"^(?:for .*?; do )?\S*python[\d.]* -m (\S+)(?: ([a-z][\w-]*))?")
PLAN = re.compile(r"^plan: (\S+ \+ \S+),")
EPOCH = re.compile(r"^epoch \d+/\d+: .*\((\d+(?:\.\d+)?) s\)$")


def _vector_width(facts: dict) -> str:
    """The widest vector instruction set of cpu_facts' list: avx512, avx2 or sse."""
    isa = facts["instruction_sets"]
    return "avx512" if "avx512f" in isa else ("avx2" if "avx2" in isa else "sse")


def machine_kind(facts: dict) -> str:
    """`amd-epyc-avx512`, `intel-xeon-avx2`, …; `-capped-avx2` when ONEDNN_MAX_CPU_ISA caps it
    (cpu_facts' dict)."""
    onednn_cap = facts.get("onednn_max_cpu_isa")
    words = re.findall(r"[a-z0-9]+", facts["cpu"].lower())
    name = "-".join(w for w in words if w not in {"r", "tm", "cpu", "processor"})[:40] or "cpu"
    cap = f"-capped-{re.sub(r'[^a-z0-9]+', '', onednn_cap.lower())}" if onednn_cap else ""
    return f"{name}-{_vector_width(facts)}{cap}"


def _close(step: dict | None, now: float) -> None:
    if step is not None:
        step["seconds"] = round(now - step.pop("_start"), 1)
        epochs = step.get("epoch_s", [])
        if len(epochs) >= 2:
            step["first_epoch_extra_s"] = round(epochs[0] - statistics.median(epochs[1:]), 1)


def steps_of(lines) -> list[dict]:
    """[{"step": "reproduce.train vgg16 + wce", "start_s", "seconds", "epoch_s", …}, …] from
    (seconds since start, line) pairs; a last pair (end time, None) closes the last step."""
    steps: list[dict] = []
    current, now = None, 0.0
    for now, line in lines:
        if line is None:
            break
        command, plan, epoch = COMMAND.match(line), PLAN.match(line), EPOCH.match(line)
        if command:
            _close(current, now)
            label = " ".join(part for part in command.groups() if part)
            current = {"step": label, "start_s": round(now, 1), "_start": now}
            steps.append(current)
        elif plan and current is not None:
            if "model" in current:  # the next run of a loop: a step of its own
                _close(current, now)
                current = {"step": current["step"].split(" ")[0], "start_s": round(now, 1), "_start": now}
                steps.append(current)
            current["model"] = plan.group(1)
            current["step"] = f"{current['step']} {plan.group(1)}"
        elif epoch and current is not None:
            current.setdefault("epoch_s", []).append(float(epoch.group(1)))
    _close(current, now)
    return steps


def time_target(target: str, cwd: Path, out=None) -> dict:
    """Run `make TARGET` in `cwd`, echo its lines with their times, return the target's record."""
    pairs, start = [], time.perf_counter()
    with subprocess.Popen(["make", "--no-print-directory", target], cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        for line in proc.stdout:
            now = time.perf_counter() - start
            line = line.rstrip("\n")
            pairs.append((now, line))
            print(f"{now:7.1f}  {line}", file=out or sys.stdout, flush=True)
        code = proc.wait()
    total = time.perf_counter() - start
    pairs.append((total, None))
    if code != 0:
        raise RuntimeError(f"make {target} failed (exit {code}) after {total:.0f} s")
    last = next((line for _, line in reversed(pairs) if line), "")
    return {"target": target, "seconds": round(total, 1), "steps": steps_of(pairs), "last_line": last}


def _cpu_label(record: dict) -> str:
    machine = record["machine"]
    isa = {"avx512": "AVX-512", "avx2": "AVX2", "sse": "SSE"}[_vector_width(machine)]
    cap = f", oneDNN capped at {machine['onednn_max_cpu_isa']}" if machine.get("onednn_max_cpu_isa") else ""
    return f"{machine['cpu']}, {isa}{cap}, {machine['cpu_count']} cores"


def _made(record: dict) -> str:
    code = record["provenance"]["code"]
    commit = (code.get("git_commit") or "unknown")[:7] + ("+" if code.get("git_dirty") else "")
    return f"{record['date']}, code {commit}"


def _target(record: dict, name: str) -> dict | None:
    return next((t for t in record["targets"] if t["target"] == name), None)


def times_section(results: dict) -> str:
    """The README's time table (bench.readme) from results/bench/times_*.json: one row per CPU."""
    records = results.get("times") or []
    if not records:
        return "Not yet measured here: `make bench-times` puts the times of this machine in this place."
    rows = ["| CPU | " + " | ".join(f"`make {t}`" for t in TARGETS) + " | measured |",
            "| --- | " + "--- | " * len(TARGETS) + "--- |"]
    for record in records:
        cells = [f"{t['seconds'] / 60:.1f} min" if (t := _target(record, name)) else "—" for name in TARGETS]
        rows.append(f"| {_cpu_label(record)} | " + " | ".join(cells) + f" | {_made(record)} |")
    return "\n".join(rows)


def demo_profile(results: dict) -> str:
    """docs/demo.md's "where the minutes go" (bench.readme): `make demo` step by step, one column
    per CPU; a training step also shows its first epoch's extra seconds (mostly graph tracing)."""
    records = [r for r in results.get("times") or [] if _target(r, "demo")]
    if not records:
        return "Not yet measured here: `make bench-times` puts `make demo`'s steps in this place."
    demos = [_target(r, "demo") for r in records]
    labels = list(dict.fromkeys(step["step"] for demo in demos for step in demo["steps"]))
    rows = ["| step | " + " | ".join(_cpu_label(r) for r in records) + " |",
            "| --- |" + " ---: |" * len(records)]
    for label in labels:
        cells = []
        for demo in demos:
            step = next((s for s in demo["steps"] if s["step"] == label), None)
            extra = f" (first epoch +{step['first_epoch_extra_s']:.0f})" if step and "first_epoch_extra_s" in step else ""
            cells.append(f"{step['seconds']:.0f}{extra}" if step else "—")
        rows.append(f"| `{label}` | " + " | ".join(cells) + " |")
    rows.append("| **all of `make demo`** | " + " | ".join(f"**{d['seconds']:.0f}**" for d in demos) + " |")
    rows += ["", "Seconds; measured by `make bench-times` (" + "; ".join(_made(r) for r in records) + ")."]
    return "\n".join(rows)


def build_parser():
    p = cli.make_parser("bench.make_times", __doc__)
    p.add_argument("targets", nargs="*", default=list(TARGETS), metavar="TARGET",
                   help="make targets to time, in this order")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON to write (default: results/bench/times_<kind of CPU>.json)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        facts = cpu_facts()
        out = args.out or ROOT / "results" / "bench" / f"times_{machine_kind(facts)}.json"
        for target in args.targets:
            folder = RUN_FOLDERS.get(target)
            if folder is not None and (ROOT / folder).exists():
                raise ValueError(f"{folder} exists: make {target} would not train its finished runs "
                                 "again, so its time is not a new user's; move it away first")
        subprocess.run(["make", "--no-print-directory", "setup"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        record = {"what": "bench.make_times", "machine": facts,
                  "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1 (Makefile)"),
                  "date": time.strftime("%Y-%m-%d"), "provenance": provenance(), "targets": []}
        for target in args.targets:
            record["targets"].append(time_target(target, ROOT))
            out.parent.mkdir(parents=True, exist_ok=True)  # written after each target: a later failure keeps it
            out.write_text(json.dumps(record, indent=2) + "\n")
            print(f"make {target}: {record['targets'][-1]['seconds'] / 60:.1f} min; wrote {portable_path(out)}")
        return 0

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
