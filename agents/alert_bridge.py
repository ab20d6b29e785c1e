"""Alert bridge: counts the center's alert transitions by domain, and (when
``STREAM_APP_ALERTMANAGER_URL`` is set) keeps Alertmanager's view of the open center alerts.

The bridge reads ``center.alerts.active`` — compacted, the current record of every open alert and a
tombstone once it is resolved — from the beginning, outside the consumer group: every worker runs it
and holds the whole open set, so a restart or a rebalance loses nothing (the compacted topic *is*
the state) and posting the same alert from several workers is idempotent in Alertmanager. It posts
each change as it arrives and re-posts the open set every ``STREAM_APP_ALERTMANAGER_RESEND_S``.
What waits to be posted is the newest state of each alert, at most ``STREAM_APP_ALERTMANAGER_MAX_PENDING``
(:class:`~stream_app.ops.alertmanager.PendingPosts`: a flood of transitions grows no queue). An unreachable
Alertmanager (or a 5xx) is retried with backoff and counted; a 4xx is final: the alerts it refuses
(isolated by halving the batch, a few requests at most) are logged and dropped, the others sent. It never
holds up the pipeline.
Kafka away never stops the worker either: the reader waits for the broker (``kafka_alert_bridge``
waiting, named by ``/readyz``) and, should it fail in any other way, starts again from the beginning
of the topic after a pause (the compacted topic is the state: nothing is lost by reading it again).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import faust
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka import Message as KafkaMessage

from stream_app.config.blueprint import Blueprint
from stream_app.kafka.config import confluent_config
from stream_app.kafka.publisher import PUBLISH_OBSERVERS, Output
from stream_app.logs import get_logger
from stream_app.ops import metrics, retry
from stream_app.ops.alertmanager import (
    AlertmanagerClient,
    AlertmanagerRefusedError,
    OpenAlerts,
    PendingPosts,
)
from stream_app.ops.failures import classify_kafka
from stream_app.wire import codecs
from stream_app.wire.codecs import ConfluentResolver, DecodeError

log = get_logger(__name__)

POLL_S = 0.5
BATCH = 500
RESTART_MAX_S = 60.0
# Halvings of a batch Alertmanager refused as a payload, to find the alerts at fault: at most
# 1 + 2 x this many requests a flush, however many alerts wait (or are all refused).
ISOLATE_MAX_SPLITS = 16


def count_transition(output: Output[object]) -> None:
    """Count a published alert transition by domain, rule kind and transition, read from the record
    the output was encoded from (outputs without one are not counted)."""
    alert = output.record
    if output.value is None or alert is None:
        return
    if alert.get("event_type", "TRANSITION") == "TRANSITION":
        metrics.ALERT_TRANSITIONS.labels(
            alert.get("domain") or "unknown", alert.get("rule_kind") or "levels", alert["transition"]
        ).inc()


class AlertBridge:
    """Reads the active-alerts topic and posts to Alertmanager; see the module docstring."""

    def __init__(self, blueprint: Blueprint, url: str, resolve: ConfluentResolver | None = None) -> None:
        settings = blueprint.settings
        self.settings = settings
        self.schemas = blueprint.schemas
        # Confluent-framed alerts (STREAM_APP_OUTPUT_FRAMING=confluent): the ids this worker writes with,
        # known without asking the registry. An id it does not know (a newer worker's schema) is
        # undecodable here, as an unknown fingerprint is in single-object encoding.
        self.resolve = resolve
        self.topic = blueprint.topic_by_role("active_alerts").name
        self.open = OpenAlerts(settings.group_id, settings.alertmanager_resend_s)
        self.client = AlertmanagerClient(url)
        self._pending = PendingPosts(settings.alertmanager_max_pending)
        self._backoff = retry.Backoff.from_settings(settings)

    def _consumer(self) -> Consumer:
        consumer = Consumer(
            {
                **confluent_config(self.settings),
                "group.id": f"{self.settings.group_id}.alert-bridge",  # never commits: reads from the start
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
                "log_level": 3,
            }
        )
        try:
            metadata = consumer.list_topics(self.topic, timeout=10)
            partitions = sorted(metadata.topics[self.topic].partitions)
            consumer.assign([TopicPartition(self.topic, p, 0) for p in partitions])
        except BaseException:  # the broker out of reach, say: this consumer's threads must not linger
            consumer.close()
            raise
        return consumer

    async def run(self) -> None:
        """Catch up with the open set, post it, then follow the topic and re-post on a timer; the reader
        waits for Kafka when it cannot reach it."""

        async def connect() -> Consumer:
            return await asyncio.to_thread(self._consumer)

        consumer = await retry.retry_until_done("kafka_alert_bridge", connect, self.settings, classify_kafka)
        try:
            caught_up = False
            eof: set[int] = set()
            assigned = len(consumer.assignment())
            next_refresh = time.monotonic() + self.settings.alertmanager_resend_s
            while True:
                messages = await asyncio.to_thread(consumer.consume, BATCH, POLL_S)
                now = datetime.now(UTC)
                for message in messages:
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            eof.add(message.partition() or 0)
                        continue
                    eof.discard(message.partition())
                    posts = self._apply(message, now)
                    if caught_up:
                        self._queue(posts)
                if not caught_up and len(eof) >= assigned:
                    caught_up = True  # the open set as of now: post it whole, once
                    self._queue(self.open.refresh(now))
                    log.info("alert_bridge_caught_up", open_alerts=len(self.open.alerts))
                if caught_up and time.monotonic() >= next_refresh:
                    self._queue(self.open.refresh(now))
                    next_refresh = time.monotonic() + self.settings.alertmanager_resend_s
                metrics.ALERTMANAGER_ACTIVE.set(len(self.open.alerts))
                await self._flush()
        finally:
            await asyncio.to_thread(consumer.close)
            await self.client.close()

    def _apply(self, message: KafkaMessage, now: datetime) -> list[dict[str, Any]]:
        key = (message.key() or b"").decode("utf-8", "replace")
        value = message.value()
        alert = None
        if value is not None:
            try:
                alert = codecs.decode(self.schemas, "alert", value, self.resolve)
            except DecodeError as exc:
                log.warning("alert_bridge_undecodable", key=key, error=str(exc)[:200])
                return []
        return self.open.apply(key, alert, now)

    def _queue(self, posts: list[dict[str, Any]]) -> None:
        queued = self._pending.add(posts)
        if queued.superseded:
            metrics.ALERTMANAGER_DROPPED.labels("superseded").inc(queued.superseded)
        if queued.overflowed:
            metrics.ALERTMANAGER_DROPPED.labels("overflow").inc(queued.overflowed)
            log.warning(
                "alertmanager_pending_full",
                dropped=queued.overflowed,
                limit=self._pending.limit,
                hint="the oldest waiting posts were dropped (STREAM_APP_ALERTMANAGER_MAX_PENDING)",
            )
        metrics.ALERTMANAGER_PENDING.set(len(self._pending))

    async def _flush(self) -> None:
        """Post what is pending; on failure keep it (the newest post per alert wins) and back off; what
        Alertmanager refuses (4xx) is dropped."""
        if not self._pending:
            return
        posts = self._pending.posts()
        try:
            refused = await self._post(posts)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            metrics.ALERTMANAGER_POSTS.labels("error").inc()
            delay = self._backoff.next()
            log.warning(
                "alertmanager_post_failed",
                url=self.client.url,
                alerts=len(posts),
                retry_in_s=round(delay, 3),
                error=repr(exc)[:300],
            )
            await asyncio.sleep(delay)
            return
        if refused:
            metrics.ALERTMANAGER_DROPPED.labels("refused").inc(len(refused))
        self._pending.clear()
        metrics.ALERTMANAGER_PENDING.set(0)
        self._backoff.reset()

    async def _post(self, posts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Post ``posts``; returns those Alertmanager refused for good (a 4xx). A batch refused as a
        payload (400, 413, 422) is halved to find the alerts at fault, up to ``ISOLATE_MAX_SPLITS``
        times, so one bad alert does not cost the others; any other 4xx refuses the whole batch."""
        refused: list[dict[str, Any]] = []
        parts, splits = [posts], 0
        while parts:
            part = parts.pop()
            try:
                await self.client.post(part)
            except AlertmanagerRefusedError as exc:
                metrics.ALERTMANAGER_POSTS.labels("refused").inc()
                if exc.about_the_payload and len(part) > 1 and splits < ISOLATE_MAX_SPLITS:
                    splits += 1
                    half = len(part) // 2
                    parts += [part[half:], part[:half]]  # the first half is posted first
                    continue
                refused += part
                log.warning(
                    "alertmanager_refused",
                    url=self.client.url,
                    status=exc.status,
                    alerts=len(part),
                    alertnames=sorted({p["labels"].get("alertname", "") for p in part})[:5],
                    error=str(exc)[:300],
                    action="dropped, not retried",
                )
                continue
            metrics.ALERTMANAGER_POSTS.labels("ok").inc()
        return refused


