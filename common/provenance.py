"""Where a file came from: the code version and library versions, and paths kept portable.

Recorded in every manifest.json (data_prep.build), run config.json (reproduce.train) and
report_config.json (reproduce.report), so every number traces to the code that made it.

Code version (our choice of what "version" means): the newest git commit that changed the CODE
(`CODE_PATHS`), and whether the code differs from it now. Results committed after they were made
(results/reference/) do not change it, so regenerating them at the same code writes the same bytes.
Outside a git checkout: the installed package version. Library versions come from the installed
distributions' metadata, so asking costs no TensorFlow import (report stays TensorFlow-free).
"""
from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CODE_PATHS = ("common", "data_prep", "reproduce", "bench", "setup.cfg", "pyproject.toml", "Makefile")
LIBRARIES = ("tensorflow", "keras", "numpy", "scikit-learn")
DISTRIBUTION = "mo-cai-2019-reproduction"  # setup.cfg [metadata] name


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                              timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def package_version() -> str:
    """The installed distribution's version (setup.cfg), or "unknown" when not installed."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """{"git_commit": sha, "git_dirty": bool} in a checkout, else {"package_version": v}."""
    commit = _git("log", "-1", "--format=%H", "--", *CODE_PATHS)
    if commit:
        status = _git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS)
        return {"git_commit": commit, "git_dirty": bool(status)}
    return {"package_version": package_version()}


def library_versions(names=LIBRARIES) -> dict:
    """{distribution: version or None} from the installed packages' metadata."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_facts() -> dict:
    """The CPU's model, the vector instruction sets that change oneDNN's round-off (AVX2, AVX-512,
    AMX), the core count, and ONEDNN_MAX_CPU_ISA when it caps oneDNN's kernels: what decides
    whether two CPU runs can agree bit for bit."""
    model, flags = "unknown", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile") if f in flags]
    facts = {"cpu": model, "instruction_sets": isa, "cpu_count": os.cpu_count()}
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
    if cap:  # oneDNN's kernels, and so their round-off, stop at this instruction set (e.g. AVX2)
        facts["onednn_max_cpu_isa"] = cap
    return facts


def describe_cpu(facts: dict) -> str:
    """`AMD EPYC (avx2/fma/avx512f, 2 cores)`, `…, oneDNN capped at AVX2, …` (cpu_facts' dict)."""
    isa = "/".join(facts.get("instruction_sets", [])) or "unknown instruction sets"
    cap = f", oneDNN capped at {facts['onednn_max_cpu_isa']}" if facts.get("onednn_max_cpu_isa") else ""
    return f"{facts.get('cpu', 'an unknown CPU')} ({isa}{cap}, {facts.get('cpu_count', '?')} cores)"


def provenance() -> dict:
    """The block written into manifests, run configs and report configs."""
    return {"code": code_version(), "python": platform.python_version(),
            "libraries": library_versions()}


def portable_path(path) -> str:
    """A path as the user gave it, except that an absolute path inside the project is stored
    relative to the project, so no committed file carries this machine's folder names."""
    text = os.fspath(path)
    absolute = Path(text)
    if absolute.is_absolute():
        try:
            return absolute.resolve().relative_to(PROJECT_ROOT).as_posix()
        except ValueError:
            return text
    return text
