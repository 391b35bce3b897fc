"""The documentation holds together: links and anchors resolve, every results file the docs cite
exists, names its provenance and is listed in benchmarks/results/INDEX.md, the README stays a front
page, and product source cites no results."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
INDEX = RESULTS / "INDEX.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md", ROOT / "benchmarks" / "README.md", *DOCS]
RESULT_SUFFIXES = (".md", ".csv", ".json", ".txt", ".png")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\s]+)`")
RUN_SUFFIX = re.compile(r"_(retimed|partial|searched|stored|run[0-9]+)\b")


def prose(path: Path) -> str:
    """The page without its fenced code blocks (commands and examples, not citations)."""
    return re.sub(r"^```.*?^```", "", path.read_text(), flags=re.MULTILINE | re.DOTALL)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", prose(path), flags=re.MULTILINE)}


def cited_files(path: Path) -> set[Path]:
    """Files a page names in inline code: a repository path (README.md, docs/api.md), else a path under
    benchmarks/results/ (kernels.md, runs/2026-12-01/inference_b1_host.md)."""
    found = set()
    for span in CODE_SPAN.findall(prose(path)):
        if (
            not span.endswith(RESULT_SUFFIXES)
            or span.startswith(".")
            or any(p in span for p in ("NAME", "DATE", "*", "{", "…"))
        ):
            continue
        found.add(ROOT / span if (ROOT / span).exists() else RESULTS / span)
    return found


def cited_results() -> dict[Path, list[str]]:
    cited: dict[Path, list[str]] = {}
    for page in PAGES:
        for f in cited_files(page):
            if RESULTS in f.parents and f != INDEX:
                cited.setdefault(f, []).append(page.relative_to(ROOT).as_posix())
    return cited


@pytest.mark.parametrize("page", PAGES + [INDEX], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_and_anchors_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(prose(page)):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_cited_files_exist(page: Path) -> None:
    missing = [f for f in cited_files(page) if not f.exists()]
    assert not missing, f"{page.relative_to(ROOT)} cites files that do not exist: " + ", ".join(
        str(f.relative_to(ROOT)) for f in missing
    )


def test_index_lists_every_cited_results_file() -> None:
    listed = cited_files(INDEX)
    unlisted = [
        f"{f.relative_to(RESULTS)} (cited by {', '.join(sorted(set(pages)))})"
        for f, pages in cited_results().items()
        if f not in listed
    ]
    assert not unlisted, "benchmarks/results/INDEX.md does not list: " + "; ".join(sorted(unlisted))


def test_index_lists_only_existing_files() -> None:
    listed = cited_files(INDEX)
    assert len(listed) > 10, "INDEX.md lists (almost) no results files"
    missing = [str(f.relative_to(ROOT)) for f in listed if not f.exists()]
    assert not missing, f"INDEX.md lists files that do not exist: {missing}"


def test_results_files_carry_their_provenance() -> None:
    """Device, date and commit live inside each results file, not in its name."""
    lacking = []
    for f in sorted(RESULTS.rglob("*")):
        if f == INDEX or f.suffix not in (".md", ".json", ".txt") or f.name.endswith(".csv"):
            continue
        head = f.read_text()[:6000]
        for what, pattern in (("date", r"20\d\d-\d\d-\d\d"), ("commit", r"commit"), ("device", r"H100|H200|CPU")):
            if not re.search(pattern, head):
                lacking.append(f"{f.relative_to(RESULTS)} names no {what}")
    assert not lacking, "; ".join(lacking)


def test_results_top_level_holds_canonical_names_only() -> None:
    """How a run was made (retimed, partial, run 3, ...) goes inside its file, and such runs under runs/DATE/."""
    odd = [f.name for f in RESULTS.iterdir() if f.is_file() and RUN_SUFFIX.search(f.name)]
    assert not odd, f"benchmarks/results/ top level: {odd}"


def test_readme_is_a_front_page() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    assert len(text.splitlines()) <= 150, "README.md is a front page: at most 150 lines; the rest goes to docs/"
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in LINK.findall(text)}
    unlinked = [p.name for p in DOCS if p.resolve() not in linked]
    assert not unlinked, f"README.md does not link docs/{unlinked}"
    history = [line for line in text.splitlines() if re.search(r"\bwas\b|\bprevious\b|20\d\d-\d\d-\d\d", line)]
    assert not history, f"README.md carries history or run dates (CHANGELOG.md, docs/performance.md): {history}"


def test_product_source_cites_no_results() -> None:
    """Comments give the reason; measured numbers and results paths live in docs/ and benchmarks/results/."""
    hits = [
        f"{f.relative_to(ROOT)}:{n}"
        for top in ("torch_mish", "csrc")
        for f in sorted((ROOT / top).rglob("*"))
        if f.suffix in (".py", ".cpp", ".cu", ".h", ".cuh")
        for n, line in enumerate(f.read_text().splitlines(), 1)
        if "results/" in line
    ]
    assert not hits, f"results paths in product source: {hits}"
