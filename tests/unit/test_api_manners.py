"""The API's manners (issue 26): bounded bodies (413), invalid text answered 400 with a reason (never a
500), refusals audited once but rate-limited per token, a write Kafka will not take answered 503 within
its bound and audited ``unconfirmed``, live streams closed when their token is revoked, and the
screen's cache keyed on rounded free parameters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from stream_app.api import bodies, http
from stream_app.api.auth import create_token
from stream_app.config.blueprint import Blueprint, load_blueprint
from stream_app.kafka.publisher import Output
from stream_app.ops import retry
from stream_app.screen.feed import HEARTBEAT, REVOKED, pump
from stream_app.screen.server import question
from stream_app.settings import Settings
from stream_app.wire import codecs

KEY = "levels:HYD.WATER_LEVEL|HYD.WATER_LEVEL|01|HN-LONGBIEN"


@pytest.fixture(autouse=True)
def _nothing_down() -> Iterator[None]:
    for dependency in ("kafka", "redis"):
        retry.probed(dependency, reachable=True)
    yield
    for dependency in ("kafka", "redis"):
        retry.probed(dependency, reachable=True)


# ------------------------------------------------------------------------------------ bodies


class _Stream:
    """aiohttp's ``request.content``: ``read(n)`` gives up to n bytes (here at most ``chunk``)."""

    def __init__(self, raw: bytes, chunk: int = 7) -> None:
        self.raw, self.chunk, self.asked = raw, chunk, 0

    async def read(self, n: int = -1) -> bytes:
        size = self.chunk if n < 0 else min(n, self.chunk)
        piece, self.raw = self.raw[:size], self.raw[size:]
        self.asked += len(piece)
        return piece


@pytest.mark.asyncio
async def test_a_body_is_read_to_its_bound_and_one_byte_more_is_a_413() -> None:
    assert await bodies.read_bounded(_Stream(b"x" * 100), 100) == b"x" * 100
    stream = _Stream(b"x" * 10_000)
    with pytest.raises(bodies.BodyRefusedError) as refused:
        await bodies.read_bounded(stream, 100)
    assert (refused.value.status, refused.value.reason) == (413, "too_large")
    assert stream.asked <= 101, "never read past the bound"


def test_a_declared_size_over_the_bound_is_refused_before_reading() -> None:
    bodies.check_declared_size(None, 10)
    bodies.check_declared_size(10, 10)
    with pytest.raises(bodies.BodyRefusedError) as refused:
        bodies.check_declared_size(11, 10)
    assert refused.value.body()["error"] == "payload_too_large"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"comment": "\xff"}', "not_utf8"),
        (b'{"comment": ', "not_json"),
        (b"[" * 100_000, "not_json"),
        (b'{"n": ' + b"9" * 10_000 + b"}", "not_json"),
    ],
)
def test_a_body_that_is_not_utf8_json_is_a_400_with_its_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(bodies.BodyRefusedError) as refused:
        bodies.parse_json(raw)
    assert (refused.value.status, refused.value.reason) == (400, reason)


def test_a_lone_surrogate_is_not_text() -> None:
    assert bodies.lone_surrogate("Lũ ở Long Biên 😊") is None
    assert bodies.lone_surrogate("ab\ud800") == 2
    with pytest.raises(bodies.BodyRefusedError) as refused:
        bodies.check_text("comment", "nước \udc00 lên")
    assert refused.value.reason == "lone_surrogate"
    assert "U+DC00" in refused.value.detail
    assert bodies.printable("a\ud800b") == "a\N{REPLACEMENT CHARACTER}b"


# -------------------------------------------------------------------------------- directives


class _Publisher:
    """Records what Kafka acknowledged; ``hang`` names topics Kafka never acknowledges."""

    def __init__(self, hang: frozenset[str] = frozenset()) -> None:
        self.hang = hang
        self.published: list[Output] = []

    async def publish(self, outputs: Sequence[Output]) -> list[tuple[Output, BaseException]]:
        if any(o.topic in self.hang for o in outputs):
            await asyncio.sleep(60)
        self.published.extend(outputs)
        return []


class _Web:
    @staticmethod
    def json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        return status, body, headers or {}


