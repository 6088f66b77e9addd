"""The front page and docs/ hold together: every relative link and #anchor in README.md, docs/*.md
and results/README.md resolves, every `make TARGET` the README names exists in the Makefile (and
every Makefile target is named there), README.md stays a front page (≤ 8 KB), and the synthetic
results docs/demo.md quotes are those of the committed reference. Pure text, no TensorFlow."""
import csv
import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "results" / "README.md"]
README_LIMIT = 8192  # bytes

FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^()\s<>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)


def rel(path: Path, root: Path = ROOT) -> str:
    return path.resolve().relative_to(root.resolve()).as_posix()


def prose(text: str) -> str:
    """The text outside fenced code blocks, inline code spans replaced by their content (so a link
    whose text is code still counts, and a link written inside code does not)."""
    text = FENCE.sub("", text)
    return CODE_SPAN.sub(lambda m: "code" if "](" in m.group(2) else m.group(2), text)


def links(text: str) -> list[str]:
    body = prose(text)
    return [m.group(1) for m in LINK.finditer(body)] + REFERENCE.findall(body)


def is_external(target: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I)) or target.startswith("//")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: markup dropped, lowercase, every character that is not a letter,
    mark, decimal digit, connector (_), hyphen or space dropped, spaces → hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    kept = "".join(c for c in text if c in "- " or unicodedata.category(c)[0] in "LM"
                   or unicodedata.category(c) in ("Nd", "Pc"))
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file (repeated headings get -1, -2, … as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    for m in HEADING.finditer(FENCE.sub("", path.read_text())):
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """'PAGE: TARGET (why)' for every relative link of `page` that does not resolve (paths shown
    relative to `root`)."""
    bad = []
    for target in links(page.read_text()):
        if is_external(target):
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            bad.append(f"{rel(page, root)}: {target} (no such file)")
        elif anchor:
            if dest.suffix != ".md":
                bad.append(f"{rel(page, root)}: {target} (an anchor into a file that is not markdown)")
            elif anchor not in anchors(dest):
                bad.append(f"{rel(page, root)}: {target} (no heading '#{anchor}' in {rel(dest, root)})")
    return bad


def makefile_targets(makefile: Path) -> set[str]:
    text = re.sub(r"\\\n", " ", makefile.read_text())  # join continued lines (.PHONY lists)
    targets = set()
    for line in text.splitlines():
        if line.startswith(".PHONY:"):
            targets.update(line.split(":", 1)[1].split())
            continue
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9_./%-]*(?:\s+[A-Za-z0-9][A-Za-z0-9_./%-]*)*)\s*::?(?!=)", line)
        if m and not line.startswith("\t"):
            targets.update(m.group(1).split())
    return targets


def make_targets_named(text: str) -> set[str]:
    """Targets of every `make …` command written in code (spans and blocks) of a page: the words
    after `make` up to the first comment, shell operator or parenthesis; VAR=value and -options
    skipped."""
    code = [m.group(0) for m in FENCE.finditer(text)] + [m.group(2) for m in CODE_SPAN.finditer(FENCE.sub("", text))]
    named = set()
    for chunk in code:
        chunk = re.sub(r"(^|\s)#.*$", "", chunk, flags=re.M)  # shell comments
        for m in re.finditer(r"(?:^|[\s;&|(])make((?:[ \t]+[^\s;&|#()]+)+)", chunk, re.M):
            for word in m.group(1).split():
                if "=" in word or word.startswith("-") or word.startswith('"'):
                    continue
                if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", word):
                    break
                named.add(word)
    return named


