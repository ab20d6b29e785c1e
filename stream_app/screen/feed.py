"""Live alerts for the screen: one Kafka reader of ``center.alerts`` per screen process, fanned out to
every open page.

The reader is a librdkafka consumer in a thread, assigned every partition from its end (a page loads
the open alerts from ``/api/v1/alerts/active`` first, then follows the changes), so a thousand pages
cost the cluster one reader. Each page has a bounded queue; a page that does not keep up is
disconnected rather than allowed to grow the process (its browser reconnects and reloads).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaException, TopicPartition

from stream_app.config.blueprint import Blueprint
from stream_app.kafka.config import confluent_config
from stream_app.wire import codecs

log = structlog.get_logger(__name__)

RETRY_S = 2.0
RESOLVED_KEPT_MS = 3_600_000  # a resolution outlives any snapshot taken while it was committed
QUEUE_MAX = 1000  # alert changes a page may be behind before it is disconnected
# With no record for this long, the reader asks the broker for each partition's end: at it, the reader is
# confirmed caught up (an empty poll alone proves nothing: librdkafka polls empty with the broker away).
CONFIRM_S = 1.0
CONFIRM_TIMEOUT_S = 1.0


def as_json(alert: dict[str, Any]) -> dict[str, Any]:
    """An alert as the API shows it: times as epoch milliseconds, like ``/api/v1/alerts/active``."""
    return {k: round(v.timestamp() * 1000) if isinstance(v, datetime) else v for k, v in alert.items()}


def sse_event(alert: dict[str, Any]) -> bytes:
    """One server-sent event of an alert change (times already epoch ms), encoded once for every page."""
    data = json.dumps(alert, ensure_ascii=False, separators=(",", ":"))
    return f"id: {alert.get('alert_id', '')}\nevent: alert\ndata: {data}\n\n".encode()


HEARTBEAT = b": heartbeat\n\n"
# Said to a page whose token was revoked while it followed, before the stream ends (the page reconnects,
# is refused 401 and asks for a token again).
REVOKED = b'event: revoked\ndata: {"error":"unauthorized","detail":"the token was revoked"}\n\n'


async def pump(
    queue: asyncio.Queue[bytes | None],
    write: Callable[[bytes], Awaitable[None]],
    allowed: Callable[[], bool],
    heartbeat_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Write a page's alert changes as they come, a heartbeat when none came for ``heartbeat_s``, until
    the page falls behind (``"behind"``) or ``allowed()`` says its token no longer is (``"revoked"``).

    The token is checked at each heartbeat, and as often under a steady flow of changes (which sends no
    heartbeat): a revoked token keeps a stream open ``heartbeat_s`` at most."""
    checked_at = clock()
    while True:
        try:
            event = await asyncio.wait_for(queue.get(), heartbeat_s)
        except TimeoutError:
            event = HEARTBEAT
        if event is HEARTBEAT or clock() - checked_at >= heartbeat_s:
            if not allowed():
                await write(REVOKED)
                return "revoked"
            checked_at = clock()
        if event is None:  # fell behind: the page reconnects and reloads
            return "behind"
        await write(event)


class OpenAlerts:
    """The open alerts, kept live: a snapshot of Redis's index, then every change from the topic.

    The worker publishes a change before it commits it to Redis, so a page that asks Redis right
    after a change may not see it yet; this view has it as soon as the change is read. A snapshot
    taken while changes arrive cannot undo them: per alert the newer record wins (by processing
    time), and an alert resolved after the snapshot's record stays resolved."""

    def __init__(self) -> None:
        self.loaded = False
        self._open: dict[str, dict[str, Any]] = {}
        self._resolved: dict[str, int] = {}  # alert key -> processing time of its RESOLVED

    def apply(self, alert: dict[str, Any]) -> None:
        key, at = alert["alert_key"], int(alert.get("processing_time") or 0)
        known = self._open.get(key)
        if known is not None and int(known.get("processing_time") or 0) > at:
            return
        # ``since``: when the alert reached its level; a directive's record is timed when it was issued
        if alert.get("event_type", "TRANSITION") == "TRANSITION":
            alert = {**alert, "since": alert.get("event_time")}
        else:
            alert = {**alert, "since": (known or {}).get("since") or alert.get("event_time")}
        if alert.get("transition") == "RESOLVED" and alert.get("event_type", "TRANSITION") == "TRANSITION":
            self._open.pop(key, None)
            self._resolved[key] = max(at, self._resolved.get(key, 0))
        elif at >= self._resolved.get(key, -1):
            self._open[key] = alert

    def load(self, snapshot: list[dict[str, Any]]) -> None:
        for alert in snapshot:
            self.apply(alert)
        live = {a["alert_key"] for a in snapshot}
        for key in [k for k, a in self._open.items() if k not in live and not a.get("_live")]:
            del self._open[key]  # gone from Redis and not seen live since the last snapshot
        for alert in self._open.values():
            alert.pop("_live", None)
        newest = max((int(a.get("processing_time") or 0) for a in snapshot), default=0)
        for key in [k for k, at in self._resolved.items() if at < newest - RESOLVED_KEPT_MS]:
            del self._resolved[key]
        self.loaded = True

    def forget(self) -> None:
        """Changes may have been missed (the reader stopped): answer from Redis until the next snapshot,
        which is then trusted for every alert seen so far."""
        self.loaded = False
        for alert in self._open.values():
            alert.pop("_live", None)

    def opened(self, alert: dict[str, Any]) -> None:
        """A change read from the topic (kept across the next snapshot even if Redis lags)."""
        self.apply({**alert, "_live": True})

    def alerts(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in a.items() if k != "_live"} for a in self._open.values()]