class _Request:
    def __init__(self, token: str, raw: bytes, *, declared: int | None = -1) -> None:
        self.headers = {"Authorization": f"Bearer {token}"}
        self.content_length = len(raw) if declared == -1 else declared
        self.content = _Stream(raw, chunk=4096)


class _Rig:
    def __init__(self, tmp_path: Path, role: str = "operator", **settings: Any) -> None:
        self.blueprint: Blueprint = load_blueprint(Settings.model_construct(**settings))
        tokens = tmp_path / "tokens.toml"
        self.token = create_token(tokens, "nguyen.van.a", role)
        self.audit_topic = self.blueprint.topic_by_role("audit").name
        self.directives_topic = self.blueprint.topic_by_role("directives").name
        self.publisher = _Publisher()
        self.directives = http.Directives(self.blueprint, self.publisher, http.Authenticator(tokens))

    async def post(self, raw: bytes, **request: Any) -> tuple[int, Any, Any]:
        answer: tuple[int, Any, Any] = await self.directives.post(
            _Web, _Request(self.token, raw, **request), KEY
        )
        return answer

    def audited(self) -> list[dict[str, Any]]:
        return [
            codecs.decode(self.blueprint.schemas, "audit", o.value or b"")
            for o in self.publisher.published
            if o.topic == self.audit_topic
        ]

    def directed(self) -> list[Output]:
        return [o for o in self.publisher.published if o.topic == self.directives_topic]


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


@pytest.mark.asyncio
async def test_a_comment_holding_a_lone_surrogate_is_a_400_audited_once_not_a_500(tmp_path: Path) -> None:
    rig = _Rig(tmp_path)
    # "\ud800" is valid JSON; the text it makes is not characters and cannot be encoded as UTF-8
    status, body, _ = await rig.post(b'{"action": "COMMENT", "comment": "n\\u01b0\\u1edbc \\ud800"}')
    assert (status, body["reason"]) == (400, "lone_surrogate")
    assert rig.directed() == []
    [record] = rig.audited()
    assert (record["outcome"], record["details"]["reason"]) == ("refused", "lone_surrogate")


@pytest.mark.asyncio
async def test_an_alert_key_holding_a_lone_surrogate_is_a_400(tmp_path: Path) -> None:
    rig = _Rig(tmp_path)
    answer = await rig.directives.post(
        _Web, _Request(rig.token, _json({"action": "ACKNOWLEDGE"})), "levels:X\ud800|A|01|HN"
    )
    assert (answer[0], answer[1]["reason"]) == (400, "lone_surrogate")
    [record] = rig.audited()
    assert "\ud800" not in record["subject"], "the audit record is itself encodable"


@pytest.mark.asyncio
async def test_a_body_over_the_bound_is_a_413_unread_and_invalid_utf8_a_400(tmp_path: Path) -> None:
    rig = _Rig(tmp_path, api_max_body_bytes=2048)
    big = _json({"action": "COMMENT", "comment": "x" * 5000})
    assert (await rig.post(big))[0] == 413
    assert (await rig.post(big, declared=None))[0] == 413, "no Content-Length (chunked): cut at the bound"
    status, body, _ = await rig.post(b'{"action": "COMMENT", "comment": "\xc3"}')
    assert (status, body["reason"]) == (400, "not_utf8")
    assert rig.directed() == []


@pytest.mark.asyncio
async def test_refusals_are_audited_once_each_up_to_the_budget_then_only_counted(tmp_path: Path) -> None:
    rig = _Rig(tmp_path, role="viewer", api_refusal_audits_per_minute=3)
    answers = [await rig.post(_json({"action": "ACKNOWLEDGE"})) for _ in range(10)]
    assert {a[0] for a in answers} == {403}, "each refused"
    assert len(rig.audited()) == 3, "the rest are counted in stream_app_api_refusals_unaudited_total"
    assert rig.directives.refusal_audits.unaudited(_token_id(rig)) == 7


def _token_id(rig: _Rig) -> str:
    identity = rig.directives.authenticator.identify(_Request(rig.token, b""))
    assert identity is not None
    return identity.token_id


