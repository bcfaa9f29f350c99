"""The README is a newcomer's path and the documentation speaks of the project, not of its history: every link
resolves, the screenshot is there, no page tells of sessions or issues (that belongs in CHANGELOG.md), and the
configuration page lists every environment variable the code reads."""

import re
from pathlib import Path

import pytest

from flip_pipelines_tests.test_deploy import _read_by_code

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOC_PAGES = sorted((REPO / "docs").glob("*.md"))
CONFIGURATION = REPO / "docs" / "configuration.md"
HISTORY = re.compile(r"this session|last session|previous session|the issue's figure|in the issue\b|"
                     r"\bwhat changed\b|\bnow:|\btoday\b", re.IGNORECASE)


def local_links(page: Path) -> list[str]:
    targets = re.findall(r"\]\(([^)\s]+)\)", page.read_text())
    return [t for t in targets if not re.match(r"[a-z]+://", t)]


@pytest.mark.parametrize("page", [README, *DOC_PAGES, REPO / "CHANGELOG.md"], ids=lambda p: p.name)
def test_every_local_link_resolves(page: Path) -> None:
    broken = []
    for target in local_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md":
            headings = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-")
                        for h in re.findall(r"^#+ (.+)$", file.read_text(), re.MULTILINE)}
            if anchor not in headings:
                broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


def test_readme_is_a_newcomers_path() -> None:
    text = README.read_text()
    assert "make dev" in text and "make test" in text
    assert "docs/images/training-review.png" in local_links(README)
    assert {f"docs/{p.name}" for p in DOC_PAGES} <= set(local_links(README)), "every docs page is linked"
    assert len(text.splitlines()) <= 100, "README stays short: detail goes to docs/"


@pytest.mark.parametrize("page", [README, *DOC_PAGES], ids=lambda p: p.name)
def test_pages_speak_of_the_project_not_its_history(page: Path) -> None:
    found = [m.group(0) for m in HISTORY.finditer(page.read_text())]
    assert not found, f"{page.name}: {found} (history goes in CHANGELOG.md)"


def test_the_configuration_page_lists_every_variable_the_code_reads() -> None:
    """The variables come from test_deploy's collector (the code's source, not a list kept by hand); each has its
    own row with a meaning and a default. None is exempt: the ones no hub deployment passes (test_deploy's
    NOT_PASSED: `dev`'s, the crash drills', `fl-api serve`'s, the key itself) are still set by someone."""
    rows = {m.group(1): (m.group(2).strip(), m.group(3).strip())
            for m in re.finditer(r"^\| `([A-Z][A-Z0-9_]*)` \|([^|]*)\|([^|]*)\|$", CONFIGURATION.read_text(),
                                 re.MULTILINE)}
    read = _read_by_code()
    missing = sorted(read - set(rows))
    assert not missing, f"configuration.md lists no row for {missing}"
    blank = sorted(name for name in read if not all(rows[name]))
    assert not blank, f"configuration.md gives no meaning or no default for {blank}"