class Broadcast:
    """The pages following live alerts; ``publish`` runs on the event loop."""

    def __init__(self) -> None:
        self._pages: set[asyncio.Queue[bytes | None]] = set()

    @property
    def pages(self) -> int:
        return len(self._pages)

    def publish(self, event: bytes) -> int:
        """``event`` to every page; returns to how many it was queued."""
        queued = 0
        for queue in list(self._pages):
            try:
                queue.put_nowait(event)
                queued += 1
            except asyncio.QueueFull:  # too slow: dropped, the page reconnects and reloads
                self._hang_up(queue)
        return queued

    def close_all(self) -> None:
        """Every page reconnects (and reloads the open alerts)."""
        for queue in list(self._pages):
            self._hang_up(queue)

    def _hang_up(self, queue: asyncio.Queue[bytes | None]) -> None:
        self._pages.discard(queue)
        if queue.full():
            queue.get_nowait()
        queue.put_nowait(None)

    @contextlib.asynccontextmanager
    async def follow(self) -> AsyncIterator[asyncio.Queue[bytes | None]]:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_MAX)
        self._pages.add(queue)
        try:
            yield queue
        finally:
            self._pages.discard(queue)


def caught_up(next_offsets: dict[int, int], ends: dict[int, int]) -> bool:
    """Whether the reader's next offset of every partition is at (or past) the partition's end as the
    broker answered it: nothing published is left unread."""
    return all(p in ends and offset >= ends[p] for p, offset in next_offsets.items())


