"""Every document the code cites exists in the repository, and every cited `§N` is a heading
of that page: a contributor who clones the repository can read the contract the code follows
(docs/spec/)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CITED = re.compile(r"(?<![\w/.])((?:docs/)?[\w/]*\.md)\b(?:\s*§\s*(\d+))?")


def _citations() -> list[tuple[Path, str, str | None]]:
    found = []
    for folder in ("kpictl", "alembic"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for document, section in CITED.findall(path.read_text(encoding="utf-8")):
                found.append((path.relative_to(ROOT), document, section or None))
    return found


def test_the_code_cites_documents_that_exist():
    citations = _citations()
    assert citations, "the pattern found nothing: it is broken"
    missing = [
        (str(path), document) for path, document, _ in citations if not (ROOT / document).is_file()
    ]
    assert missing == []


def test_every_cited_section_is_a_heading_of_its_page():
    headings: dict[str, set[str]] = {}
    for path, document, section in _citations():
        if section is None:
            continue
        if document not in headings:
            text = (ROOT / document).read_text(encoding="utf-8")
            headings[document] = set(re.findall(r"^##+ (\d+)\.", text, flags=re.MULTILINE))
        assert section in headings[document], (str(path), document, section)
