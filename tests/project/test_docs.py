"""The documentation: a short front door, pages that describe the project as it is."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGES = ["inputs-and-outputs", "recipes", "dedup", "scaling", "architecture", "README"]
#: words of a development log, not of a description
HISTORY = re.compile(r"\bthis round\b|\bprevious round\b|\bissue \d+|\bstop \d+\b|\bround \d+\b", re.I)


def test_the_readme_is_a_front_door():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) < 250
    for heading in ("## Quickstart", "## A worked example", "## Commands", "## Documentation"):
        assert heading in text


def test_the_pages_exist_and_read_as_a_description():
    for name in ["../README", *PAGES]:
        text = (REPO / "docs" / f"{name}.md").read_text()
        assert not HISTORY.search(text), f"{name}: {HISTORY.search(text).group(0)!r}"


def test_links_between_these_pages_resolve():
    for name in ["../README", *PAGES]:
        page = REPO / "docs" / f"{name}.md"
        for target in re.findall(r"\]\(([^)#]+\.md)(?:#[^)]*)?\)", page.read_text()):
            stem = Path(target).stem
            if stem in PAGES or target.endswith("README.md"):
                assert (page.parent / target).resolve().is_file(), f"{name}: {target}"
