"""Counts the user docs quote ("35 indicators", "23 reporters", "34 provinces") are the catalogue's, and
the user docs cite no internal issue numbers. A count of a part says which part before its noun ("7 daily
indicators", "13 hourly station series"): only a bare "<number> <noun>" is taken for the whole."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stream_app.domain.catalogue import Catalogue
from stream_app.settings import REPO_ROOT

# docs/performance.md is a measurement log, dated, that keeps what was true then.
USER_DOCS = sorted([REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")], key=lambda p: p.name)
USER_DOCS = [p for p in USER_DOCS if p.name not in {"performance.md", "CHANGELOG.md"}]
# not a legal text's number ("the Decision 293 indicators")
COUNT = re.compile(r"(?<!Decision )(?<!Decree )\b(\d[\d,]*) (indicators|reporters|provinces|units)\b")


def _expected(catalogue: Catalogue) -> dict[str, int]:
    units = sum(1 for region in catalogue.regions.values() if region.kind == "current")
    return {
        "indicators": len(catalogue.indicators),
        "reporters": len(catalogue.reporters),
        "provinces": units,
        "units": units,
    }


def _counts(path: Path) -> list[tuple[int, str, int]]:
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        found += [(number, m[2], int(m[1].replace(",", ""))) for m in COUNT.finditer(line)]
    return found


def test_the_catalogue_has_the_sizes_the_docs_are_checked_against(catalogue: Catalogue) -> None:
    expected = _expected(catalogue)
    assert expected["units"] == 34  # 34 province-level units since 2025-07-01
    assert expected["indicators"] > 0
    assert expected["reporters"] > 0


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda p: p.name)
def test_counts_quoted_in_the_docs_are_the_catalogues(path: Path, catalogue: Catalogue) -> None:
    expected = _expected(catalogue)
    wrong = [
        f"{path.name}:{line}: {count} {noun} (the catalogue has {expected[noun]})"
        for line, noun, count in _counts(path)
        if count != expected[noun]
    ]
    assert not wrong, wrong


def test_the_docs_quote_each_count_somewhere() -> None:
    nouns = {noun for path in USER_DOCS for _, noun, _ in _counts(path)}
    assert {"indicators", "reporters", "provinces"} <= nouns


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda p: p.name)
def test_the_user_docs_cite_no_internal_issue_numbers(path: Path) -> None:
    cited = re.findall(r"(?i)\bissues? #?\d+", path.read_text(encoding="utf-8"))
    assert not cited, f"{path.name}: {cited}"
