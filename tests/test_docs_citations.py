"""Every citation of the project's docs resolves: the file is in ``docs/`` and has that section.

Comments cite facts as ``docs/codex-contract.md §7.2`` (also ranges such as ``§4–6`` or
``§5-§6`` and lists such as ``§1.2, §2``; a bare number after a comma, as in ``§3, item 6`` or
``§3, 4``, is an item of that section, not a section). A section resolves when the file has a
Markdown heading numbered with it (``## 7. …`` or ``### 7.2 …``), outside code blocks.

The documents were once cited by their bare names (``codex-contract.md §N``, ``mitmproxy-notes
§N``, ...), from before ``docs/`` existed; such a citation is now a failure naming the form to
write (``BARE_FORMS_ALLOWED``), so every citation names the file a reader opens.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SCANNED = [ROOT / d for d in ("addon", "tests", "bench", "scripts", "docs")] + [ROOT / "README.md"]
TEXT_SUFFIXES = {".py", ".md", ".txt", ".toml", ".cfg", ".sh", ""}
SKIPPED_PARTS = {"__pycache__", "node_modules", ".pytest_cache"}
# The documents comments cited before docs/ existed, by their bare names.
KNOWN = {"codex-contract", "mitmproxy-notes", "providers", "tool-search"}
BARE_FORMS_ALLOWED = False

_NUMBER = r"\d+(?:\.\d+)?"
CITATION = re.compile(
    rf"(?P<prefix>docs/)?(?P<name>[a-z][a-z0-9-]*)(?P<ext>\.md)?\s?§\s?(?P<first>{_NUMBER})"
    rf"(?P<more>(?:\s?[-–]\s?§?\s?{_NUMBER}|,\s?§\s?{_NUMBER})*)"
)
_MORE = re.compile(rf"(?P<sep>[-–]|,)\s?§?\s?(?P<number>{_NUMBER})")
HEADING = re.compile(r"^#{1,6}\s+§?(\d+(?:\.\d+)*)[.\s]")


@dataclass(frozen=True)
class Citation:
    doc: str  # file name in docs/, e.g. "codex-contract.md"
    section: str  # "7" or "7.2"
    prefixed: bool  # written as docs/<doc>


def _range(low: str, high: str) -> list[str]:
    """``4``–``6`` -> 4, 5, 6; ``7.1``–``7.3`` -> 7.1, 7.2, 7.3; anything else: both ends."""
    lo, hi = low.split("."), high.split(".")
    if len(lo) == len(hi) == 1 and int(lo[0]) <= int(hi[0]):
        return [str(n) for n in range(int(lo[0]), int(hi[0]) + 1)]
    if len(lo) == len(hi) == 2 and lo[0] == hi[0] and int(lo[1]) <= int(hi[1]):
        return [f"{lo[0]}.{n}" for n in range(int(lo[1]), int(hi[1]) + 1)]
    return [low, high]


def citations_in(text: str) -> list[Citation]:
    """Every doc citation in ``text``, one per section it names."""
    found = []
    for m in CITATION.finditer(text):
        prefixed = bool(m["prefix"] and m["ext"])
        if not prefixed and m["name"] not in KNOWN:
            continue  # "foo §3" is no citation of ours; "docs/foo.md §3" is, and must resolve
        sections = [m["first"]]
        for more in _MORE.finditer(m["more"]):
            if more["sep"] == ",":
                sections.append(more["number"])
            else:
                sections[-1:] = _range(sections[-1], more["number"])
        found += [Citation(m["name"] + ".md", s, prefixed) for s in sections]
    return found


def headings(doc: Path) -> set[str]:
    """The section numbers of ``doc``'s headings, outside fenced code blocks."""
    numbers, fenced = set(), False
    for line in doc.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := HEADING.match(line)):
            numbers.add(m[1])
    return numbers


def scanned_files() -> list[Path]:
    files = []
    for top in SCANNED:
        candidates = [top] if top.is_file() else sorted(top.rglob("*"))
        for path in candidates:
            parts = set(path.relative_to(ROOT).parts)
            if (
                path.is_file()
                and path != Path(__file__).resolve()  # its examples are not citations
                and path.suffix in TEXT_SUFFIXES
                and not parts & SKIPPED_PARTS
                and not any(p.endswith(".egg-info") for p in parts)
            ):
                files.append(path)
    return files


def all_citations() -> dict[Citation, list[str]]:
    """Citation -> where it occurs (``file:line``)."""
    places: dict[Citation, list[str]] = defaultdict(list)
    for path in scanned_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for c in citations_in(line):
                places[c].append(f"{path.relative_to(ROOT)}:{number}")
    return dict(places)


CITATIONS = all_citations()


def _id(c: Citation) -> str:
    return f"{'docs/' if c.prefixed else ''}{c.doc}#{c.section}"  # ASCII: pytest escapes §


@pytest.mark.parametrize(
    "text, expected",
    [
        ("see docs/codex-contract.md §7.2.", [("codex-contract.md", "7.2", True)]),
        ("(codex-contract.md §4–6)", [("codex-contract.md", s, False) for s in "456"]),
        (
            "mitmproxy-notes.md §5-§6",
            [("mitmproxy-notes.md", "5", False), ("mitmproxy-notes.md", "6", False)],
        ),
        ("mitmproxy-notes §0", [("mitmproxy-notes.md", "0", False)]),
        ("providers.md §1.2, §2", [("providers.md", "1.2", False), ("providers.md", "2", False)]),
        ("(providers.md §3, item 6)", [("providers.md", "3", False)]),
        ("(providers.md §3, 4)", [("providers.md", "3", False)]),
        (
            "docs/codex-contract.md §7.1–7.3",
            [("codex-contract.md", f"7.{n}", True) for n in (1, 2, 3)],
        ),
        ("docs/new-doc.md §2", [("new-doc.md", "2", True)]),
        ("RFC 9110 §15.5", []),
        ("README.md §3", []),
        ("the contract (§14)", []),
    ],
)
def test_citations_are_read_as_written(text, expected):
    assert [(c.doc, c.section, c.prefixed) for c in citations_in(text)] == expected


def test_headings_are_read_outside_code_blocks(tmp_path):
    doc = tmp_path / "d.md"
    doc.write_text("# Title\n## 0. Glance\n```toml\n# 9 not a heading\n```\n### 7.2 Events\n")
    assert headings(doc) == {"0", "7.2"}


def test_the_code_cites_the_docs():
    # A scanner that finds nothing would pass every other test here.
    assert sum(len(v) for v in CITATIONS.values()) >= 50
    assert {c.doc for c in CITATIONS} >= {"codex-contract.md", "mitmproxy-notes.md"}


@pytest.mark.parametrize("citation", sorted(CITATIONS, key=_id), ids=_id)
def test_every_citation_resolves(citation: Citation):
    where = ", ".join(CITATIONS[citation])
    doc = DOCS / citation.doc
    if not citation.prefixed:
        assert BARE_FORMS_ALLOWED, f"write docs/{citation.doc} §{citation.section} ({where})"
        if not doc.exists():
            pytest.skip(f"docs/{citation.doc} is not written yet (bare citation at {where})")
    assert doc.exists(), f"docs/{citation.doc} does not exist (cited at {where})"
    assert citation.section in headings(doc), (
        f"docs/{citation.doc} has no section {citation.section} (cited at {where})"
    )
