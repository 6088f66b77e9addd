"""One CLI convention everywhere (common.cli): every program is `python -m …`, every option has
a help line that shows its default, usage errors exit 2, and input errors are one `error:` line
with exit 1. Programs are found by their `build_parser` (read from the source, nothing run)."""
import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def cli_modules() -> list[str]:
    found = []
    for pkg in ("data_prep", "reproduce", "bench"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text())
            defined = any(isinstance(n, ast.FunctionDef) and n.name == "build_parser" for n in tree.body)
            imported = any(isinstance(n, ast.ImportFrom) and any(a.asname == "build_parser" for a in n.names)
                           for n in tree.body)
            if defined or imported:
                found.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return found


def test_every_program_is_found():
    assert {"data_prep.build", "data_prep.split", "data_prep.fetch_labels", "data_prep.phantom.make",
            "reproduce.train", "reproduce.evaluate", "reproduce.report.cli",
            "reproduce.ablation", "reproduce.weights", "bench.data", "bench.train"} <= set(cli_modules())


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


def _options(module: str) -> dict:
    """{option string: action} of a program's parser, deprecated spellings left out."""
    parser = importlib.import_module(module).build_parser()
    return {s: a for a in parser._actions for s in a.option_strings
            if not (a.help or "").startswith("old spelling of")}


def test_one_name_per_meaning_across_programs():
    """common.cli's vocabulary: --data SHARDS is a TFRecord folder, --split a subset,
    --split-method how patients are split, --run one run, --runs several, --runs-dir a folder of
    runs, --bootstrap-seed the bootstrap's seed, --synthetic "the phantom" (off by default)."""
    from data_prep.schema import SPLITS

    seen = set()
    for module in cli_modules():
        options = _options(module)
        seen |= set(options)
        if "--data" in options and module != "data_prep.phantom.make":
            assert options["--data"].metavar == "SHARDS", module
        if "--split" in options:
            assert tuple(options["--split"].choices) == SPLITS, module
        if "--run" in options:
            assert options["--run"].nargs is None, f"{module}: --run is one run; several are --runs"
        if "--runs" in options:
            assert options["--runs"].nargs == "+", module
        if "--synthetic" in options:
            assert options["--synthetic"].default is False, module
        if "--n-resamples" in options:
            assert "--bootstrap-seed" in options and "--seed" not in options, module
    assert not {"--method", "--real"} & seen


@pytest.mark.parametrize("module, old, new", [
    ("data_prep.build", ["--split", "official"], ["--split-method", "official"]),
    ("data_prep.split", ["--method", "official"], ["--split-method", "official"]),
    ("reproduce.ablation", ["--runs", "R", "--seed", "3", "--real"],
     ["--runs-dir", "R", "--bootstrap-seed", "3", "--no-synthetic"]),
    ("reproduce.report.cli", ["--seed", "3"], ["--bootstrap-seed", "3"]),
    ("reproduce.localize", ["--run", "a", "--run", "b"], ["--runs", "a", "b"]),
])
def test_old_spellings_still_work_for_one_release_and_say_so(module, old, new, capsys):
    required = {"data_prep.build": ["--data-dir", "D", "--out", "O"],
                "data_prep.split": ["--labels", "L", "--out", "O"],
                "reproduce.ablation": ["--out", "O"],
                "reproduce.report.cli": ["table1", "--runs", "k=R", "--out", "O"],
                "reproduce.localize": ["--data", "D", "--bbox", "B", "--out", "O"]}[module]
    parse = importlib.import_module(module).build_parser().parse_args
    capsys.readouterr()
    assert parse(required + old) == parse(required + new)
    err = capsys.readouterr().err
    assert err.count("is deprecated") == len([a for a in old if a.startswith("--")])
    assert f"warning: {old[0]} is deprecated and goes in the next release; use {new[0]}" in err


@pytest.mark.parametrize("module", ["data_prep.build", "reproduce.report"])
def test_version_names_the_package_version_and_the_commit(module):
    from common.provenance import code_version, package_version

    done = subprocess.run([sys.executable, "-m", module, "--version"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith(f"python -m {module} {package_version()} (")
    code = code_version()
    assert (code["git_commit"][:12] if "git_commit" in code else "installed package") in done.stdout


BLOCK_TF = ("import sys, runpy\n"
            "class Block:\n"
            "    def find_spec(self, name, *a):\n"
            "        if name.split('.')[0] in ('tensorflow', 'keras', 'jax'):\n"
            "            raise ImportError('blocked: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "sys.argv = [sys.argv[1], *sys.argv[2:]]\n"
            "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n")


@pytest.mark.parametrize("module", ["reproduce.train", "reproduce.evaluate", "reproduce.predict",
                                    "reproduce.localize", "reproduce.ablation", "reproduce.weights"])
def test_help_and_version_need_no_tensorflow(module):
    """--help of train/evaluate answers where importing TensorFlow, Keras or JAX fails, and is the
    same text as the full program's parser gives."""
    for flag in ("--help", "--version"):
        done = subprocess.run([sys.executable, "-c", BLOCK_TF, module, flag], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        assert f"python -m {module}" in done.stdout
    help_text = subprocess.run([sys.executable, "-c", BLOCK_TF, module, "--help"], cwd=ROOT,
                               capture_output=True, text=True, timeout=60).stdout
    assert help_text == importlib.import_module(module).build_parser().format_help()


def test_loss_names_of_the_help_are_the_table_s():
    from reproduce import losses
    from reproduce.train import build_parser

    option = next(a for a in build_parser()._actions if "--loss" in a.option_strings)
    assert tuple(option.choices) == losses.names()
