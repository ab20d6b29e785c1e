"""The screen's health, its pure parts: freshness, readiness, the status event, the reader's catching up,
and the answer times' bounded route label (the live behaviour: tests/integration/test_screen.py)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from stream_app.ops import metrics
from stream_app.screen.feed import caught_up
from stream_app.screen.health import Freshness, Readiness, freshness, status_event, timed


def test_the_feed_is_live_up_to_its_stale_age_and_stale_past_it() -> None:
    assert freshness(0.0, 5.0) is Freshness.LIVE
    assert freshness(5.0, 5.0) is Freshness.LIVE
    assert freshness(5.01, 5.0) is Freshness.STALE


def test_a_status_event_carries_the_state_and_the_readers_age() -> None:
    event = status_event(Freshness.STALE, 12.345, 5.0).decode()
    assert event.startswith("event: status\ndata: ")
    assert event.endswith("\n\n")
    assert json.loads(event.split("data: ", 1)[1]) == {
        "status": "stale",
        "reader_age_s": 12.3,
        "stale_after_s": 5.0,
    }


def test_ready_only_with_redis_and_a_fresh_following_reader() -> None:
    ready = Readiness(redis=True, reader_following=True, reader_age_s=1.0, stale_after_s=5.0)
    assert ready.ready
    assert ready.body()["unavailable"] == []
    cases = {
        "redis": Readiness(redis=False, reader_following=True, reader_age_s=1.0, stale_after_s=5.0),
        "stale": Readiness(redis=True, reader_following=True, reader_age_s=6.0, stale_after_s=5.0),
        "not following": Readiness(redis=True, reader_following=False, reader_age_s=0.0, stale_after_s=5.0),
    }
    assert {name: r.ready for name, r in cases.items()} == dict.fromkeys(cases, False)
    assert cases["redis"].body()["unavailable"] == ["redis"]
    assert cases["stale"].body()["unavailable"] == ["alerts_reader"]
    assert cases["not following"].body()["checks"] == {"redis": True, "alerts_reader": False}


def test_the_reader_is_caught_up_only_at_every_partitions_end_as_the_broker_answered() -> None:
    assert caught_up({0: 10, 1: 4}, {0: 10, 1: 4})
    assert caught_up({0: 10}, {0: 9})  # the end answered before the last record was read
    assert not caught_up({0: 10, 1: 3}, {0: 10, 1: 4})  # records left to read
    assert not caught_up({0: 10, 1: 4}, {0: 10})  # a partition the broker did not answer
    assert not caught_up({0: 0}, {})  # the broker away


def _count(route: str) -> float:
    value = metrics.SCREEN_REGISTRY.get_sample_value(
        "stream_app_screen_request_seconds_count", {"route": route}
    )
    return value or 0.0


def test_answer_times_are_labelled_by_route_template_never_by_the_path_asked() -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b": hi\n\n")
        return response

    app = web.Application(middlewares=[timed])
    app.router.add_get("/things/{key}", ok)
    app.router.add_get("/stream", stream)
    before = {route: _count(route) for route in ("/things/{key}", "unmatched", "/stream")}

    async def run() -> None:
        async with TestServer(app) as server, aiohttp.ClientSession() as session:
            for path in ("/things/a", "/things/b", "/nowhere/1", "/nowhere/2", "/stream"):
                async with session.get(server.make_url(path)) as response:
                    await response.read()

    asyncio.run(run())
    assert _count("/things/{key}") - before["/things/{key}"] == 2
    assert _count("unmatched") - before["unmatched"] == 2
    assert _count("/stream") == before["/stream"]  # a live stream's time is not an answer time
    routes = {
        s.labels["route"]
        for m in metrics.SCREEN_REGISTRY.collect()
        if m.name == "stream_app_screen_request_seconds"
        for s in m.samples
    }
    assert not any("/things/a" in r or "/nowhere" in r for r in routes)
