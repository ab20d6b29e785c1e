"""The shipped alert rules' runbook links (stream_app.ops.rules): absolute, each to a section of
docs/runbook.md, and rendered for a deployment's own runbook address by
`stream-app monitoring render-rules`."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from stream_app.exit_codes import ExitCode
from stream_app.ops.rules import render_rules, runbook_anchors, runbook_urls
from stream_app.settings import REPO_ROOT, Settings
from stream_app.tools.cli import main

RULES = REPO_ROOT / "deploy" / "prometheus" / "rules" / "stream-app.yml"
RUNBOOK = REPO_ROOT / "docs" / "runbook.md"
DEFAULT_RUNBOOK_URL = Settings.model_fields["runbook_url"].default


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _github_anchor(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _runbook_anchors() -> set[str]:
    text = RUNBOOK.read_text(encoding="utf-8")
    return {_github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


def test_the_shipped_rules_are_the_rendering_with_the_default_runbook_address() -> None:
    rules = RULES.read_text(encoding="utf-8")
    assert render_rules(rules, DEFAULT_RUNBOOK_URL) == rules
    assert len(runbook_urls(rules)) == len(_alerts())  # every annotation is one the renderer rewrites


def test_every_alert_links_an_absolute_runbook_address_at_its_own_section() -> None:
    sections = _runbook_anchors()
    alerts = _alerts()
    assert len(alerts) >= 20
    for alert in alerts:
        url = urllib.parse.urlsplit(alert["annotations"]["runbook_url"])
        assert url.scheme == "https", alert["alert"]
        assert url.netloc, alert["alert"]
        assert url.fragment == alert["alert"].lower(), alert["alert"]
        assert url.fragment in sections, f"docs/runbook.md has no section for {alert['alert']}"


def test_rendering_moves_every_link_to_the_address_given_and_changes_nothing_else() -> None:
    rules = RULES.read_text(encoding="utf-8")
    rendered = render_rules(rules, "https://wiki.example.vn/ops/runbook")
    assert runbook_urls(rendered) == [
        f"https://wiki.example.vn/ops/runbook#{a}" for a in runbook_anchors(rules)
    ]
    changed = [
        (before, after)
        for before, after in zip(rules.splitlines(), rendered.splitlines(), strict=True)
        if before != after
    ]
    assert len(changed) == len(_alerts())
    assert all("runbook_url:" in before for before, _ in changed)


def test_render_rules_writes_the_rules_at_the_runbook_address_of_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAM_APP_RUNBOOK_URL", "https://wiki.example.vn/stream-app/runbook.md")
    out = tmp_path / "stream-app.yml"
    assert main(["monitoring", "render-rules", "--out", str(out)]) == 0
    urls = runbook_urls(out.read_text(encoding="utf-8"))
    assert urls
    assert all(u.startswith("https://wiki.example.vn/stream-app/runbook.md#streamapp") for u in urls)
    assert yaml.safe_load(out.read_text(encoding="utf-8"))["groups"]


def test_render_rules_names_a_rules_file_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["monitoring", "render-rules", "--rules", str(tmp_path / "missing.yml")]) == ExitCode.CONFIG
    assert "missing.yml" in capsys.readouterr().err


@pytest.mark.parametrize("url", ["docs/runbook.md", "https://wiki.example.vn/runbook.md#top", "ftp://x/y"])
def test_the_runbook_address_is_absolute_and_without_an_anchor(url: str) -> None:
    with pytest.raises(ValidationError):
        Settings(runbook_url=url)
