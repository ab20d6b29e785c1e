"""What an SRE needs from a running worker: liveness, readiness, consumer lag, rebalances.

One :class:`Operations` per app. It runs two background tasks on the worker's event loop:

- a **heartbeat** every second, whose lateness is the event-loop lag and whose age is liveness
  (``GET /livez``): if the heartbeat stops, the loop no longer turns usefully;
- a **probe** every ``STREAM_APP_OPS_INTERVAL_S``: pings Redis, asks Kafka for metadata, and
  refreshes the per-partition consumer lag and the assignment gauges. Readiness (``GET /readyz``)
  is the conjunction of the last probe, the group assignment and :func:`stream_app.ops.retry.retrying`.

Everything here only reads the Faust consumer's bookkeeping (high watermarks come with fetch
responses, committed offsets are what the agents' acks let Faust commit): measuring costs no extra
round trip to Kafka besides the metadata probe.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faust
from confluent_kafka.admin import AdminClient
from faust.sensors import Sensor

from stream_app import __version__
from stream_app.config.blueprint import Blueprint
from stream_app.domain.alerting import RuleBook
from stream_app.domain.catalogue import Catalogue
from stream_app.kafka.config import confluent_config
from stream_app.logs import get_logger
from stream_app.ops import metrics, retry
from stream_app.state.store import RedisClient

log = get_logger(__name__)

HEARTBEAT_S = 1.0
# Liveness fails when the heartbeat is older than this: long enough that a slow batch or a GC pause
# does not get a healthy worker restarted, short enough that a wedged loop does.
LIVENESS_STALE_S = 15.0
PROBE_TIMEOUT_S = 3.0


def feed_intervals(catalogue: Catalogue, rulebook: RuleBook) -> dict[str, float]:
    """Longest silence allowed per reporter with a live feed, in seconds: the shortest ``absence``
    rule interval over the indicators the reporter may report. Reporters of periodic reports only
    (monthly, quarterly ...) have none: their lateness is the late_report rule's business."""
    intervals: dict[str, float] = {}
    for rule in rulebook.rules:
        interval_ms = getattr(rule.params, "interval_ms", None)
        if rule.kind != "absence" or interval_ms is None:
            continue
        indicator = catalogue.indicators.get(rule.indicator)
        if indicator is None:
            continue
        for reporter in indicator.reporters:
            seconds = interval_ms / 1000
            intervals[reporter] = min(intervals.get(reporter, seconds), seconds)
    return intervals


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """Lag of one owned partition: records after the committed offset up to the high watermark."""

    topic: str
    partition: int
    lag: int


def partition_lags(
    assignment: set[Any],
    highwater: Callable[[Any], int | None],
    committed: Callable[[Any], int | None],
) -> list[PartitionLag]:
    """Lag per assigned partition, from the consumer's own bookkeeping (no broker round trip).

    A partition not fetched yet has no known high watermark and is left out; a partition never
    committed counts from the start of what is known (its lag is the high watermark itself only
    when nothing was ever committed, which is what a new group must read).
    """
    lags = []
    for tp in sorted(assignment):
        high = highwater(tp)
        if high is None or high < 0:
            continue
        done = committed(tp)
        lags.append(PartitionLag(tp.topic, tp.partition, max(0, high - (done or 0))))
    return lags


class OpsSensor(Sensor):
    """Faust sensor: counts rebalances and times them."""

    def __init__(self, ops: Operations) -> None:
        super().__init__()
        self._ops = ops

    def on_rebalance_start(self, app: Any) -> dict[str, float]:
        metrics.REBALANCES.inc()
        metrics.REBALANCING.set(1)
        self._ops.rebalancing = True
        return {"time_start": time.monotonic()}

    def on_rebalance_end(self, app: Any, state: dict[str, float]) -> None:
        metrics.REBALANCING.set(0)
        metrics.REBALANCE_SECONDS.observe(time.monotonic() - state.get("time_start", time.monotonic()))
        self._ops.rebalancing = False
        self._ops.assigned_once = True
        self._ops.refresh_assignment()