def register(app: faust.App, blueprint: Blueprint, resolve: ConfluentResolver | None = None) -> None:
    """Always count transitions by domain; run the bridge when an Alertmanager URL is set.

    ``resolve``: the worker's own Confluent schema ids (:meth:`stream_app.wire.framing.Framing.resolve`).
    """
    PUBLISH_OBSERVERS[blueprint.topic_by_role("alerts").name] = count_transition
    for outcome in ("ok", "error", "refused"):
        metrics.ALERTMANAGER_POSTS.labels(outcome)
    for reason in ("superseded", "overflow", "refused"):
        metrics.ALERTMANAGER_DROPPED.labels(reason)
    url = blueprint.settings.alertmanager_url
    if not url:
        return
    bridge = AlertBridge(blueprint, url, resolve)

    async def alert_bridge() -> None:
        # An exception escaping a Faust task ends the worker: the bridge starts again instead, after a
        # pause growing to a minute (one log line a minute at most for a bridge that keeps failing).
        pause = retry.Backoff(blueprint.settings.retry_max_s, RESTART_MAX_S)
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                started = time.monotonic()
                try:
                    await bridge.run()  # returns only by raising: it follows the topic for good
                except Exception:
                    if time.monotonic() - started > RESTART_MAX_S:
                        pause.reset()  # it had been running well: a new failure, not the same one
                    log.exception("alert_bridge_failed", restart_in_s=pause.delay)
                await asyncio.sleep(pause.next())

    app.task(alert_bridge)
    log.info("alert_bridge_enabled", alertmanager=url, topic=bridge.topic)