class AlertReader:
    """Reads ``center.alerts`` from its end in a thread and hands each change to ``deliver``.

    ``polled_at`` is when a poll last read a record or the broker confirmed the reader is at every
    partition's end: how far behind the stream the screen may be (:mod:`stream_app.screen.health`)."""

    def __init__(
        self,
        blueprint: Blueprint,
        deliver: Callable[[dict[str, Any], bytes], None],
        lost: Callable[[], None],
        loop: asyncio.AbstractEventLoop,
        resolve: codecs.ConfluentResolver | None = None,
    ) -> None:
        self.blueprint = blueprint
        self.deliver = deliver  # called on the loop with each change and its server-sent event
        self.lost = lost  # called on the loop when the reader stops following (changes may be missed)
        self.generation = 0  # how many times it started following
        self.resolve = resolve
        self.topic = blueprint.topic_by_role("alerts").name
        self.loop = loop
        self.following = threading.Event()  # assigned to every partition of the alerts topic
        self.started_at = time.monotonic()
        self.polled_at: float | None = None  # monotonic; written by the reader's thread only
        # when the broker last confirmed the reader had read everything published (monotonic)
        self.confirmed_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="screen-alerts", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def age_s(self, now: float | None = None) -> float:
        """Seconds since a poll last read a record or confirmed the reader caught up (since the reader
        was made, when none has yet)."""
        polled = self.polled_at
        since = self.started_at if polled is None else polled
        return max(0.0, (time.monotonic() if now is None else now) - since)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._read()
            except Exception as exc:  # the broker unreachable at start, say: the page still answers
                log.exception("screen_alert_reader_failed", error=repr(exc), retry_in_s=RETRY_S)
                self._stop.wait(RETRY_S)

    def _read(self) -> None:
        settings = self.blueprint.settings
        consumer = Consumer(
            confluent_config(
                settings,
                **{
                    "group.id": f"{settings.topic_namespace}center.screen",  # never joined: assign()
                    "enable.auto.commit": False,
                    "fetch.wait.max.ms": 50,
                    "log_level": 3,
                },
            )
        )
        try:
            topic = consumer.list_topics(self.topic, timeout=10).topics[self.topic]
            if topic.error is not None or not topic.partitions:  # missing, or refused: retried
                raise RuntimeError(f"cannot read {self.topic}: {topic.error or 'no partitions'}")
            ends = self._start(consumer, list(topic.partitions))
            consumer.assign(ends)
            next_offsets = {tp.partition: tp.offset for tp in ends}
            log.info("screen_following_alerts", topic=self.topic, partitions=len(ends))
            self.generation += 1
            self.following.set()
            reported: set[str] = set()
            while not self._stop.is_set():
                messages = consumer.consume(500, 0.2)
                read = False
                for message in messages:
                    error = message.error()
                    if error is not None and error.name() not in reported:  # once each: not a flood
                        reported.add(error.name())
                        log.error("screen_alert_reader_error", topic=self.topic, error=str(error))
                    partition, offset = message.partition(), message.offset()
                    if error is None and partition is not None and offset is not None:
                        read = True
                        next_offsets[partition] = offset + 1
                    raw = message.value()
                    if error is not None or not raw:
                        continue
                    try:
                        alert = codecs.decode(self.blueprint.schemas, "alert", raw, self.resolve)
                    except Exception as exc:  # not ours: shown nowhere, logged once each
                        log.warning("screen_alert_unreadable", offset=message.offset(), error=repr(exc))
                        continue
                    self._hand_over(as_json(alert))
                now = time.monotonic()
                # a record read, or (idle a second) the broker's ends are where the reader is
                idle = not messages and now - (self.polled_at or 0.0) >= CONFIRM_S
                confirmed = idle and caught_up(next_offsets, self._ends(consumer, next_offsets))
                if confirmed:
                    self.confirmed_at = now
                if read or confirmed:
                    self.polled_at = now
        finally:
            if self.following.is_set():
                self.following.clear()
                self.loop.call_soon_threadsafe(self.lost)
            consumer.close()

    def _start(self, consumer: Consumer, partitions: list[int]) -> list[TopicPartition]:
        """Where reading starts: each partition's end as it is now (a change after this point is never
        missed)."""
        return [
            TopicPartition(
                self.topic, p, consumer.get_watermark_offsets(TopicPartition(self.topic, p), 10)[1]
            )
            for p in partitions
        ]

    def _hand_over(self, record: dict[str, Any]) -> None:
        """A change read (on the reader's thread): to ``deliver`` on the loop, with its event."""
        self.loop.call_soon_threadsafe(self.deliver, record, sse_event(record))

    def _ends(self, consumer: Consumer, partitions: Iterable[int]) -> dict[int, int]:
        """Each partition's end as the broker answers it now; the partitions it did not answer are left
        out (a broker away, the reader's rights withdrawn)."""
        ends: dict[int, int] = {}
        for partition in partitions:
            try:
                _, high = consumer.get_watermark_offsets(
                    TopicPartition(self.topic, partition), CONFIRM_TIMEOUT_S, cached=False
                )
            except KafkaException:
                break
            ends[partition] = high
        return ends


class HistoryReader(AlertReader):
    """Reads ``center.alerts`` from ``back_ms`` before now (every time it starts following: changes
    seen again are the timeline's to ignore) and hands each change to ``deliver`` on the loop: the
    alert timeline's source (:mod:`stream_app.screen.timeline`)."""

    def __init__(
        self,
        blueprint: Blueprint,
        deliver: Callable[[dict[str, Any]], None],
        loop: asyncio.AbstractEventLoop,
        back_ms: int,
        resolve: codecs.ConfluentResolver | None = None,
    ) -> None:
        super().__init__(blueprint, lambda record, _: deliver(record), lambda: None, loop, resolve)
        self.record_sink = deliver
        self.back_ms = back_ms
        self._thread.name = "screen-alert-history"

    def _start(self, consumer: Consumer, partitions: list[int]) -> list[TopicPartition]:
        since = int(time.time() * 1000) - self.back_ms
        found = consumer.offsets_for_times([TopicPartition(self.topic, p, since) for p in partitions], 10)
        starts = []
        for tp in found:
            offset = tp.offset
            if offset < 0:  # nothing since then: from the end
                offset = consumer.get_watermark_offsets(TopicPartition(self.topic, tp.partition), 10)[1]
            starts.append(TopicPartition(self.topic, tp.partition, offset))
        return starts

    def _hand_over(self, record: dict[str, Any]) -> None:
        self.loop.call_soon_threadsafe(self.record_sink, record)
