"""One identity per person (issue 26), the pure parts: who the ACL plan lets write directives and audit,
which directives the workers take as an authenticated person's act, and the screen's forwarding of a
directive to the workers' API (against a real aiohttp server standing in for a worker)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from stream_app.agents.directives import Router, unauthenticated
from stream_app.api.auth import Identity
from stream_app.config.blueprint import load_blueprint
from stream_app.domain.directives import Action, build
from stream_app.kafka import acl
from stream_app.kafka.publisher import Output
from stream_app.screen.commands import Commands
from stream_app.settings import Settings
from stream_app.wire import codecs

SECURED = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="stream-app")
TOKEN_ID = "0123456789ab"  # noqa: S105 - a token's id: digits of its digest, nothing secret
KEY = "levels:ENV.AQI|ENV.AQI|01|HN-AQ-HOANKIEM"


def _directive(**identity: str) -> dict[str, Any]:
    built = build(
        directive_id="dir-1",
        alert_key=KEY,
        alert_id="alr-1",
        reporter="MAE",
        action=Action.ACKNOWLEDGE,
        actor="nguyen.van.a",
        assignee=None,
        comment=None,
        issued_at=1_730_419_200_000,
        token_id="",
        writer="",
    )
    return {**built, **identity}


def test_the_plan_lets_only_the_workers_write_directives_and_audit_and_the_center_nothing() -> None:
    blueprint = load_blueprint(SECURED)
    plan = acl.grants(blueprint)
    who = acl.principals(blueprint.settings, blueprint)
    for role in ("directives", "audit"):
        topic = blueprint.topic_by_role(role).name
        assert {g.principal for g in plan if g.name == topic and g.operation == "WRITE"} == {who["app"]}
    assert not [g for g in plan if g.principal == who["center"] and g.operation == "WRITE"]
    assert {g.operation for g in plan if g.principal == who["center"]} == {"READ", "DESCRIBE"}


def test_the_directive_writers_are_the_workers_principal_and_anyone_without_authentication() -> None:
    assert acl.directive_writers(SECURED) == {"User:stream-app"}
    assert acl.own_principal(SECURED) == "User:stream-app"
    plain = Settings(kafka_security_protocol="PLAINTEXT")
    assert acl.directive_writers(plain) == {"User:stream-app", "User:ANONYMOUS"}
    assert acl.own_principal(plain) == "User:ANONYMOUS"


@pytest.mark.parametrize(
    ("identity", "why"),
    [
        ({}, "written by ''"),
        ({"token_id": TOKEN_ID, "writer": "User:center"}, "written by 'User:center'"),
        ({"writer": "User:stream-app"}, "no authenticated person"),
        ({"token_id": TOKEN_ID, "writer": "User:stream-app", "actor": ""}, "no authenticated person"),
        ({"token_id": TOKEN_ID, "writer": "User:stream-app"}, None),
    ],
)
def test_a_directive_is_a_persons_act_only_as_the_api_writes_it(
    identity: dict[str, str], why: str | None
) -> None:
    found = unauthenticated(_directive(**identity), frozenset({"User:stream-app"}))
    if why is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith(why)


def test_the_directives_agent_dead_letters_a_forged_directive_and_routes_an_authentic_one() -> None:
    blueprint = load_blueprint(SECURED)
    router = Router(blueprint, publisher=None)  # type: ignore[arg-type]
    topic = blueprint.topic_by_role("directives").name
    schema = blueprint.schemas.latest("directive")

    def route(record: dict[str, Any]) -> Any:
        message = SimpleNamespace(value=codecs.encode(schema, record), timestamp=None, topic=topic)
        return router._route_one(message, 0)

    forged = route(_directive())
    assert forged.reason == "unauthenticated_directive"
    authentic = route(_directive(token_id=TOKEN_ID, writer="User:stream-app"))
    assert isinstance(authentic, Output)
    assert authentic.topic == blueprint.topic_by_role("repartition").name


# ------------------------------------------------------------------ the screen forwards to the workers


def _worker_api(seen: list[dict[str, Any]]) -> web.Application:
    """A worker's directives endpoint: records what it was sent, answers as the real one would."""

    async def directives(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(
            {"key": request.match_info["key"], "auth": request.headers.get("Authorization"), "body": body}
        )
        if request.headers.get("Authorization") == "Bearer viewer-token":
            return web.json_response({"error": "forbidden"}, status=403)
        if json.loads(body).get("alert_id") == "old":
            return web.json_response({"error": "conflict", "reason": "stale_alert"}, status=409)
        return web.json_response(
            {"directive_id": "dir-2", "actor": "test-operator"}, status=202, headers={"Retry-After": "1"}
        )

    app = web.Application()
    app.router.add_post("/api/v1/alerts/{key}/directives", directives)
    return app


class _Request:
    """What the forwarder reads of the screen's request."""

    def __init__(self, body: bytes, token: str) -> None:
        self.content_length = len(body)
        self.headers = {"Authorization": f"Bearer {token}"}
        self.content = asyncio.StreamReader()
        self.content.feed_data(body)
        self.content.feed_eof()


def test_the_screen_forwards_a_directive_with_the_operators_token_and_answers_what_the_workers_did() -> None:
    operator = Identity("test-operator", "operator", token_id=TOKEN_ID)

    async def scenario() -> list[tuple[int, Any]]:
        seen: list[dict[str, Any]] = []
        async with TestServer(_worker_api(seen)) as server:
            commands = Commands(
                Settings(api_url=str(server.make_url("")).rstrip("/"), api_max_body_bytes=16 * 1024)
            )
            answers = []
            for body, token in (
                (b'{"action": "ACKNOWLEDGE"}', "operator-token"),
                (b'{"action": "ACKNOWLEDGE", "alert_id": "old"}', "operator-token"),
                (b'{"action": "ACKNOWLEDGE"}', "viewer-token"),
                (b"x" * 20_000, "operator-token"),  # over the body limit: never forwarded
            ):
                answer = await commands.forward(_Request(body, token), KEY, operator)  # type: ignore[arg-type]
                answers.append((answer.status, json.loads(answer.body)))  # type: ignore[arg-type]
            await commands.close()
        assert [s["auth"] for s in seen] == ["Bearer operator-token"] * 2 + ["Bearer viewer-token"]
        assert {s["key"] for s in seen} == {KEY}
        return answers

    answers = asyncio.run(scenario())
    assert [status for status, _ in answers] == [202, 409, 403, 413]
    assert answers[0][1]["actor"] == "test-operator"
    assert answers[1][1]["reason"] == "stale_alert"


def test_the_screen_answers_503_naming_the_workers_when_they_do_not_answer() -> None:
    operator = Identity("test-operator", "operator", token_id=TOKEN_ID)

    async def scenario() -> tuple[int, Any]:
        commands = Commands(Settings(api_url="http://127.0.0.1:9", api_write_timeout_s=1))
        answer = await commands.forward(_Request(b'{"action": "COMMENT"}', "t"), KEY, operator)  # type: ignore[arg-type]
        await commands.close()
        return answer.status, json.loads(answer.body)  # type: ignore[arg-type]

    status, body = asyncio.run(scenario())
    assert status == 503
    assert (body["error"], body["dependency"]) == ("unavailable", "workers")
