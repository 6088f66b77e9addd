"""The tree keeps its shape: every module is in docs/architecture.md, no import cycle, and no
import against the one-way flow (data_prep → reproduce → reproduce.report; benchmarks outside).

Imports are read from the source with `ast` (nothing is imported), so these tests take a second."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "data_prep", "reproduce", "bench")
# Modules that must never import TensorFlow or Keras at load time, directly or through others:
# report and metrics run where no model and no GPU exist (README: report never needs a model).
# reproduce.runs: the orchestrator must hold no GPU itself (its subprocesses do the training).
# reproduce.weights: `python -m reproduce.weights --help` answers without Keras (it loads Keras
# only to download).
TF_FREE = ("reproduce.report", "reproduce.metrics", "reproduce.runs", "reproduce.study.relations", "reproduce.weights",
           "common.cli", "common.provenance", "data_prep.labels", "data_prep.split")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports(path: Path, top_level_only: bool) -> set[str]:
    """Project modules (and tensorflow/keras) that `path` imports; `top_level_only`: not the
    imports inside functions (deferred on purpose, e.g. data_prep.schema's TensorFlow)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def graph(top_level_only: bool) -> dict[str, set[str]]:
    known = modules()
    edges = {}
    for name, path in known.items():
        targets = {t for t in imports(path, top_level_only) if t in known and t != name}
        externals = {t.split(".")[0] for t in imports(path, top_level_only)} & {"tensorflow", "keras"}
        edges[name] = targets | externals
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def reachable(edges, start) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_even_through_deferred_imports():
    assert find_cycle(graph(top_level_only=False)) is None


def test_every_module_is_in_the_architecture_doc():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    missing = [f"{path.relative_to(ROOT)}" for name, path in modules().items()
               if path.name not in ("__init__.py", "__main__.py")
               and str(path.relative_to(ROOT)) not in doc and f"`{name}`" not in doc]
    assert not missing, f"docs/architecture.md does not mention: {missing}"


@pytest.mark.parametrize("package, forbidden", [("common", ("data_prep", "reproduce", "bench")),
                                                ("data_prep", ("reproduce", "bench")),
                                                ("reproduce", ("bench",))])
def test_imports_follow_the_flow(package, forbidden):
    bad = [(name, t) for name, targets in graph(top_level_only=False).items()
           if name.split(".")[0] == package for t in targets if t.split(".")[0] in forbidden]
    assert not bad


def test_report_side_never_loads_tensorflow():
    edges = graph(top_level_only=True)
    for name in edges:
        if name.startswith(TF_FREE):
            heavy = reachable(edges, name) & {"tensorflow", "keras"}
            assert not heavy, f"{name} imports {heavy} at load time"


def room(module: str) -> str:
    """The room a module belongs to, as the tree reads: a package below reproduce/ (losses, engine,
    report, study) is one room, every module directly in reproduce/ its own room, and common,
    data_prep and bench one room each."""
    parts = module.split(".")
    if parts[0] != "reproduce":
        return parts[0]
    if len(parts) > 2 or (ROOT / "reproduce" / parts[-1]).is_dir():
        return ".".join(parts[:2])
    return module


def test_no_room_imports_against_the_flow():
    """Between rooms (folders by role, top-level modules) no import runs back up: the graph of
    rooms has no cycle, deferred imports included. A library module that imports the study, a
    program, or a package that imports back into a module that imports it, fails here."""
    rooms = {}
    for name, targets in graph(top_level_only=False).items():
        rooms.setdefault(room(name), set()).update(
            room(t) for t in targets if t not in ("tensorflow", "keras") and room(t) != room(name))
    assert find_cycle(rooms) is None
    assert room("reproduce.engine.training") == "reproduce.engine" and room("reproduce.models") == "reproduce.models"
    assert find_cycle({"reproduce.engine": {"reproduce.gradcam"}, "reproduce.gradcam": {"reproduce.engine"}})


def test_tests_mirror_the_packages():
    """tests/<package>/… holds the tests of <package>/… (tests/repo: the repository's own checks,
    tests/data: fixtures); a test folder whose package moved or vanished fails here."""
    folders = [p for p in (ROOT / "tests").rglob("*") if p.is_dir() and p.name != "__pycache__"]
    orphans = [str(f.relative_to(ROOT)) for f in folders
               if f.relative_to(ROOT / "tests").parts[0] not in ("repo", "data")
               and not (ROOT / f.relative_to(ROOT / "tests")).is_dir()]
    assert orphans == []
    assert not list((ROOT / "tests").glob("test_*.py")), "a test file outside the mirrored folders"
