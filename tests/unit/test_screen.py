"""The center's screen, its pure parts: the tile map's layout, the answer cache, the live fan-out."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from stream_app.config.blueprint import load_blueprint
from stream_app.screen.feed import QUEUE_MAX, Broadcast, OpenAlerts, as_json, sse_event
from stream_app.screen.layout import TILES
from stream_app.screen.server import AnswerCache
from stream_app.settings import Settings


def test_the_tile_map_holds_every_current_unit_once_one_per_cell() -> None:
    catalogue = load_blueprint(Settings()).catalogue
    current = {code for code, region in catalogue.regions.items() if region.kind == "current"}
    assert set(TILES) == current
    assert len(current) == 34
    assert len(set(TILES.values())) == len(TILES)  # no two units on one cell
    assert all(0 <= col <= 5 and row >= 0 for row, col in TILES.values())


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_is_reused_for_its_time_then_asked_again() -> None:
    clock, asked = _Clock(), []

    async def compute() -> tuple[int, Any]:
        asked.append(clock.now)
        return 200, {"n": len(asked)}

    async def run() -> list[tuple[int, bytes]]:
        cache = AnswerCache(1.0, clock)
        first = await cache.get("q", compute)
        clock.now += 0.5
        second = await cache.get("q", compute)
        clock.now += 0.6
        third = await cache.get("q", compute)
        return [first, second, third]

    first, second, third = asyncio.run(run())
    assert first == second == (200, b'{"n":1}')
    assert third == (200, b'{"n":2}')


def test_concurrent_askers_share_one_read_and_failures_are_not_kept() -> None:
    calls = {"ok": 0, "down": 0, "boom": 0}

    async def run() -> tuple[list[tuple[int, bytes]], tuple[int, bytes], int]:
        release = asyncio.Event()

        async def slow() -> tuple[int, Any]:
            calls["ok"] += 1
            await release.wait()
            return 200, {"v": 1}

        async def unavailable() -> tuple[int, Any]:
            calls["down"] += 1
            return 503, {"error": "unavailable"}

        async def broken() -> tuple[int, Any]:
            calls["boom"] += 1
            await asyncio.sleep(0)
            raise RuntimeError("boom")

        cache = AnswerCache(10.0)
        waiting = [asyncio.create_task(cache.get("q", slow)) for _ in range(20)]
        await asyncio.sleep(0)
        release.set()
        answers = await asyncio.gather(*waiting)
        await cache.get("d", unavailable)
        down = await cache.get("d", unavailable)
        failures = await asyncio.gather(*(cache.get("b", broken) for _ in range(3)), return_exceptions=True)
        again = await asyncio.gather(cache.get("b", broken), return_exceptions=True)
        raised = sum(isinstance(f, RuntimeError) for f in [*failures, *again])
        return answers, down, raised

    answers, down, raised = asyncio.run(run())
    assert calls["ok"] == 1
    assert set(answers) == {(200, b'{"v":1}')}
    assert (calls["down"], down[0]) == (2, 503)  # a 503 is asked again
    assert (raised, calls["boom"]) == (4, 2)  # shared by the concurrent three, then asked again


def test_a_page_that_falls_behind_is_disconnected_and_others_keep_up() -> None:
    async def run() -> tuple[list[Any], int, int]:
        broadcast = Broadcast()
        async with broadcast.follow() as slow, broadcast.follow() as quick:
            got = []
            for n in range(QUEUE_MAX + 1):
                broadcast.publish(b"%d" % n)
                got.append(quick.get_nowait())
            left = []
            while not slow.empty():
                left.append(slow.get_nowait())
            return left, len(got), broadcast.pages

    left, quick_got, pages = asyncio.run(run())
    assert quick_got == QUEUE_MAX + 1
    assert left[-1] is None  # told to reconnect
    assert pages == 1  # the slow page is no longer fed


def test_alert_times_become_epoch_milliseconds_as_in_the_api() -> None:
    at = datetime(2025, 8, 20, 2, 0, tzinfo=UTC)
    record = as_json({"alert_id": "a", "event_time": at, "acknowledged_at": None, "level": 3})
    assert record == {"alert_id": "a", "event_time": 1755655200000, "acknowledged_at": None, "level": 3}
    event = sse_event(as_json({"alert_id": "a", "event_time": at, "level_name_vi": "Báo động III"}))
    assert (
        event
        == (
            'id: a\nevent: alert\ndata: {"alert_id":"a","event_time":1755655200000,'
            '"level_name_vi":"Báo động III"}\n\n'
        ).encode()
    )


@pytest.mark.parametrize("ttl", [0.0])
def test_no_reuse_when_the_time_is_zero(ttl: float) -> None:
    asked = []

    async def compute() -> tuple[int, Any]:
        asked.append(1)
        return 200, {}

    async def run() -> None:
        cache = AnswerCache(ttl)
        await cache.get("q", compute)
        await cache.get("q", compute)

    asyncio.run(run())
    assert len(asked) == 2


def _alert(key: str, at: int, transition: str = "FIRING", event_type: str = "TRANSITION") -> dict[str, Any]:
    return {"alert_key": key, "processing_time": at, "transition": transition, "event_type": event_type}


def test_the_open_alerts_view_is_never_behind_the_stream_nor_undone_by_a_lagging_snapshot() -> None:
    view = OpenAlerts()
    view.opened(_alert("flood", 200))  # read from the topic before Redis has it
    view.opened(_alert("smog", 100))
    view.opened(_alert("smog", 300, "RESOLVED"))  # resolved live; Redis still lists it
    view.load([_alert("smog", 100), _alert("old", 50), _alert("flood", 150)])
    assert sorted((a["alert_key"], a["processing_time"]) for a in view.alerts()) == [
        ("flood", 200),
        ("old", 50),
    ]
    view.opened(_alert("flood", 400, "ACKNOWLEDGE", event_type="ACKNOWLEDGE"))
    view.opened(_alert("flood", 350))  # an older change read late: ignored
    assert [a["event_type"] for a in view.alerts() if a["alert_key"] == "flood"] == ["ACKNOWLEDGE"]
    # the next snapshot: "old" resolved meanwhile (gone from Redis, its change missed): dropped
    view.load([_alert("flood", 400, "ACKNOWLEDGE", event_type="ACKNOWLEDGE")])
    assert [a["alert_key"] for a in view.alerts()] == ["flood"]
    assert all("_live" not in a for a in view.alerts())


def test_an_asker_that_goes_away_does_not_cancel_the_answer_for_the_others() -> None:
    async def run() -> tuple[tuple[int, bytes], bool]:
        release = asyncio.Event()

        async def slow() -> tuple[int, Any]:
            await release.wait()
            return 200, {"v": 2}

        cache = AnswerCache(10.0)
        first = asyncio.create_task(cache.get("q", slow))
        second = asyncio.create_task(cache.get("q", slow))
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.sleep(0)
        release.set()
        return await second, first.cancelled()

    answer, cancelled = asyncio.run(run())
    assert answer == (200, b'{"v":2}')
    assert cancelled


def test_when_the_reader_stops_every_page_is_told_to_reconnect() -> None:
    async def run() -> tuple[bytes | None, bytes | None, int]:
        broadcast = Broadcast()
        async with broadcast.follow() as one, broadcast.follow() as full:
            for n in range(QUEUE_MAX):
                full.put_nowait(b"%d" % n)
            broadcast.close_all()
            last = None
            while not full.empty():
                last = full.get_nowait()
            return one.get_nowait(), last, broadcast.pages

    first, last, pages = asyncio.run(run())
    assert first is None
    assert last is None  # a full queue still ends with the hang-up
    assert pages == 0


def test_an_alert_keeps_the_time_it_reached_its_level_through_directives_and_a_lost_reader() -> None:
    view = OpenAlerts()
    view.load([{**_alert("flood", 100), "event_time": 90}])
    view.opened({**_alert("flood", 200, "ACKNOWLEDGE", event_type="ACKNOWLEDGE"), "event_time": 195})
    assert [a["since"] for a in view.alerts()] == [90]
    view.forget()  # the reader stopped: answers come from Redis until a new snapshot
    assert not view.loaded
    view.load([])  # resolved meanwhile, its change missed: the snapshot is trusted
    assert (view.loaded, view.alerts()) == (True, [])
