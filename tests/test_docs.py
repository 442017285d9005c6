"""The documentation holds together: every relative link resolves, every linked results file exists and
parses, the README and the results page stay short enough to read, and no file speaks of internal work
sessions or issue numbers (the project's history lives in docs/experiments/, told as the project's)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGES = sorted(
    [ROOT / "README.md", ROOT / "BENCHMARKS.md", ROOT / "RELIABILITY.md", *(ROOT / "docs").rglob("*.md")]
)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Internal bookkeeping that has no place in the repository: numbered issues or sessions, a hash sign
# before a number, and work sessions or rounds spoken of as such.
INTERNAL = re.compile(
    r"\bissues?\s*#?\d+"
    r"|\bsessions?\s+\d+"
    r"|(?<![&\w/])#\d{2,}\b"
    r"|\b(?:this|that|next|previous|earlier|later|each|one|a new|the same) (?:work )?session\b"
    r"|\bwork rounds?\b",
    re.IGNORECASE,
)


def relative_links(page: Path) -> list[str]:
    text = INLINE_CODE.sub("", FENCE.sub("", page.read_text(encoding="utf-8")))
    targets = [m.group(1) for m in LINK.finditer(text)]
    return [t for t in targets if not re.match(r"^(?:[a-z]+:|#)", t)]


def resolve(page: Path, target: str) -> Path:
    return (page.parent / target.split("#", 1)[0]).resolve()


def repository_files() -> list[Path]:
    """Tracked files and untracked ones git does not ignore; without git, the tree minus the usual
    build, cache and environment folders."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
        return [ROOT / name for name in listed.split("\0") if name and (ROOT / name).is_file()]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "work", "runs", "build", "dist", "__pycache__", ".pytest_cache"}
        return [
            p
            for p in ROOT.rglob("*")
            if p.is_file()
            and not skip.intersection(p.relative_to(ROOT).parts)
            and not any(part.endswith((".egg-info", "_cache")) for part in p.relative_to(ROOT).parts)
        ]


def test_the_pages_exist():
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "BENCHMARKS.md", "docs/experiments/README.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    missing = [t for t in relative_links(page) if not resolve(page, t).exists()]
    assert not missing, f"{page.relative_to(ROOT)}: links to missing files: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_linked_results_file_exists_and_parses(page):
    for target in relative_links(page):
        path = resolve(page, target)
        if RESULTS not in path.parents:
            continue
        where = f"{page.relative_to(ROOT)} -> {target}"
        assert path.is_file(), f"{where}: no such results file"
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))  # raises, naming the problem, when it does not parse
        elif path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{where}: not a PNG file"
        else:
            pytest.fail(f"{where}: a results link should name a .json or .png file")


def test_the_results_page_links_its_evidence():
    linked = {resolve(ROOT / "BENCHMARKS.md", t) for t in relative_links(ROOT / "BENCHMARKS.md")}
    assert len({p for p in linked if RESULTS in p.parents}) >= 30


def test_every_results_file_is_linked_from_the_results_page_or_the_journal():
    pages = [ROOT / "BENCHMARKS.md", *(ROOT / "docs" / "experiments").glob("*.md")]
    linked = {resolve(page, t) for page in pages for t in relative_links(page)}
    unlinked = sorted(p.name for p in RESULTS.iterdir() if p.is_file() and p.resolve() not in linked)
    assert not unlinked, f"results files no page links to: {unlinked}"


@pytest.mark.parametrize(("name", "limit"), [("README.md", 250), ("BENCHMARKS.md", 400)])
def test_the_page_stays_short(name, limit):
    lines = len((ROOT / name).read_text(encoding="utf-8").splitlines())
    assert lines <= limit, f"{name} has {lines} lines (at most {limit}): move detail to docs/"


def test_no_file_speaks_of_internal_sessions_or_issue_numbers():
    found = []
    for path in repository_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary (a plot)
        for number, line in enumerate(text.splitlines(), 1):
            if INTERNAL.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not found, "internal references:\n" + "\n".join(found)


def test_the_internal_reference_pattern_hits_what_it_should_and_nothing_else():
    # the numbers are formatted in so that this file does not match its own pattern
    for text in (
        f"see issue {12}",
        f"Issue #{39}",
        f"(issue {13}, 2026-12-07)",
        f"in session {17}",
        f"in #{42}",
    ):
        assert INTERNAL.search(text), text
    for text in (
        '@pytest.fixture(scope="session")',
        "the 2x needs 4 tokens a round",
        "redraft every round 0.47x",
        "&#233;",
        "no issue with that",
        "step_00004500",
    ):
        assert not INTERNAL.search(text), text
