"""The README is a newcomer's path and the documentation speaks of the project, not of its history: every link
resolves, the screenshot is there, and no page tells of sessions or issues (that belongs in CHANGELOG.md)."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOC_PAGES = sorted((REPO / "docs").glob("*.md"))
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
