"""``POST /api/v1/alerts/{key}/directives`` and the alert's occurrence (issue 26, "a directive is about one
occurrence"): the API refuses at once (409, ``stale_alert``) a directive the state already shows to be
about an earlier occurrence, publishes the others, and never lets the check hold a directive back when
Redis cannot answer (the worker's step checks again, and that check is the one that holds)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from redis import exceptions as redis_errors

from stream_app.api import http
from stream_app.api.auth import create_token
from stream_app.config.blueprint import Blueprint, load_blueprint
from stream_app.domain.entity import AlertMeta, EntityState
from stream_app.kafka.publisher import Output
from stream_app.ops import retry
from stream_app.settings import Settings
from stream_app.wire import codecs

pytestmark = pytest.mark.asyncio

SETTINGS = Settings.model_construct(retry_initial_s=0.001, retry_max_s=0.002)
RULE = "levels:HYD.WATER_LEVEL"
ENTITY = "HYD.WATER_LEVEL|01|HN-LONGBIEN"
KEY = f"{RULE}|{ENTITY}"  # the flood alarm at Long Biên
FIRST, SECOND, SECOND_ACK = "alr-first-firing", "alr-second-firing", "alr-second-ack"


@pytest.fixture(autouse=True)
def _nothing_down() -> Iterator[None]:
    for dependency in ("kafka", "redis"):
        retry.probed(dependency, reachable=True)
    yield
    for dependency in ("kafka", "redis"):
        retry.probed(dependency, reachable=True)


class _Publisher:
    def __init__(self) -> None:
        self.published: list[Output] = []

    async def publish(self, outputs: Sequence[Output]) -> list[tuple[Output, BaseException]]:
        self.published.extend(outputs)
        return []


class _States:
    """The state layer's one read the endpoint uses; ``failure`` stands for Redis refusing, ``hang`` for
    Redis not answering."""

    def __init__(self, state: EntityState | None, *, failure: Exception | None = None, hang: bool = False):
        self.state, self.failure, self.hang = state, failure, hang
        self.asked: list[str] = []

    async def entity_state(self, entity: str) -> EntityState | None:
        self.asked.append(entity)
        if self.hang:
            await asyncio.sleep(60)
        if self.failure is not None:
            raise self.failure
        return self.state


class _Web:
    """What the handler answers through (Faust's view, or the screen's stand-in)."""

    @staticmethod
    def json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return status, body


class _Body:
    """A request body as aiohttp's stream gives it: ``read(n)`` returns up to n bytes, b"" at the end."""

    def __init__(self, raw: bytes) -> None:
        self._raw = raw

    async def read(self, n: int = -1) -> bytes:
        chunk, self._raw = (self._raw, b"") if n < 0 else (self._raw[:n], self._raw[n:])
        return chunk


class _Request:
    def __init__(self, token: str, body: dict[str, Any]) -> None:
        self.headers = {"Authorization": f"Bearer {token}"}
        raw = json.dumps(body).encode()
        self.content_length = len(raw)
        self.content = _Body(raw)


def _refired() -> EntityState:
    """Long Biên fired, resolved and fired again; the center acknowledged the second occurrence."""
    meta = AlertMeta(
        transition="FIRING",
        alert_id=SECOND,
        acknowledged_by="truc-ban-1",
        occurrence=SECOND,
        opened_at=1_000,
        changes=(SECOND, SECOND_ACK),
    )
    return EntityState(meta={RULE: meta})


class _Rig:
    def __init__(self, tmp_path: Path, states: http.EntityStates | None) -> None:
        self.blueprint: Blueprint = load_blueprint(SETTINGS)
        tokens = tmp_path / "tokens.toml"
        self.token = create_token(tokens, "nguyen.van.a", "operator")
        self.publisher = _Publisher()
        self.directives = http.Directives(self.blueprint, self.publisher, http.Authenticator(tokens), states)

    async def post(self, body: dict[str, Any]) -> tuple[int, Any]:
        answer: tuple[int, Any] = await self.directives.post(_Web, _Request(self.token, body), KEY)
        return answer

    def topics(self) -> list[str]:
        return [o.topic for o in self.publisher.published]

    def audited(self) -> list[dict[str, Any]]:
        audit = self.blueprint.topic_by_role("audit").name
        return [
            codecs.decode(self.blueprint.schemas, "audit", o.value or b"")
            for o in self.publisher.published
            if o.topic == audit
        ]