class Operations:
    """Liveness, readiness and lag of one worker; see the module docstring."""

    def __init__(self, app: faust.App, blueprint: Blueprint, redis_client: RedisClient) -> None:
        self.app = app
        self.blueprint = blueprint
        self.settings = blueprint.settings
        self.redis = redis_client
        self.last_beat = time.monotonic()
        self.rebalancing = False
        self.assigned_once = False
        self.kafka_ok = False
        self.redis_ok = False
        self.assigned = 0
        self._admin: AdminClient | None = None
        self._lag_series: set[tuple[str, str]] = set()
        self._topic_series: set[str] = set()

    def install(self) -> None:
        """Register the sensor and background tasks; set the series that exist from start-up."""
        metrics.WORKER_INFO.labels(self.settings.group_id, __version__).set(1)
        metrics.WORKER_READY.set(0)
        for operation in metrics.RETRY_OPERATIONS:
            metrics.RETRYING.labels(operation).set(0)
            metrics.RETRIES.labels(operation)
        for agent in metrics.AGENTS:
            metrics.AGENT_CRASHES.labels(agent)
        for stage in metrics.STATEFUL_STAGES:
            metrics.STATE_LOST.labels(stage).set(0)
        for stage, reasons in metrics.POISON_REASONS.items():
            for reason in reasons:
                metrics.POISON_RECORDS.labels(stage, reason)
        for dependency in ("kafka", "redis"):
            metrics.DEPENDENCY_UP.labels(dependency).set(0)
        for reporter, seconds in feed_intervals(self.blueprint.catalogue, self.blueprint.rulebook).items():
            metrics.REPORTER_FEED_INTERVAL.labels(reporter).set(seconds)
        self.app.sensors.add(OpsSensor(self))

        async def ops_heartbeat() -> None:
            await self.heartbeat_forever()

        async def ops_probe() -> None:
            await self.probe_forever()

        self.app.task(ops_heartbeat)
        self.app.task(ops_probe)

    # ------------------------------------------------------------------------------ liveness

    async def heartbeat_forever(self) -> None:
        """Wake every second; how late it wakes is the event-loop lag."""
        while True:
            before = time.monotonic()
            await asyncio.sleep(HEARTBEAT_S)
            now = time.monotonic()
            metrics.EVENT_LOOP_LAG_SECONDS.set(max(0.0, now - before - HEARTBEAT_S))
            self.last_beat = now

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """Live while the heartbeat is recent: the event loop turns and runs its tasks."""
        age = time.monotonic() - self.last_beat
        live = age < LIVENESS_STALE_S
        return live, {"live": live, "heartbeat_age_s": round(age, 3)}

    # ------------------------------------------------------------------------------ readiness

    async def probe_forever(self) -> None:
        """Probe dependencies and refresh lag now, then every ``ops_interval_s``."""
        while True:
            try:
                await self.probe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a probe must never take the worker down
                log.warning("ops_probe_failed", error=repr(exc)[:300])
            await asyncio.sleep(self.settings.ops_interval_s)

    async def probe(self) -> None:
        """One round: Redis and Kafka reachability, assignment and lag gauges, the ready gauge."""
        self.redis_ok, self.kafka_ok = await asyncio.gather(self._probe_redis(), self._probe_kafka())
        for dependency, reachable in (("redis", self.redis_ok), ("kafka", self.kafka_ok)):
            metrics.DEPENDENCY_UP.labels(dependency).set(int(reachable))
            retry.probed(dependency, reachable=reachable)
        self.refresh_assignment()
        await self.refresh_lag()
        metrics.WORKER_READY.set(int(self.readiness()[0]))

    async def _probe_redis(self) -> bool:
        try:
            await asyncio.wait_for(self.redis.ping(), PROBE_TIMEOUT_S)
        except Exception:  # RedisError, OSError, the timeout, or anything else: not reachable as it must be
            return False
        return True

    async def _probe_kafka(self) -> bool:
        if self._admin is None:
            self._admin = AdminClient(
                {
                    **confluent_config(self.settings),
                    "socket.connection.setup.timeout.ms": int(PROBE_TIMEOUT_S * 1000),
                    "log_level": 0,  # an unreachable broker is reported by the probe, not by librdkafka
                }
            )
        admin = self._admin
        internal = self.blueprint.topic_by_role("repartition").name
        try:
            metadata = await asyncio.to_thread(admin.list_topics, internal, PROBE_TIMEOUT_S)
        except Exception:  # KafkaException, or anything librdkafka raises when it cannot answer
            return False
        return bool(metadata.brokers)

    def refresh_assignment(self) -> None:
        """The assigned-partitions gauges, per topic; topics no longer assigned drop to 0."""
        try:
            assignment = self.app.consumer.assignment()
        except Exception:  # before the consumer exists
            return
        per_topic: dict[str, int] = {}
        for tp in assignment:
            per_topic[tp.topic] = per_topic.get(tp.topic, 0) + 1
        for topic in self._topic_series - set(per_topic):
            metrics.ASSIGNED_PARTITIONS.labels(topic).set(0)
        for topic, count in per_topic.items():
            metrics.ASSIGNED_PARTITIONS.labels(topic).set(count)
        self._topic_series |= set(per_topic)
        self.assigned = len(assignment)

    async def refresh_lag(self) -> None:
        """Set the lag of every owned partition; remove the series of partitions given away, so the
        sum over all workers is the group's lag."""
        consumer: Any = self.app.consumer
        try:
            assignment = set(consumer.assignment())
        except Exception:  # before the consumer exists
            return
        committed_offsets = getattr(consumer, "_committed_offset", {})

        def committed(tp: Any) -> int | None:
            value = committed_offsets.get(tp)
            return int(value) if value is not None else None

        def highwater(tp: Any) -> int | None:
            try:
                value = consumer.highwater(tp)
            except Exception:  # not fetched yet, or the partition just went away
                return None
            return int(value) if value is not None else None

        current: set[tuple[str, str]] = set()
        for lag in partition_lags(assignment, highwater, committed):
            labels = (lag.topic, str(lag.partition))
            metrics.CONSUMER_LAG.labels(*labels).set(lag.lag)
            current.add(labels)
        for labels in self._lag_series - current:
            metrics.CONSUMER_LAG.remove(*labels)
        self._lag_series = current

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready to do its share of the work: in the group with its partitions, Kafka and Redis
        reachable at the last probe, and no operation waiting for a dependency. ``unavailable`` names
        the dependencies down (unreachable at the last probe, or waited for)."""
        waiting = sorted(retry.retrying())
        checks = {
            "partitions_assigned": self.assigned_once and not self.rebalancing,
            "kafka": self.kafka_ok,
            "redis": self.redis_ok,
            "not_retrying": not waiting,
        }
        ready = all(checks.values())
        return ready, {
            "ready": ready,
            "checks": checks,
            "assigned_partitions": self.assigned,
            "rebalancing": self.rebalancing,
            "waiting_for": waiting,
            "unavailable": retry.unavailable(),
        }