# ---- the checks ----------------------------------------------------------------------------------
def test_the_pages_exist():
    names = {rel(p) for p in PAGES}
    assert {"README.md", "docs/demo.md", "docs/commands.md", "docs/real-data.md", "docs/gpus.md",
            "docs/exactness.md", "docs/use-a-model.md", "docs/radiologists.md", "docs/seeds.md",
            "docs/benchmarks.md", "docs/paper_map.md", "docs/entropy_weighting_loss.md",
            "docs/architecture.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_relative_link_and_anchor_resolves(page):
    assert not broken_links(page), "\n".join(broken_links(page))


def test_readme_is_a_front_page():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; move text into docs/ (limit {README_LIMIT})"


def test_every_docs_page_is_linked_from_the_readme_or_a_page_it_links():
    """Every page of docs/ is one or two clicks from the front page."""
    def linked(page):
        return {(page.parent / t.partition("#")[0]).resolve() for t in links(page.read_text())
                if not is_external(t) and t.partition("#")[0].endswith(".md")}
    one = linked(ROOT / "README.md")
    two = one.union(*(linked(p) for p in one if p.exists()))
    missing = [rel(p) for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in two]
    assert not missing, f"not reachable in two clicks from README.md: {missing}"


def test_every_make_target_the_readme_names_exists_and_every_target_is_named():
    targets = makefile_targets(ROOT / "Makefile")
    assert {"demo", "test", "paper-shards", "paper", "table1", "figure1"} <= targets
    text = (ROOT / "README.md").read_text()
    named = make_targets_named(text)
    assert {"demo", "test", "paper-shards", "paper", "table1", "figure1"} <= named
    assert not named - targets, f"README.md names make targets the Makefile lacks: {sorted(named - targets)}"
    in_code = {m.group(2).strip() for m in CODE_SPAN.finditer(FENCE.sub("", text))}
    unnamed = sorted(t for t in targets if t not in named and t not in in_code)
    assert not unnamed, f"Makefile targets missing from README.md's table: {unnamed}"


# ---- the checks can fail -------------------------------------------------------------------------
def test_the_link_check_finds_a_broken_file_an_unknown_anchor_and_skips_code(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Title: `make demo` (synthetic)\n\n## Same, again\n## Same, again\n")
    page = tmp_path / "README.md"
    page.write_text("[ok](docs/a.md#title-make-demo-synthetic) [ok2](docs/a.md#same-again-1) [web](https://x.org/y)\n"
                    "[gone](docs/b.md) ![img](docs/missing.png)\n[bad anchor](docs/a.md#nowhere)\n"
                    "[self](#no-heading-here) `[in code](nowhere.md)`\n```\n[in a block](nowhere.md)\n```\n"
                    "[ref]: docs/also-missing.md\n")
    bad = [line.split(": ", 1)[1] for line in broken_links(page, tmp_path)]
    assert bad == ["docs/b.md (no such file)", "docs/missing.png (no such file)",
                   "docs/a.md#nowhere (no heading '#nowhere' in docs/a.md)",
                   "#no-heading-here (no heading '#no-heading-here' in README.md)",
                   "docs/also-missing.md (no such file)"]


def test_slugs_follow_github():
    assert slug("What `make demo` gives (synthetic set, not real-data results)") == \
        "what-make-demo-gives-synthetic-set-not-real-data-results"
    assert slug("§IV.B Training details") == "ivb-training-details"
    assert slug("7. Ablation (`make ablation`)") == "7-ablation-make-ablation"
    assert slug("Localization against NIH's boxes") == "localization-against-nihs-boxes"
    assert slug("The synthetic ChestX-ray14 (`data_prep.phantom`, not in the paper)") == \
        "the-synthetic-chestx-ray14-data_prepphantom-not-in-the-paper"
    assert slug("Training seeds (not in the paper — ours)") == "training-seeds-not-in-the-paper--ours"


def test_the_make_check_finds_a_target_the_makefile_lacks(tmp_path):
    makefile = tmp_path / "Makefile"
    makefile.write_text(".PHONY: demo test \\\n        paper\nX ?= 1\ndemo: test\n\techo x: y\n"
                        "$(VENV)/.stamp: setup.cfg\ndata/out.json: demo\n")
    assert makefile_targets(makefile) == {"demo", "test", "paper", "data/out.json"}
    named = make_targets_named("Run `make demo DATA_DIR=x` then `make paper table1 figure1` (see below)\n"
                               "```\nmake demo-seeds SEEDS=\"0 1\"   # comment make nothing\nmake -j2 test && make smoke\n```\n"
                               "to make it work, `make predict IMAGES=\"a b\"`\n")
    assert named == {"demo", "paper", "table1", "figure1", "demo-seeds", "test", "smoke", "predict"}
    assert named - makefile_targets(makefile) == {"table1", "figure1", "demo-seeds", "smoke", "predict"}


# ---- the numbers docs/demo.md quotes are the committed reference's ---------------------------------
RUN_NAMES = {"VGG16, weighted CE": "vgg16_wce", "ResNet50, weighted CE": "resnet50_wce",
             "DenseNet121, weighted CE": "densenet121_wce", "DenseNet121, Eq. (2) as printed": "densenet121_ewl",
             "`whole_image` (reference)": "whole_image"}


def table_rows(text: str, header_start: str) -> dict[str, list[str]]:
    """{first cell: other cells} of the markdown table whose header row starts with `header_start`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def test_demo_page_quotes_the_committed_reference():
    ref = ROOT / "results" / "reference" / "demo"
    text = (ROOT / "docs" / "demo.md").read_text()
    with open(ref / "table1_comparison.csv") as f:
        ave = {r["run"]: r for r in csv.DictReader(f) if r["pathology"] == "AVE"}
    table = table_rows(text, "| run | ours (synthetic) | paper (ChestX-ray14) |")
    assert len(table) == 4
    for name, (ours, paper) in table.items():
        r = ave[RUN_NAMES[name]]
        assert (ours, paper) == (f"{r['ours']} [{r['ci_low']}, {r['ci_high']}]", r["paper"]), name
    with open(ref / "localization.csv") as f:
        pooled = {(r["run"], r["measure"], float(r["threshold"])): float(r["accuracy"])
                  for r in csv.DictReader(f) if r["class"] == "All"}
    columns = [("iou", 0.1), ("iou", 0.25), ("iobb", 0.1), ("iobb", 0.25), ("iobb", 0.5)]
    table = table_rows(text, "| run | IoU > 0.1 |")
    assert len(table) == 3
    for name, cells in table.items():
        assert cells == [f"{pooled[(RUN_NAMES[name], m, t)]:.3f}" for m, t in columns], name


def test_seeds_page_quotes_the_committed_reference():
    ref = ROOT / "results" / "reference" / "demo" / "seeds"
    with open(ref / "table1_seeds.csv") as f:
        ave = [r for r in csv.DictReader(f) if r["pathology"] == "AVE"]
    table = table_rows((ROOT / "docs" / "seeds.md").read_text(), "| run | mean AUC of seed 0, 1, 2 |")
    assert len(table) == 2
    for name, (per_seed, _, _) in table.items():
        got = [r["auc"] for r in sorted(ave, key=lambda r: int(r["seed"])) if r["run"] == RUN_NAMES[name]]
        assert per_seed == ", ".join(got), name


def test_make_help_lists_every_target_and_variable():
    """`make` alone answers with every target of the Makefile and every variable a user can set
    (a new target without its `## ` line, or a new `VAR ?=` left out of the list, fails here)."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("make not installed")
    makefile = (ROOT / "Makefile").read_text()
    targets = sorted(set(re.findall(r"^([a-z0-9-]+):", makefile, re.M)))
    variables = sorted(set(re.findall(r"^([A-Z_]+) \?=", makefile, re.M)))
    shown = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True,
                           text=True, timeout=60).stdout
    assert [t for t in targets if f"make {t} " not in shown] == []
    assert [v for v in variables if not re.search(rf"\b{v}=", shown)] == []
