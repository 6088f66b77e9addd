"""Names the docs mention exist in the code: every `reproduce.x.y` / `data_prep.x` / `bench.x` in a
code span of README.md, docs/*.md or results/README.md is a module of this tree, or a top-level
name of one (a method of a class there); every `*.py` / `*.sh` path exists; every "column `C` of
`F.csv`" is a column of the committed reference's F.csv. Read from the source (ast), nothing
imported, so docs cannot drift from renamed modules, functions and columns."""
import ast
import csv
import re
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "results" / "README.md"]
PACKAGES = ("reproduce", "data_prep", "bench")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
# Not after "/" or ".": results/bench/data_prep.json is a file, not a module.
DOTTED = re.compile(r"(?<![/\w.])((?:%s)(?:\.[A-Za-z_]\w*)+)" % "|".join(PACKAGES))
PATH = re.compile(r"\b((?:%s|tests|\.ci)/[\w./-]+\.(?:py|sh))\b" % "|".join(PACKAGES))
COLUMN = re.compile(r"column `(\w+)` (?:of|in) `(?:[\w/]+/)?(\w+\.csv)`")
REFERENCE = ROOT / "results" / "reference"


def _module_file(parts) -> Path | None:
    base = ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=None)
def _top_level(path: Path) -> dict:
    """{name: node} of a module's top-level definitions, assignments and imports."""
    names = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        names[name.id] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names[(alias.asname or alias.name).split(".")[0]] = node
    return names


def _has_member(path: Path, cls: ast.ClassDef, name: str) -> bool:
    """`name` is defined in `cls` or a base class of the same module; a base from elsewhere
    (keras.losses.Loss, ...) may define anything, so it counts as found."""
    if name in {n.name for n in cls.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}:
        return True
    local = _top_level(path)
    for base in cls.bases:
        found = local.get(base.id) if isinstance(base, ast.Name) else None
        if not isinstance(found, ast.ClassDef) or _has_member(path, found, name):
            return True
    return False


def unresolved(dotted: str) -> str | None:
    """None when `dotted` names a module or a name in one; else what is missing."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        path = _module_file(parts[:cut])
        if path is None:
            continue
        rest = parts[cut:]
        if not rest:
            return None
        node = _top_level(path).get(rest[0])
        if node is None:
            return f"{'.'.join(parts[:cut])} has no {rest[0]!r}"
        if len(rest) > 1 and isinstance(node, ast.ClassDef) and not _has_member(path, node, rest[1]):
            return f"{'.'.join(parts[:cut + 1])} has no {rest[1]!r}"
        return None
    return f"no module {parts[0]}.{parts[1]}" if len(parts) > 1 else f"no module {dotted}"


def mentions(page: Path):
    for span in CODE_SPAN.findall(page.read_text()):
        yield from ((kind, m.group(1)) for kind, rx in (("name", DOTTED), ("path", PATH))
                    for m in rx.finditer(span))


def _reference_columns(name: str) -> set | None:
    for found in sorted(REFERENCE.rglob(name)):
        with found.open() as f:
            return set(next(csv.reader(f)))
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_module_function_and_path_a_page_names_exists(page):
    missing = []
    for kind, text in mentions(page):
        if kind == "name" and (why := unresolved(text)):
            missing.append(f"`{text}`: {why}")
        if kind == "path" and not (ROOT / text).exists():
            missing.append(f"`{text}`: no such file")
    assert not missing, f"{page.name}:\n" + "\n".join(missing)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_column_a_page_names_is_in_the_committed_csv(page):
    wrong = []
    for column, name in COLUMN.findall(page.read_text()):
        columns = _reference_columns(name)
        if columns is not None and column not in columns:
            wrong.append(f"column `{column}` is not in {name} ({len(columns)} columns)")
    assert not wrong, f"{page.name}:\n" + "\n".join(wrong)


def test_the_checks_see_a_renamed_module_function_and_column(tmp_path):
    assert unresolved("reproduce.losses.names") is None
    assert unresolved("reproduce.losses.paper.EntropyWeightingLoss.get_config") is None  # on its base
    assert unresolved("reproduce.config.Config.no_such") == "reproduce.config.Config has no 'no_such'"
    assert unresolved("reproduce.loss_readings") == "reproduce has no 'loss_readings'"
    assert unresolved("reproduce.losses.paper.head_activation") == "reproduce.losses.paper has no 'head_activation'"
    assert "delong_p" not in _reference_columns("table1_comparison.csv")
    page = tmp_path / "p.md"
    page.write_text("see `reproduce/loss_readings.py` and `reproduce.metrics.delong_test(a, b)`")
    assert sorted(mentions(page)) == [("name", "reproduce.metrics.delong_test"),
                                      ("path", "reproduce/loss_readings.py")]