@pytest.mark.asyncio
async def test_an_accepted_directive_is_audited_accepted_after_kafka_acknowledged_it(tmp_path: Path) -> None:
    rig = _Rig(tmp_path)
    status, body, _ = await rig.post(_json({"action": "ACKNOWLEDGE", "comment": "đã nhận"}))
    assert status == 202
    assert [o.topic for o in rig.publisher.published] == [rig.directives_topic, rig.audit_topic]
    [record] = rig.audited()
    assert (record["outcome"], record["details"]["directive_id"]) == ("accepted", body["directive_id"])


@pytest.mark.asyncio
async def test_a_write_kafka_does_not_take_is_a_503_within_the_bound_audited_unconfirmed(
    tmp_path: Path,
) -> None:
    rig = _Rig(tmp_path, api_write_timeout_s=0.05)
    rig.publisher.hang = frozenset({rig.directives_topic})
    status, body, headers = await asyncio.wait_for(rig.post(_json({"action": "ACKNOWLEDGE"})), 5)
    assert (status, body["dependency"], body["delivery"]) == (503, "kafka", "unconfirmed")
    assert "may still be delivered" in body["detail"]
    assert int(headers["Retry-After"]) > 0
    await asyncio.sleep(0.01)  # the audit record goes in the background
    [record] = rig.audited()
    assert record["outcome"] == "unconfirmed", "never 'accepted' of a directive Kafka did not acknowledge"
    assert record["details"]["directive_id"] == body["directive_id"]


def test_the_body_bound_must_hold_the_longest_directive() -> None:
    with pytest.raises(ValueError, match="api_max_body_bytes"):
        Settings(api_max_body_bytes=4096, directive_comment_max_length=2000)


# ------------------------------------------------------------------------------ live streams


@pytest.mark.asyncio
async def test_a_stream_closes_at_the_heartbeat_after_its_token_is_revoked() -> None:
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    written: list[bytes] = []
    valid = [True, True, False]  # the third check finds the token gone

    async def write(data: bytes) -> None:
        written.append(data)

    ended = await asyncio.wait_for(pump(queue, write, lambda: valid.pop(0), 0.01), 5)
    assert ended == "revoked"
    assert written == [HEARTBEAT, HEARTBEAT, REVOKED]


@pytest.mark.asyncio
async def test_a_steady_flow_of_alerts_does_not_skip_the_token_check() -> None:
    class Clock:
        now = 0.0

        def __call__(self) -> float:
            self.now += 1.0  # each look a second later: the check is due at every event
            return self.now

    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    for n in range(5):
        queue.put_nowait(b"event %d" % n)
    written: list[bytes] = []

    async def write(data: bytes) -> None:
        written.append(data)

    ended = await pump(queue, write, lambda: False, heartbeat_s=1.5, clock=Clock())
    assert ended == "revoked"
    assert written[-1] == REVOKED
    assert len(written) <= 3


@pytest.mark.asyncio
async def test_a_page_that_falls_behind_ends_its_stream() -> None:
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    queue.put_nowait(b"event: alert\n\n")
    queue.put_nowait(None)
    written: list[bytes] = []

    async def write(data: bytes) -> None:
        written.append(data)

    assert await pump(queue, write, lambda: True, 60) == "behind"
    assert written == [b"event: alert\n\n"]


# ----------------------------------------------------------------------------- screen cache


def test_a_free_time_is_asked_to_the_minute_so_seconds_do_not_skip_the_cache() -> None:
    first = question("/compliance", {"at": "2025-08-01T12:00:07+07:00", "reporter": "NSMO"})
    second = question("/compliance", {"reporter": "NSMO", "at": "2025-08-01T05:00:41Z", "x": "1"})
    assert first == second
    assert first[1]["at"] == "2025-08-01T12:00:00+07:00", "answered for the minute the key names"


def test_a_date_has_one_spelling_and_what_cannot_be_read_is_left_for_the_400() -> None:
    assert question("/briefing", {"date": "20250801"}) == question("/briefing", {"date": "2025-08-01"})
    assert question("/compliance", {"at": "soon"})[1] == {"at": "soon"}
    assert question("/indicators", {"at": "2025-08-01T12:00+07:00"}) == ("/indicators?", {})
