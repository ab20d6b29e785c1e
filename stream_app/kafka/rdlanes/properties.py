"""The librdkafka consumer's properties and timing bounds (see :mod:`stream_app.kafka.rdlanes`)."""

from __future__ import annotations

from typing import Any

from stream_app.kafka.config import confluent_config
from stream_app.settings import Settings

CALL_TIMEOUT_S = 10.0
"""Longest a call to the group's coordinator or a broker (commit, committed, watermarks) may take."""

CONSUME_MAX_S = 0.5
"""Longest one ``consume()`` blocks the consumer thread (its stop waits for it)."""

BOUNDED_SLICE_S = 0.01
"""Longest a fetch waits in librdkafka's ``poll()`` while the bounded reader has partitions: nothing
wakes a ``poll()`` when the reader's fetch brings records, so it is looked at this often (the reporters'
records wait at most this long; :mod:`stream_app.kafka.rdlanes.bounded`)."""

IDLE_POLL_S = 0.2
"""How often the consumer thread checks whether Faust's fetcher calls ``consume()``."""

IDLE_AFTER_S = 1.0
"""How long Faust's fetcher may leave ``consume()`` uncalled before the consumer thread calls it."""

JOIN_WARN_S = 30.0
"""How long a worker may wait for its first assignment before it says so (again every as long)."""

RESUME_AGAIN_S = 2.0
"""How often the consumer thread resumes again every partition it means to fetch: librdkafka may drop a
resume (an "outdated" one), leaving the partition paused with nothing said (librdkafka issue 5591, open:
"pause-assign-resume may leave some partitions permanently paused"); resuming one that is not paused
is nothing to it since librdkafka 2.4 (no fetch restarted, no record fetched twice: librdkafka PR 4636)."""

QUEUE_BACKOFF_MS = 20
"""How soon librdkafka fetches a partition again after finding its prefetch queue full
(``fetch.queue.backoff.ms``; librdkafka's default is 1000 ms). The queue is one for every partition
and the consumer thread empties it a batch at a time: with a second's backoff every partition sat out
a second after each full queue while the app waited for records (a drain ran at 0.7 of a core and
0.6-0.8x aiokafka's rate, docs/performance.md). The queue's bounds (``queued.min.messages``,
``queued.max.messages.kbytes``) stay what they were: only the refill comes sooner."""

STATS_INTERVAL_S = 10.0
"""How often librdkafka reports its statistics to the consumer thread, which watches them for a
partition it means to fetch that is behind its high watermark and fetches nothing (see
:meth:`~stream_app.kafka.rdlanes.thread.RdConsumerThread._on_stats`)."""


def consumer_properties(settings: Settings, group_id: str, client_id: str, **faust: Any) -> dict[str, Any]:
    """The librdkafka consumer's properties: brokers and security from ``settings`` (as every confluent
    client of the project), the group's timing from Faust's configuration (``faust``: session,
    heartbeat and poll intervals in seconds, the offset reset), fetch sizes from the fetch settings."""
    fetch_max = settings.fetch_max_batch_bytes
    return confluent_config(
        settings,
        **{
            "group.id": group_id,
            "client.id": client_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
            "partition.assignment.strategy": "roundrobin",
            "session.timeout.ms": int(faust["session_timeout_s"] * 1000),
            "heartbeat.interval.ms": int(faust["heartbeat_interval_s"] * 1000),
            "max.poll.interval.ms": int(faust["max_poll_interval_s"] * 1000),
            "auto.offset.reset": faust["auto_offset_reset"],
            "fetch.min.bytes": settings.fetch_min_bytes,
            "fetch.wait.max.ms": settings.fetch_max_wait_ms,
            "max.partition.fetch.bytes": min(1 << 20, fetch_max),
            "fetch.max.bytes": fetch_max,
            # at least fetch.max.bytes + 512 (librdkafka insists), and room for one batch above it that a
            # fetch returns whole (KIP-74)
            "receive.message.max.bytes": fetch_max + (16 << 20),
            # librdkafka's prefetch (64 MB by default): the worker's resident memory follows it
            # and it is one queue for every partition: a live record waits behind what it holds of a
            # flooded partition (drained into the thread once that partition is paused)
            "queued.max.messages.kbytes": max(1024, min(4 * 1024, settings.lane_max_bytes // 16384)),
            "queued.min.messages": max(1000, settings.batch_max),
            "fetch.queue.backoff.ms": QUEUE_BACKOFF_MS,
            "statistics.interval.ms": int(STATS_INTERVAL_S * 1000),
            "check.crcs": True,
            "isolation.level": "read_uncommitted",
        },
    )
