"""The API's manners on a real worker and a real screen (issue 26): a token over its rate gets 429 with
Retry-After while another token is served; requests without a known token are limited per address; a
body over the bound is a 413 and invalid text a 400 naming why (never a 500), each refusal audited
within its token's budget; a live alert stream ends once its token is revoked from the tokens file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stream_app.api.auth import create_token
from stream_app.config.blueprint import Blueprint
from stream_app.kafka import acl
from stream_app.settings import Settings

from .conftest import principal_env, secured
from .support import API_TOKENS, free_port, settings_env, to_the_end

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


def _worker_url(settings: Settings) -> str:
    return f"http://{settings.web_host}:{settings.web_port}"


def _directives_path() -> str:
    return f"/alerts/{urllib.parse.quote(KEY, safe='')}/directives"


def test_a_token_over_its_rate_gets_429_and_another_token_is_served(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    start_worker(settings, STREAM_APP_API_REQUESTS_PER_S="1", STREAM_APP_API_BURST="3")
    base = _worker_url(settings)
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
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    start_worker(settings, STREAM_APP_API_ANONYMOUS_REQUESTS_PER_S="0.5", STREAM_APP_API_ANONYMOUS_BURST="3")
    base = _worker_url(settings)
    statuses = [_call(base, "/whoami", f"sat_guess{n}")[0] for n in range(6)]
    assert statuses[:3] == [401, 401, 401]
    assert set(statuses[3:]) == {429}, "guessing tokens is slowed down"
    assert _call(base, "/whoami", API_TOKENS["viewer"])[0] == 200, "a known token is not the address's"


def test_bodies_are_bounded_and_invalid_text_is_a_400_audited_within_the_budget(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    start_worker(settings, STREAM_APP_API_REFUSAL_AUDITS_PER_MINUTE="2")
    base, token = _worker_url(settings), API_TOKENS["operator"]
    path = _directives_path()
    big = json.dumps({"action": "COMMENT", "comment": "x" * 100_000}).encode()
    assert _call(base, path, token, big)[0] == 413
    status, _, body = _call(base, path, token, b'{"action": "COMMENT", "comment": "\\ud800"}')
    assert (status, body["reason"]) == (400, "lone_surrogate")
    status, _, body = _call(base, path, token, b'{"action": "COMMENT", "comment": "\xff"}')
    assert (status, body["reason"]) == (400, "not_utf8")
    status, _, body = _call(base, path, token, b'{"action": ')
    assert (status, body["reason"]) == (400, "not_json")
    audit = blueprint.topic_by_role("audit").name
    records = [m for m in to_the_end(settings, audit, timeout=20) if m is not None]
    assert len(records) == 2, "four refusals, two audited: the budget; the rest counted"
    assert _call(base, "/whoami", token)[0] == 200, "the worker is fine"


# ------------------------------------------------------------------------------ the screen


@pytest.fixture
def tokens(tmp_path: Path) -> tuple[Path, str]:
    """A tokens file of the test's own (one viewer), to revoke from."""
    path = tmp_path / "tokens.toml"
    return path, create_token(path, "revoked-viewer", "viewer")


@pytest.fixture
def screen(
    settings: Settings, blueprint: Blueprint, screen_redis_url: str, tokens: tuple[Path, str], tmp_path: Path
) -> Iterator[str]:
    """``stream-app screen`` as the center, with the test's tokens file; its address."""
    if secured(settings):
        acl.apply(blueprint, only={f"User:{settings.acl_center_user}"})
    port = free_port()
    env = {
        **os.environ,
        **settings_env(settings),
        "STREAM_APP_REDIS_URL": screen_redis_url,
        "STREAM_APP_API_TOKENS_FILE": str(tokens[0]),
        "STREAM_APP_SCREEN_PORT": str(port),
        "STREAM_APP_LOG_FORMAT": "json",
    }
    if secured(settings):
        center = principal_env("center")
        env["STREAM_APP_KAFKA_SASL_USERNAME"] = center["STREAM_APP_KAFKA_SASL_USERNAME"]
        env["STREAM_APP_KAFKA_SASL_PASSWORD"] = center["STREAM_APP_KAFKA_SASL_PASSWORD"]
    log_path = tmp_path / "screen.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream_app", "screen"], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    address = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{address}/livez", timeout=1):  # noqa: S310 - local
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the screen did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
    yield address
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    assert "Error handling request" not in log_path.read_text(errors="replace")


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


def test_the_screen_answers_a_comment_holding_a_lone_surrogate_with_a_400(
    settings: Settings, screen: str, tokens: tuple[Path, str], start_worker: Any
) -> None:
    path, _ = tokens
    operator = create_token(path, "screen-operator", "operator")
    # the screen forwards directives to the workers' API, which knows the same tokens
    start_worker(settings, STREAM_APP_API_TOKENS_FILE=str(path))
    status, _, body = _call(
        screen, _directives_path(), operator, b'{"action": "COMMENT", "comment": "a\\udfffb"}'
    )
    assert (status, body["reason"]) == (400, "lone_surrogate")
