"""Briefing: the daily briefing for the center, at a configured local time (Asia/Ho_Chi_Minh).

Every worker runs the timer; the one owning partition 0 of the internal topic publishes, once per
local day: it looks for the day's marker in Redis, publishes the briefing (``briefing-<date>``, a
deterministic id: a second copy after a crash or a rebalance is recognisable), then sets the marker.

Redis or Kafka away does not stop it, nor the worker: each step waits until its dependency answers
(``redis_briefing`` or ``produce`` waiting, named by ``/readyz``), so the day's briefing goes out once
the dependency is back; the marker is set only after Kafka acknowledged the briefing, and waits for
Redis itself, so the next run never publishes it again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any, TypeVar

import faust

from stream_app.api.read_model import ReadModel
from stream_app.config.blueprint import Blueprint
from stream_app.domain import clock
from stream_app.domain.clock import local_date, local_time_of_day_ms
from stream_app.kafka.publisher import Output, Publisher
from stream_app.logs import get_logger
from stream_app.ops import metrics, retry
from stream_app.ops.failures import classify_redis
from stream_app.wire import codecs

log = get_logger(__name__)
T = TypeVar("T")


def due(now_ms: int, briefing_time: str) -> bool:
    """Whether the local time of day at ``now_ms`` is at or past ``briefing_time`` (HH:MM[:SS])."""
    hours, minutes, seconds = (int(part) for part in f"{briefing_time}:00".split(":")[:3])
    return local_time_of_day_ms(now_ms) >= ((hours * 60 + minutes) * 60 + seconds) * 1000


def register(app: faust.App, blueprint: Blueprint, model: ReadModel, publisher: Publisher) -> None:
    """The briefing timer (every tick interval, at most a minute; it publishes once a day)."""
    settings = blueprint.settings
    internal = blueprint.topic_by_role("repartition").name
    topic = blueprint.topic_by_role("briefings").name
    schema = blueprint.schemas.latest("briefing")

    published_on: list[date] = []  # the last day this worker saw the marker set: no Redis call per run

    async def waiting_for_redis(action: Callable[[], Awaitable[T]]) -> T:
        return await retry.retry_until_done("redis_briefing", action, settings, classify_redis)

    def may_publish() -> bool:
        if "state_lost" in retry.retrying():
            return False  # the state lacks what was acknowledged: no briefing from a lost state
        return any(tp.topic == internal and tp.partition == 0 for tp in app.consumer.assignment())

    async def send_briefing() -> None:
        now_ms = clock.now_ms()
        today = local_date(now_ms)
        if not due(now_ms, settings.briefing_time) or today in published_on or not may_publish():
            return
        if await waiting_for_redis(lambda: model.store.briefing_published(today)):
            published_on[:] = [today]
            return
        briefing: dict[str, Any] = await waiting_for_redis(
            lambda: model.briefing(today - timedelta(days=1), now_ms)
        )
        if not may_publish():  # it may have waited for Redis: the state or partition 0 may be gone
            return
        key = briefing["briefing_id"].encode()
        refused = await publisher.publish([Output(topic, key, codecs.encode(schema, briefing))])
        if refused:  # a briefing Kafka refuses for good (too large): say so, do not mark the day done
            log.error(
                "briefing_refused", briefing_id=briefing["briefing_id"], error=repr(refused[0][1])[:300]
            )
            return
        # published: the marker must follow whatever it takes, or the next run would publish it again
        await waiting_for_redis(lambda: model.store.mark_briefing(today, now_ms))
        published_on[:] = [today]
        metrics.CONSOLIDATED_EVENTS.labels("briefing").inc()
        log.info("briefing_published", briefing_id=briefing["briefing_id"], items=len(briefing["items"]))

    app.timer(min(60.0, settings.tick_interval_s))(retry.guarded("briefing", send_briefing))