async def test_a_directive_about_an_earlier_occurrence_is_a_409_and_nothing_is_published(
    tmp_path: Path,
) -> None:
    states = _States(_refired())
    rig = _Rig(tmp_path, states)
    status, body = await rig.post({"action": "ACKNOWLEDGE", "alert_id": FIRST})
    assert status == 409
    assert (body["error"], body["reason"], body["alert_key"]) == ("conflict", "stale_alert", KEY)
    assert FIRST in body["detail"]
    assert SECOND in body["detail"], "names the occurrence that is current"
    assert states.asked == [ENTITY]
    directives = rig.blueprint.topic_by_role("directives").name
    assert directives not in rig.topics(), "the new occurrence is never acknowledged by it"
    [refusal] = rig.audited()
    assert (refusal["outcome"], refusal["details"]["reason"]) == ("refused", "stale_alert")
    assert refusal["details"]["alert_id"] == FIRST


@pytest.mark.parametrize("seen", [SECOND, SECOND_ACK])
async def test_a_directive_naming_a_change_of_the_current_occurrence_is_published(
    tmp_path: Path, seen: str
) -> None:
    rig = _Rig(tmp_path, _States(_refired()))
    status, body = await rig.post({"action": "COMMENT", "alert_id": seen, "comment": "theo dõi"})
    assert status == 202, body
    directives = rig.blueprint.topic_by_role("directives").name
    [sent] = [o for o in rig.publisher.published if o.topic == directives]
    record = codecs.decode(rig.blueprint.schemas, "directive", sent.value or b"")
    assert (record["alert_id"], record["actor"]) == (seen, "nguyen.van.a")


async def test_a_directive_naming_no_occurrence_is_published_for_the_current_one(tmp_path: Path) -> None:
    """Issued now, after the current occurrence fired: the worker applies it to that one."""
    rig = _Rig(tmp_path, _States(_refired()))
    status, _ = await rig.post({"action": "ACKNOWLEDGE"})
    assert status == 202


@pytest.mark.parametrize(
    "states",
    [
        _States(None),  # no state for the entity: the worker answers unknown_alert
        _States(EntityState()),  # no alert of that rule there
        _States(EntityState(meta={RULE: AlertMeta(transition="FIRING", alert_id=SECOND)})),  # older state
        _States(None, failure=redis_errors.ConnectionError("refused")),
    ],
    ids=["no-state", "no-alert", "before-occurrences", "redis-refuses"],
)
async def test_a_directive_the_state_cannot_judge_now_is_published_for_the_worker_to_check(
    tmp_path: Path, states: _States
) -> None:
    rig = _Rig(tmp_path, states)
    status, _ = await rig.post({"action": "ACKNOWLEDGE", "alert_id": FIRST})
    assert status == 202


async def test_a_state_store_that_does_not_answer_delays_a_directive_by_the_check_bound_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "STATE_CHECK_TIMEOUT_S", 0.05)
    rig = _Rig(tmp_path, _States(_refired(), hang=True))
    status, _ = await asyncio.wait_for(rig.post({"action": "ACKNOWLEDGE", "alert_id": FIRST}), 5)
    assert status == 202


async def test_redis_known_down_is_not_asked(tmp_path: Path) -> None:
    states = _States(_refired())
    rig = _Rig(tmp_path, states)
    retry.probed("redis", reachable=False)
    status, _ = await rig.post({"action": "ACKNOWLEDGE", "alert_id": FIRST})
    assert status == 202
    assert states.asked == []
