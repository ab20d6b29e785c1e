"""The API's manners on a real screen's process (its home: readers never reach a worker) and the worker
it forwards directives to (issue 26): a token over its rate gets 429 with Retry-After while another
token is served; requests without a known token are limited per address; a body over the bound is a 413
and invalid text a 400 naming why (never a 500), each forwarded refusal audited within its token's
budget; a live alert stream ends once its token is revoked from the tokens file."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from stream_app.api.auth import create_token
from stream_app.config.blueprint import Blueprint
from stream_app.settings import Settings

from .support import API_TOKENS, api_address, to_the_end

KEY = "levels:HYD.WATER_LEVEL|HYD.WATER_LEVEL|01|HN-LONGBIEN"


def _call(
    base: str, path: str, token: str | None, data: bytes | None = None
) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON body) of ``/api/v1<path>``; POST when ``data`` is given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(f"{base}/api/v1{path}", data=data, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310 - a local server
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"{}")


def _directives_path() -> str:
    return f"/alerts/{urllib.parse.quote(KEY, safe='')}/directives"


def test_a_token_over_its_rate_gets_429_and_another_token_is_served(
    settings: Settings, start_screen: Any
) -> None:
    start_screen(STREAM_APP_API_REQUESTS_PER_S="1", STREAM_APP_API_BURST="3")
    base = api_address(settings)
    answers = [_call(base, "/whoami", API_TOKENS["viewer"]) for _ in range(6)]
    statuses = [status for status, _, _ in answers]
    assert statuses[:3] == [200, 200, 200]
    assert 429 in statuses[3:], statuses
    _, headers, body = next(a for a in answers if a[0] == 429)
    assert int(headers["Retry-After"]) >= 1
    assert (body["error"], body["reason"]) == ("too_many_requests", "rate")
    assert _call(base, "/whoami", API_TOKENS["operator"])[0] == 200, "the other token has its own bucket"
    time.sleep(2)
    assert _call(base, "/whoami", API_TOKENS["viewer"])[0] == 200, "served again once refilled"


def test_requests_without_a_known_token_are_limited_per_address(
    settings: Settings, start_screen: Any
) -> None:
    start_screen(STREAM_APP_API_ANONYMOUS_REQUESTS_PER_S="0.5", STREAM_APP_API_ANONYMOUS_BURST="3")
    base = api_address(settings)
    statuses = [_call(base, "/whoami", f"sat_guess{n}")[0] for n in range(6)]
    assert statuses[:3] == [401, 401, 401]
    assert set(statuses[3:]) == {429}, "guessing tokens is slowed down"
    assert _call(base, "/whoami", API_TOKENS["viewer"])[0] == 200, "a known token is not the address's"


def test_bodies_are_bounded_and_invalid_text_is_a_400_audited_within_the_budget(
    settings: Settings, blueprint: Blueprint, start_worker: Any, start_screen: Any
) -> None:
    start_screen()
    start_worker(settings, STREAM_APP_API_REFUSAL_AUDITS_PER_MINUTE="2")
    base, token = api_address(settings), API_TOKENS["operator"]
    path = _directives_path()
    big = json.dumps({"action": "COMMENT", "comment": "x" * 100_000}).encode()
    # refused by the screen before any of it is read (nothing forwarded: counted, not audited)
    assert _call(base, path, token, big)[0] == 413
    status, _, body = _call(base, path, token, b'{"action": "COMMENT", "comment": "\\ud800"}')
    assert (status, body["reason"]) == (400, "lone_surrogate")
    status, _, body = _call(base, path, token, b'{"action": "COMMENT", "comment": "\xff"}')
    assert (status, body["reason"]) == (400, "not_utf8")
    status, _, body = _call(base, path, token, b'{"action": ')
    assert (status, body["reason"]) == (400, "not_json")
    audit = blueprint.topic_by_role("audit").name
    records = [m for m in to_the_end(settings, audit, timeout=20) if m is not None]
    assert len(records) == 2, "three refusals forwarded, two audited: the budget; the rest counted"
    assert _call(base, "/whoami", token)[0] == 200, "the API is fine"


# ------------------------------------------------------------------------------ the screen


@pytest.fixture
def tokens(tmp_path: Path) -> tuple[Path, str]:
    """A tokens file of the test's own (one viewer), to revoke from."""
    path = tmp_path / "tokens.toml"
    return path, create_token(path, "revoked-viewer", "viewer")


@pytest.fixture
def screen(settings: Settings, start_screen: Any, tokens: tuple[Path, str]) -> str:
    """The screen's process with the test's tokens file; its address."""
    start_screen(STREAM_APP_API_TOKENS_FILE=str(tokens[0]))
    return api_address(settings)


def test_a_live_stream_ends_once_its_token_is_revoked(screen: str, tokens: tuple[Path, str]) -> None:
    path, token = tokens
    request = urllib.request.Request(  # noqa: S310 - the local screen
        f"{screen}/api/v1/alerts/stream", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=40) as stream:  # noqa: S310
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert stream.readline() == b"retry: 2000\n"
        path.write_text("")  # revoked: the tokens file no longer holds it (read again when it changes)
        revoked_at = time.monotonic()
        received = stream.read()  # until the screen ends the stream
    took = time.monotonic() - revoked_at
    assert b"event: revoked" in received
    assert took <= 20, f"ended {took:.1f} s after the revocation: at the next heartbeat (15 s)"
    assert _call(screen, "/whoami", token)[0] == 401
