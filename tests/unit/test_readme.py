"""The README stays a short front page: its quick start is `make run` and `make test`, and no link in it or
in docs/ leads nowhere (a file that exists, and a heading there when the link names one)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

PROJECT_ROOT = Path(__file__).resolve().parents[2]
README = PROJECT_ROOT / "README.md"
PAGES = [README, *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
MAX_README_BYTES = 10_000


def _tokens(page: Path) -> list[Token]:
    return MarkdownIt("commonmark").enable("table").parse(page.read_text(encoding="utf-8"))


def _targets(tokens: list[Token]) -> Iterator[str]:
    """Every link's and image's target, outside code."""
    for token in tokens:
        for child in token.children or []:
            if child.type == "link_open":
                yield str(child.attrs["href"])
            elif child.type == "image":
                yield str(child.attrs["src"])


def _section(tokens: list[Token], title: str) -> list[Token]:
    """The tokens under the `## title` heading, up to the next heading of that level or higher."""
    start = next(
        i + 2
        for i, t in enumerate(tokens)
        if t.type == "heading_open" and t.tag == "h2" and tokens[i + 1].content == title
    )
    end = next(
        (i for i in range(start, len(tokens)) if tokens[i].type == "heading_open" and tokens[i].tag in ("h1", "h2")),
        len(tokens),
    )
    return tokens[start:end]


def _anchors(page: Path) -> set[str]:
    """The fragments GitHub gives the page's headings: lower case, punctuation dropped, spaces as hyphens."""
    tokens = _tokens(page)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def _leads_somewhere(page: Path, link: SplitResult) -> bool:
    target = page.parent / unquote(link.path) if link.path else page
    if not target.exists():
        return False
    return not link.fragment or target.suffix != ".md" or link.fragment in _anchors(target)


def test_the_readme_is_under_10_kb() -> None:
    assert README.stat().st_size < MAX_README_BYTES


def test_the_quick_start_is_make_run_and_make_test() -> None:
    [block] = [t for t in _section(_tokens(README), "Quick start") if t.type == "fence"]
    commands = [line.split("#", 1)[0].strip() for line in block.content.splitlines()]

    assert [c for c in commands if c] == ["make run", "make test"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page: Path) -> None:
    relative = [urlsplit(t) for t in _targets(_tokens(page)) if not urlsplit(t).scheme]
    missing = [link.geturl() for link in relative if not _leads_somewhere(page, link)]

    assert relative, "a page of the docs links nowhere"
    assert missing == []
