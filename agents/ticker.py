"""Ticker: sends the clock into every partition of the internal topic this worker owns.

Timer-driven rules (a feed gone silent, a report not received by its deadline) must fire with no
input at all, and their state belongs to the partition's single writer. So the clock travels as a
record: a tick, consumed in order with the partition's data by the consolidate agent. A tick carries
its time; tests and operators (``stream-app tick --at ...``) can send ticks for any moment.

Kafka away does not lose a tick's work nor stop the worker: the run waits until Kafka takes its ticks
(``produce`` waiting, named by ``/readyz``), then the timer goes on. A tick delivered late carries the
time it was made, and the next one the time after: the timer rules evaluate each moment in order, so a
deadline or a silence that passed meanwhile fires at the first tick after it. A Redis outage does not
concern the ticker: its ticks queue on the internal topic and are applied, in order, once Redis is back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import faust

from stream_app.config.blueprint import Blueprint
from stream_app.kafka.partitioning import TICK_KEY
from stream_app.kafka.publisher import Output, Publisher
from stream_app.logs import get_logger
from stream_app.ops import retry
from stream_app.wire import codecs

log = get_logger(__name__)


def tick_record(partition: int, now_ms: int, source: str) -> dict[str, object]:
    """The Avro record of one tick."""
    return {"partition": partition, "now": now_ms, "source": source}


def register(
    app: faust.App, blueprint: Blueprint, publisher: Publisher, clock: Callable[[], float] = time.time
) -> None:
    """A timer on every worker: one tick per owned partition of the internal topic per interval."""
    if blueprint.settings.intake_paused:  # draining the internal topics: nothing new goes there
        return
    settings = blueprint.settings
    internal = blueprint.topic_by_role("repartition")
    topic = internal.name
    schema = blueprint.schemas.latest("tick")

    async def send_ticks() -> None:
        now_ms = int(clock() * 1000)
        owned = sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == internal.name)
        outputs = [
            Output(topic, TICK_KEY, codecs.encode(schema, tick_record(p, now_ms, "timer")), partition=p)
            for p in owned
        ]
        for _output, error in await publisher.publish(outputs):  # nothing to dead-letter: the next tick comes
            log.error("tick_refused", error=repr(error)[:300])
        if owned:
            log.debug("ticks_sent", partitions=owned, now_ms=now_ms)

    app.timer(settings.tick_interval_s)(retry.guarded("ticker", send_ticks))
