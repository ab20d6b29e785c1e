"""Batch helpers shared by the agents: producing a batch and withholding acks of a failed batch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faust

from stream_app import metrics
from stream_app.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Output:
    """One record to publish."""

    topic: Any  # faust.TopicT
    key: bytes | None
    value: bytes
    timestamp: float | None = None


def withhold_acks(events: Sequence[faust.EventT[bytes]]) -> None:
    """Make sure none of ``events`` is ever marked safe to commit.

    Faust acks a ``take`` batch in a ``finally`` block even when processing failed or was
    cancelled (faust#604): marking the messages acked *without* telling the consumer keeps their
    offsets uncommitted, so they are redelivered to whoever owns the partition next.
    """
    for event in events:
        event.message.acked = True


async def publish(outputs: Sequence[Output], retry_initial_s: float = 0.2, retry_max_s: float = 5.0) -> None:
    """Send ``outputs`` and wait until Kafka acknowledged every one; retry the batch until it does."""
    delay = retry_initial_s
    attempt = 0
    while True:
        try:
            futures = [await o.topic.send(key=o.key, value=o.value, timestamp=o.timestamp) for o in outputs]
            await asyncio.gather(*futures)
        except Exception as exc:
            if getattr(exc, "retriable", True) is False:
                raise  # e.g. a record too large: retrying cannot help, the batch must not be acked
            attempt += 1
            log.warning("produce_failed_retrying", attempt=attempt, retry_in_s=delay, error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, retry_max_s)
            continue
        for o in outputs:
            metrics.RECORDS_PRODUCED.labels(o.topic.get_topic_name()).inc()
        return


def observe_latency(events: Sequence[faust.EventT[bytes]]) -> None:
    """Record end-to-end latency from each input record's Kafka timestamp to now."""
    now = time.time()
    for event in events:
        ts = event.message.timestamp
        if ts:
            metrics.END_TO_END_SECONDS.observe(max(0.0, now - ts))
