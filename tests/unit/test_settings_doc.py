"""docs/settings.md is generated from the settings object and must not drift from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_app.settings import Settings
from stream_app.tools import settings_doc


def test_docs_settings_md_is_up_to_date() -> None:
    problem = settings_doc.check()
    assert problem is None, problem  # the message says: run `make docs`


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_every_setting_has_a_description(name: str) -> None:
    description = Settings.model_fields[name].description
    assert description, (
        f"Settings.{name} has no description: add Field(..., description=...) in stream_app/settings.py, "
        "then `make docs`"
    )
    assert description.strip()


def test_one_row_per_setting_with_its_variable() -> None:
    rows = [line for line in settings_doc.render().splitlines() if line.startswith("| `STREAM_APP_")]
    assert [row.split("`")[1] for row in rows] == [
        f"STREAM_APP_{name.upper()}" for name in Settings.model_fields
    ]


def test_secrets_and_paths_are_shown_safely() -> None:
    text = settings_doc.render()
    assert "redis://" not in text  # a secret's default is redacted, never printed
    assert str(settings_doc.REPO_ROOT) not in text  # paths relative to the repository
    row = next(line for line in text.splitlines() if line.startswith("| `STREAM_APP_CATALOGUE_DIR`"))
    default = row.split(" | ")[2]
    assert default.startswith("`")
    assert not default.startswith("`/")
    assert default.endswith("catalogue`")


def test_check_reports_a_drifted_file_and_how_to_regenerate(tmp_path: Path) -> None:
    drifted = tmp_path / "settings.md"
    drifted.write_text(settings_doc.render().replace("Prefix for every Redis key.", "old words"))
    problem = settings_doc.check(drifted)
    assert problem is not None
    assert "make docs" in problem
    assert "old words" in problem  # the diff
    assert settings_doc.main(["--check", "--path", str(drifted)]) == 1
    drifted.write_text(settings_doc.render())
    assert settings_doc.check(drifted) is None
    assert settings_doc.main(["--check", "--path", str(drifted)]) == 0


def test_check_reports_a_missing_file(tmp_path: Path) -> None:
    problem = settings_doc.check(tmp_path / "nowhere.md")
    assert problem is not None
    assert "missing" in problem


def test_cells_are_safe_in_a_markdown_table() -> None:
    cell = settings_doc._cell("a | b\n  <topic>-value `x<y>`")
    assert cell == "a \\| b &lt;topic>-value `x<y>`"
