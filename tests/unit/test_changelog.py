"""CHANGELOG.md: Keep a Changelog's shape, an Upgrading section in every release, and the newest
release is the version pyproject.toml builds."""

from __future__ import annotations

import re
import tomllib

from stream_app.settings import REPO_ROOT

CHANGELOG = (REPO_ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
KINDS = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security", "Upgrading"}


def _releases() -> list[tuple[str, str]]:
    """(heading, body) of each ``## [...]`` section, newest first."""
    parts = re.split(r"(?m)^## ", CHANGELOG)[1:]
    return [(part.split("\n", 1)[0], part.split("\n", 1)[1]) for part in parts]


def test_every_release_has_an_upgrading_section_and_known_kinds_only() -> None:
    releases = _releases()
    assert releases[0][0] == "[Unreleased]"
    for heading, body in releases:
        kinds = re.findall(r"(?m)^### (.+)$", body)
        assert "Upgrading" in kinds, heading
        assert set(kinds) <= KINDS, heading
        if heading != "[Unreleased]":
            assert re.fullmatch(r"\[\d+\.\d+\.\d+\] - \d{4}-\d{2}-\d{2}", heading), heading


def test_the_newest_release_is_the_version_pyproject_builds() -> None:
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    released = [heading for heading, _ in _releases() if heading != "[Unreleased]"]
    assert released[0].startswith(f"[{version}] - ")
    for heading in ["[Unreleased]", *released]:
        label = heading.split(" ", 1)[0]
        assert re.search(rf"(?m)^{re.escape(label)}: https?://\S+$", CHANGELOG), f"no link for {label}"
