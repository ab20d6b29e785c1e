"""Batch helpers shared by the agents: producing a batch and withholding acks of a failed batch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import faust

from stream_app import codecs, metrics
from stream_app.logs import get_logger
from stream_app.model import Rejection
from stream_app.retry import retry_until_done
from stream_app.schemas import SchemaVersion
from stream_app.settings import Settings

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Output:
    """One record to publish."""

    topic: Any  # faust.TopicT
    key: bytes | None
    value: bytes | None  # None: a tombstone, on a compacted topic
    timestamp: float | None = None
    partition: int | None = None  # explicit for the internal topic (see stream_app.partitioning)


# Topic name -> a function told of every record published there (e.g. counting alert transitions
# by domain, agents/alert_bridge.py). Keyed by topic, so registering twice replaces.
PUBLISH_OBSERVERS: dict[str, Callable[[Output], None]] = {}


def dead_letter(
    message: Any, reporter: str, topic: Any, schema: SchemaVersion, rejection: Rejection, *, now_ms: int
) -> Output:
    """The dead-letter record of a rejected record: its bytes and key unchanged, reason and position.

    Counted in ``stream_app_records_rejected_total{reporter,reason}`` and logged with the position.
    """
    metrics.RECORDS_REJECTED.labels(reporter, rejection.reason).inc()
    log.info(
        "record_rejected",
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        reporter=reporter,
        reason=rejection.reason,
        detail=rejection.message[:200],
    )
    record = {
        "reason": rejection.reason,
        "message": rejection.message,
        "source_topic": message.topic,
        "source_partition": message.partition,
        "source_offset": message.offset,
        "source_key": message.key,
        "original": message.value or b"",
        "rejected_at": now_ms,
    }
    return Output(topic, message.key, codecs.encode(schema, record))


def withhold_acks(events: Sequence[faust.EventT[bytes]]) -> None:
    """Make sure none of ``events`` is ever marked safe to commit.

    Faust acks a ``take`` batch in a ``finally`` block even when processing failed or was
    cancelled (faust#604): marking the messages acked *without* telling the consumer keeps their
    offsets uncommitted, so they are redelivered to whoever owns the partition next.
    """
    for event in events:
        event.message.acked = True


async def publish(outputs: Sequence[Output], settings: Settings) -> None:
    """Send ``outputs`` and wait until Kafka acknowledged every one; retry the batch until it does.

    A retried batch may publish some records twice: alert ids are deterministic and the stateful
    step ignores an observation id it has applied, so duplicates change nothing downstream.
    """
    if not outputs:
        return

    async def send_all() -> None:
        futures = [
            await o.topic.send(key=o.key, value=o.value, timestamp=o.timestamp, partition=o.partition)
            for o in outputs
        ]
        await asyncio.gather(*futures)

    await retry_until_done("produce", send_all, settings, _retriable_kafka_error)
    produced: dict[str, int] = {}
    for o in outputs:
        name = o.topic.get_topic_name()
        produced[name] = produced.get(name, 0) + 1
        observer = PUBLISH_OBSERVERS.get(name)
        if observer is not None:
            observer(o)
    for name, count in produced.items():  # once per topic and batch: a labelled metric has a cost
        metrics.RECORDS_PRODUCED.labels(name).inc(count)


def _retriable_kafka_error(exc: Exception) -> bool:
    # e.g. a record too large is not retriable: retrying cannot help, the batch must not be acked
    return getattr(exc, "retriable", True) is not False


def observe_latency(events: Sequence[faust.EventT[bytes]]) -> None:
    """Record end-to-end latency from each input record's Kafka timestamp to now."""
    now = time.time()
    for event in events:
        ts = event.message.timestamp
        if ts:
            metrics.END_TO_END_SECONDS.observe(max(0.0, now - ts))


def batch_agent(
    app: faust.App,
    source: Any,
    name: str,
    handle: Callable[[Sequence[faust.EventT[bytes]]], Awaitable[None]],
    settings: Settings,
) -> None:
    """Register agent ``name`` on ``source``: batches of up to ``STREAM_APP_BATCH_MAX`` records handed
    to ``handle``; a batch that fails or is cancelled withholds its acks (see ``withhold_acks``)."""

    async def run(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_max, within=settings.batch_within_s):
            try:
                metrics.BATCH_SIZE.labels(name).observe(len(events))
                await handle(events)
            except BaseException:
                withhold_acks(events)
                raise

    run.__name__ = run.__qualname__ = name
    app.agent(source, name=name)(run)
