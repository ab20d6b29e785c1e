"""Alert bridge: counts the center's alert transitions by domain, and (when
``STREAM_APP_ALERTMANAGER_URL`` is set) keeps Alertmanager's view of the open center alerts.

The bridge reads ``center.alerts.active`` — compacted, the current record of every open alert and a
tombstone once it is resolved — from the beginning, outside the consumer group: every worker runs it
and holds the whole open set, so a restart or a rebalance loses nothing (the compacted topic *is*
the state) and posting the same alert from several workers is idempotent in Alertmanager. It posts
each change as it arrives and re-posts the open set every ``STREAM_APP_ALERTMANAGER_RESEND_S``.
An unreachable Alertmanager is retried with backoff and counted; it never holds up the pipeline.
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

from stream_app.config.blueprint import Blueprint
from stream_app.exceptions import DecodeError
from stream_app.kafka.config import confluent_config
from stream_app.kafka.publisher import PUBLISH_OBSERVERS, Output
from stream_app.logs import get_logger
from stream_app.ops import metrics, retry
from stream_app.ops.alertmanager import AlertmanagerClient, OpenAlerts
from stream_app.ops.failures import classify_kafka
from stream_app.wire import codecs
from stream_app.wire.codecs import ConfluentResolver
from stream_app.wire.schemas import SchemaRegistry

log = get_logger(__name__)

POLL_S = 0.5
BATCH = 500
RESTART_MAX_S = 60.0


def transition_counter(schemas: SchemaRegistry) -> Any:
    """Count each published alert transition by domain, rule kind and transition."""

    def observe(output: Output) -> None:
        if output.value is None:
            return
        try:
            alert = codecs.decode(schemas, "alert", output.value)
        except DecodeError:
            return
        if alert.get("event_type", "TRANSITION") == "TRANSITION":
            metrics.ALERT_TRANSITIONS.labels(
                alert.get("domain") or "unknown", alert.get("rule_kind") or "levels", alert["transition"]
            ).inc()

    return observe


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
        self._pending: list[dict[str, Any]] = []
        self._backoff = settings.retry_initial_s

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
                        self._pending.extend(posts)
                if not caught_up and len(eof) >= assigned:
                    caught_up = True  # the open set as of now: post it whole, once
                    self._pending.extend(self.open.refresh(now))
                    log.info("alert_bridge_caught_up", open_alerts=len(self.open.alerts))
                if caught_up and time.monotonic() >= next_refresh:
                    self._pending.extend(self.open.refresh(now))
                    next_refresh = time.monotonic() + self.settings.alertmanager_resend_s
                metrics.ALERTMANAGER_ACTIVE.set(len(self.open.alerts))
                await self._flush()
        finally:
            await asyncio.to_thread(consumer.close)
            await self.client.close()

    def _apply(self, message: Any, now: datetime) -> list[dict[str, Any]]:
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

    async def _flush(self) -> None:
        """Post what is pending; on failure keep it (the newest post per alert wins) and back off."""
        if not self._pending:
            return
        try:
            await self.client.post(self._pending)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            metrics.ALERTMANAGER_POSTS.labels("error").inc()
            log.warning(
                "alertmanager_post_failed",
                url=self.client.url,
                alerts=len(self._pending),
                retry_in_s=round(self._backoff, 3),
                error=repr(exc)[:300],
            )
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, self.settings.retry_max_s)
            return
        metrics.ALERTMANAGER_POSTS.labels("ok").inc()
        self._pending = []
        self._backoff = self.settings.retry_initial_s


def register(app: faust.App, blueprint: Blueprint, resolve: ConfluentResolver | None = None) -> None:
    """Always count transitions by domain; run the bridge when an Alertmanager URL is set.

    ``resolve``: the worker's own Confluent schema ids (:meth:`stream_app.wire.framing.Framing.resolve`).
    """
    PUBLISH_OBSERVERS[blueprint.topic_by_role("alerts").name] = transition_counter(blueprint.schemas)
    metrics.ALERTMANAGER_POSTS.labels("ok")
    metrics.ALERTMANAGER_POSTS.labels("error")
    url = blueprint.settings.alertmanager_url
    if not url:
        return
    bridge = AlertBridge(blueprint, url, resolve)

    async def alert_bridge() -> None:
        # An exception escaping a Faust task ends the worker: the bridge starts again instead, after a
        # pause growing to a minute (one log line a minute at most for a bridge that keeps failing).
        pause = first = blueprint.settings.retry_max_s
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                started = time.monotonic()
                try:
                    await bridge.run()  # returns only by raising: it follows the topic for good
                except Exception:
                    if time.monotonic() - started > RESTART_MAX_S:
                        pause = first  # it had been running well: a new failure, not the same one
                    log.exception("alert_bridge_failed", restart_in_s=pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, RESTART_MAX_S)

    app.task(alert_bridge)
    log.info("alert_bridge_enabled", alertmanager=url, topic=bridge.topic)
