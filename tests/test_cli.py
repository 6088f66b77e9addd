"""One CLI convention everywhere (data_prep.cli): every program is `python -m …`, every option has
a help line that shows its default, usage errors exit 2, and input errors are one `error:` line
with exit 1. Programs are found by their `build_parser` (read from the source, nothing run)."""
import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cli_modules() -> list[str]:
    found = []
    for pkg in ("data_prep", "reproduce", "bench"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text())
            if any(isinstance(n, ast.FunctionDef) and n.name == "build_parser" for n in tree.body):
                found.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return found


def test_every_program_is_found():
    assert {"data_prep.build", "data_prep.split", "data_prep.fetch_labels", "data_prep.phantom.make",
            "reproduce.train", "reproduce.evaluate", "reproduce.report.cli",
            "reproduce.study.ablation", "bench.data", "bench.train"} <= set(cli_modules())


@pytest.mark.parametrize("module", cli_modules())
def test_every_option_has_help_and_shows_its_default(module):
    parser = importlib.import_module(module).build_parser()
    assert parser.prog.startswith("python -m ")
    text = parser.format_help()
    assert str(ROOT) not in " ".join(text.split()), f"{module}: its help shows a machine path"
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert action.help, f"{module}: {action.option_strings[0]} has no help"
        if action.default not in (None, False, [], "==SUPPRESS=="):
            assert f"(default: {action.default})" in " ".join(text.split()), \
                f"{module}: {action.option_strings[0]}'s help does not show its default"


@pytest.mark.parametrize("module", ["data_prep.build", "reproduce.train", "reproduce.report"])
def test_usage_error_exits_2_and_input_error_exits_1_with_one_line(module, tmp_path):
    usage = subprocess.run([sys.executable, "-m", module, "--no-such-option"], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2 and f"python -m {module}" in usage.stderr
    missing = str(tmp_path / "nowhere")
    argv = {"data_prep.build": ["--data-dir", missing, "--out", str(tmp_path / "o")],
            "reproduce.train": ["--data", missing, "--out", str(tmp_path / "r"), "--preset", "smoke"],
            "reproduce.report": ["table1", "--runs", f"vgg16_wce={missing}", "--out", str(tmp_path / "o")]}
    bad = subprocess.run([sys.executable, "-m", module, *argv[module]], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: ") and missing in bad.stderr


def test_runs_option_takes_several_values_or_repeats():
    from reproduce.report.cli import build_parser

    one_flag = build_parser().parse_args(["table1", "--out", "o", "--runs", "a=x", "b=y"])
    repeated = build_parser().parse_args(["table1", "--out", "o", "--runs", "a=x", "--runs", "b=y"])
    assert one_flag.runs == repeated.runs == ["a=x", "b=y"]
