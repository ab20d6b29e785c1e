"""The command line's contracts: ``--version``, ``alerts tail --domain`` (an unknown domain is a usage
error naming the domains, before anything connects) and NO_COLOR (https://no-color.org)."""

from __future__ import annotations

import io
import os
import sys
import tomllib
from importlib import metadata
from typing import Any

import pytest

import stream_app
from stream_app.domain.catalogue import DOMAINS
from stream_app.exit_codes import ExitCode
from stream_app.logs import colour_allowed, logging_config
from stream_app.settings import REPO_ROOT, Settings
from stream_app.tools import tail
from stream_app.tools.cli import main


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The repository's own settings and no NO_COLOR, whatever the developer's shell holds."""
    for name in list(os.environ):
        if name.upper().startswith("STREAM_APP_") or name == "NO_COLOR":
            monkeypatch.delenv(name)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


# --- --version -----------------------------------------------------------------------------------------


def test_version_is_the_installed_packages(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"stream-app {metadata.version('stream-app')}\n"


def test_version_without_package_metadata_is_the_modules(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"stream-app {stream_app.__version__}\n"


def test_the_fallback_version_is_the_projects() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert stream_app.__version__ == pyproject["project"]["version"]


# --- alerts tail --domain --------------------------------------------------------------------------------


@pytest.fixture
def followed(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What ``tail.follow`` was asked to read; nothing connects (a consumer fails the test)."""
    calls: list[dict[str, Any]] = []

    def follow(settings: Settings, schemas: Any, topics: dict[str, str], *_args: Any, **options: Any) -> None:
        calls.append({"topics": topics, **options})

    def no_consumer(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("nothing may connect")

    monkeypatch.setattr(tail, "follow", follow)
    monkeypatch.setattr(tail, "Consumer", no_consumer)
    return calls


@pytest.mark.parametrize(
    ("domain", "hint"),
    [
        pytest.param("socio-economic", " (did you mean socio_economic?)", id="hyphenated"),
        pytest.param("weather", "", id="unknown"),
        pytest.param("", "", id="empty"),
    ],
)
def test_alerts_tail_of_an_unknown_domain_is_a_usage_error_naming_the_domains(
    capsys: pytest.CaptureFixture[str], followed: list[dict[str, Any]], domain: str, hint: str
) -> None:
    assert main(["alerts", "tail", "--domain", domain]) == ExitCode.USAGE
    assert followed == []
    err = capsys.readouterr().err
    assert err.startswith(f"stream-app alerts: unknown domain {domain!r}{hint}; the domains are: ")
    listed = err.strip().rpartition("the domains are: ")[2].split(", ")
    assert listed == sorted(DOMAINS)  # from the topics, which name every catalogue domain


def test_alerts_tail_of_a_domain_reads_its_topic(followed: list[dict[str, Any]]) -> None:
    assert main(["alerts", "tail", "--domain", "socio_economic", "--duration", "0"]) == 0
    assert [call["topics"] for call in followed] == [{"center.alerts.socio_economic": "alert"}]
    assert main(["alerts", "tail", "--duration", "0"]) == 0
    assert followed[-1]["topics"] == {"center.alerts": "alert"}


# --- NO_COLOR --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("no_color", "coloured"),
    [
        pytest.param(None, True, id="unset"),
        pytest.param("1", False, id="set"),
        pytest.param("0", False, id="any-value"),
        pytest.param("", True, id="empty-is-unset"),
    ],
)
def test_colour_only_on_a_terminal_without_no_color(
    monkeypatch: pytest.MonkeyPatch, no_color: str | None, coloured: bool
) -> None:
    if no_color is not None:
        monkeypatch.setenv("NO_COLOR", no_color)
    assert colour_allowed(_Terminal()) is coloured
    assert colour_allowed(io.StringIO()) is False  # never into a file or a pipe
    assert colour_allowed(object()) is False


@pytest.mark.parametrize(("no_color", "coloured"), [(None, True), ("1", False)])
def test_alerts_tail_colours_levels_unless_no_color(
    monkeypatch: pytest.MonkeyPatch, followed: list[dict[str, Any]], no_color: str | None, coloured: bool
) -> None:
    if no_color is not None:
        monkeypatch.setenv("NO_COLOR", no_color)
    monkeypatch.setattr(sys, "stdout", _Terminal())
    assert main(["alerts", "tail", "--duration", "0"]) == 0
    assert main(["tail", "--duration", "0"]) == 0
    assert [call["colour"] for call in followed] == [coloured, coloured]


@pytest.mark.parametrize(("no_color", "coloured"), [(None, True), ("1", False)])
def test_console_logs_are_coloured_unless_no_color(
    monkeypatch: pytest.MonkeyPatch, no_color: str | None, coloured: bool
) -> None:
    if no_color is not None:
        monkeypatch.setenv("NO_COLOR", no_color)
    monkeypatch.setattr(sys, "stderr", _Terminal())
    config = logging_config(Settings.model_construct().model_copy(update={"log_format": "console"}))
    renderer = config["formatters"]["structlog"]["processors"][-1]
    line = renderer(None, "info", {"event": "worker_starting", "level": "info", "topics": 3})
    assert "worker_starting" in line
    assert ("\x1b[" in line) is coloured


def test_an_alert_line_has_no_escape_codes_without_colour() -> None:
    alert = {
        "transition": "FIRING",
        "station": None,
        "region": "01",
        "indicator": "ENV.AQI",
        "value": 160.0,
        "level_name_vi": "Xấu",
        "level_name_en": "bad",
        "colour": "#FF0000",
        "event_time": 1_730_419_200_000,
        "alert_id": "a-1",
    }
    assert "\x1b[" not in tail.format_alert(alert, colour=False)
    assert "\x1b[1;38;2;255;0;0m" in tail.format_alert(alert, colour=True)
