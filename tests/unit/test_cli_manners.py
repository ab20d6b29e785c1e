"""The command line as a script drives it: distinct exit codes from one mapping, a bad setting in one
line, help text on every option, ``--output json`` on the verbs that report."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from stream_app.exceptions import ConfigurationError, RefusedError, ServiceUnreachableError, UsageError
from stream_app.exit_codes import ExitCode, for_error, plan_code, setting_errors
from stream_app.settings import Settings
from stream_app.tools import cli_parser, reporter
from stream_app.tools.cli import main


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The repository's own settings, whatever the developer's shell holds."""
    for name in list(os.environ):
        if name.upper().startswith("STREAM_APP_"):
            monkeypatch.delenv(name)


# --- one mapping from failures to exit codes ------------------------------------------------------------


def _validation_error() -> ValidationError:
    try:
        Settings(redis_wait_timeout_ms="soon")
    except ValidationError as exc:
        return exc
    raise AssertionError("expected a validation error")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        pytest.param(UsageError("--at: no offset"), ExitCode.USAGE, id="usage"),
        pytest.param(ConfigurationError("topics.toml lacks"), ExitCode.CONFIG, id="config"),
        pytest.param(ServiceUnreachableError("Kafka"), ExitCode.UNAVAILABLE, id="unreachable"),
        pytest.param(RefusedError("has members"), ExitCode.FAILED, id="refused"),
        pytest.param(KeyboardInterrupt(), ExitCode.INTERRUPTED, id="interrupted"),
    ],
)
def test_each_failure_has_its_own_code(error: BaseException, code: ExitCode) -> None:
    assert for_error(error) is code


def test_a_settings_validation_error_is_a_configuration_error() -> None:
    assert for_error(_validation_error()) is ExitCode.CONFIG


def test_an_unknown_exception_has_no_code_so_its_traceback_shows() -> None:
    assert for_error(KeyError("bug")) is None


def test_the_codes_are_distinct_and_usage_is_not_argparses_2() -> None:
    assert len({int(code) for code in ExitCode}) == len(ExitCode)
    assert (ExitCode.USAGE, ExitCode.UNAVAILABLE, ExitCode.CONFIG) == (64, 69, 78)  # sysexits.h
    assert plan_code(True) is ExitCode.CHANGES
    assert int(ExitCode.CHANGES) == 2
    assert plan_code(False) is ExitCode.OK


def test_a_usage_error_of_argparse_exits_64(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["topics", "frobnicate"])
    assert stopped.value.code == ExitCode.USAGE
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_a_refusal_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise RefusedError("Kafka user 'mae' has no credential")

    monkeypatch.setattr(reporter, "rotate", refuse)
    assert main(["reporter", "rotate", "MAE"]) == ExitCode.FAILED
    assert capsys.readouterr().err == "stream-app reporter: refused: Kafka user 'mae' has no credential\n"


# --- a bad setting: one line naming the variable --------------------------------------------------------


def test_a_bad_setting_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAM_APP_REDIS_WAIT_TIMEOUT_MS", "soon")
    assert main(["topics", "list"]) == ExitCode.CONFIG
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("stream-app topics: bad setting: STREAM_APP_REDIS_WAIT_TIMEOUT_MS: ")
    assert "(got 'soon')" in err
    assert "Traceback" not in err


def test_a_value_that_may_hold_a_secret_is_not_echoed() -> None:
    class _Urls(BaseModel):
        redis_url: int
        redis_timeout_ms: int

    try:
        _Urls.model_validate({"redis_url": "redis://u:s3cret@host", "redis_timeout_ms": "soon"})
    except ValidationError as exc:
        line = setting_errors(exc, "STREAM_APP_")
    assert line.startswith("STREAM_APP_REDIS_URL: ")
    assert "s3cret" not in line
    assert "; STREAM_APP_REDIS_TIMEOUT_MS: " in line
    assert "(got 'soon')" in line


# --- help on every option ---------------------------------------------------------------------------------


def _parsers(parser: argparse.ArgumentParser, path: str = "stream-app") -> Iterator[tuple[str, Any]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{path} {name}")


def test_every_option_and_argument_has_help() -> None:
    missing = [
        f"{path} {'/'.join(action.option_strings) or action.dest}"
        for path, parser in _parsers(cli_parser.parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and action.help in (None, "")
    ]
    assert missing == []


def test_every_subcommand_has_help() -> None:
    root = cli_parser.parser()
    missing = [
        f"{path} {choice.dest}"
        for path, parser in _parsers(root)
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for choice in action._choices_actions
        if not choice.help
    ]
    assert missing == []


def test_the_verbs_that_report_take_output_json() -> None:
    reporting = {
        "stream-app topics",
        "stream-app acl",
        "stream-app quotas",
        "stream-app dlq inspect",
        "stream-app dlq replay",
        "stream-app state status",
        "stream-app state rebuild",
        "stream-app state adopt",
        "stream-app schemas",
        "stream-app reporter",
        "stream-app group reset",
        "stream-app tick",
        "stream-app token create",
        "stream-app directive",
    }
    with_output = {
        path
        for path, parser in _parsers(cli_parser.parser())
        if any("--output" in action.option_strings for action in parser._actions)
    }
    assert reporting <= with_output


# --- --output json ------------------------------------------------------------------------------------------


def test_schemas_check_json_is_one_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas", "check", "--output", "json"]) == ExitCode.OK
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] is True
    assert document["mode"] == "FULL_TRANSITIVE"
    assert document["files"] > 0
    assert all(result["ok"] for result in document["results"])


def test_topics_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics", "list", "--output", "json"]) == ExitCode.OK
    topics = json.loads(capsys.readouterr().out)["topics"]
    assert {"name", "role", "partitions", "config"} <= set(topics[0])
    assert any(t["role"] == "alerts" for t in topics)


def test_acl_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["acl", "list", "--output", "json"]) == ExitCode.OK
    wanted = json.loads(capsys.readouterr().out)["wanted"]
    assert {"principal", "resource", "name", "pattern", "operation"} == set(wanted[0])


# --- progress bars only on a terminal -------------------------------------------------------------------


def test_progress_is_decided_by_the_terminal_unless_asked() -> None:
    parse = cli_parser.parser().parse_args
    assert parse(["state", "rebuild"]).progress is None  # None: stderr.isatty() decides
    assert parse(["state", "rebuild", "--progress"]).progress is True
    assert parse(["produce", "--reporter", "MAE", "f.jsonl", "--no-progress"]).progress is False
