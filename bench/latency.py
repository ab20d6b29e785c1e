"""Steady-load latency: observations sent at a fixed rate; for each, the time from its produce call
to the first consolidated event that includes it, and to its alert where it raises one, being
consumed from the center's topics.

A consolidated event carries its entity and the latest event time applied to it; the worker
applies an entity's observations in order, so that event includes every observation of the
entity with an event time at or before it (the worker publishes the newest event per entity and
batch). Alerts name their observation id.

The worker's latency is also broken down per hop, per observation, from timestamps it already
writes (``Tracker.hops``): ``intake`` from the produce call to the intake taking the record's batch
(the internal record's received-at header, the intake's clock); ``to_internal`` from there to the
re-keyed record being read back from the internal topic (the intake's batch, its produce and
acknowledgement, a fetch); ``internal_to_output`` from there to the consolidated event's produce
call (its Kafka timestamp: the re-key topic's fetch, the wait for the step and the step itself,
whose batch time the worker's ``stream_app_stage_batch_seconds`` shows); ``publish`` from that
produce call to the event being read here. The hops add up to produce -> consolidated read. The
clocks are the same machine's wall clock (milliseconds on Kafka).

A peer (``PeerReader``) is timed the same way, from the produce call to its output (which names
the observation id) being read.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from bench.common import Namespace
from bench.workload import Item
from stream_app.kafka import registry
from stream_app.kafka.config import confluent_config
from stream_app.kafka.publisher import RECEIVED_AT
from stream_app.settings import Settings
from stream_app.wire import codecs

# confluent-kafka's consume(n, timeout) returns after the whole timeout unless n records came: the
# timeout is added to every latency measured (it was 50 ms, up to 50 ms on each: issue 28)
READ_WAIT_S = 0.002
HOPS = ("intake", "to_internal", "internal_to_output", "publish")  # see the module's docstring


@dataclass
class Tracker:
    """Produce times of the observations sent, matched against outputs as they arrive."""

    pending: dict[tuple[str, str], deque[tuple[int, float, str]]] = field(default_factory=dict)
    produced_at: dict[str, float] = field(default_factory=dict)  # observation id -> perf_counter
    to_consolidated: list[float] = field(default_factory=list)  # ms
    to_alert: list[float] = field(default_factory=list)  # ms
    to_output: list[float] = field(default_factory=list)  # ms: a peer's output read (PeerReader)
    output_seen: set[str] = field(default_factory=set)
    # observation id -> (received-at header ms, read back from the internal topic, perf_counter)
    internal_at: dict[str, tuple[int, float]] = field(default_factory=dict)
    hops: dict[str, list[float]] = field(default_factory=dict)  # hop -> ms per observation
    wall_offset: float = field(default_factory=lambda: time.time() - time.perf_counter())
    lock: threading.Lock = field(default_factory=threading.Lock)
    errors: int = 0
    measured: int = 0

    def sent(self, item: Item, at: float) -> None:
        meta = item.meta
        if meta is None:
            return
        with self.lock:
            self.produced_at[meta.observation_id] = at
            self.pending.setdefault(meta.entity, deque()).append((meta.event_ms, at, meta.observation_id))
            self.measured += 1

    def consolidated(self, record: dict[str, Any], arrived: float, produced_ms: int | None = None) -> None:
        """A consolidated event read at ``arrived``; ``produced_ms``: its Kafka timestamp (the
        worker's produce call), for the per-hop breakdown."""
        entity = (str(record["indicator"]), str(record.get("station") or record["region"]))
        latest = _ms(record["latest_event_time"])
        with self.lock:
            waiting = self.pending.get(entity)
            while waiting and waiting[0][0] <= latest:
                _event, sent, observation_id = waiting.popleft()
                self.to_consolidated.append(1000 * (arrived - sent))
                internal = self.internal_at.pop(observation_id, None)
                if internal is not None and produced_ms:
                    self._hops(sent, internal, produced_ms, arrived)

    def _hops(self, sent: float, internal: tuple[int, float], produced_ms: int, arrived: float) -> None:
        received_ms, read_back = internal
        wall = self.wall_offset * 1000
        points = [1000 * sent + wall, float(received_ms), 1000 * read_back + wall, float(produced_ms)]
        points.append(1000 * arrived + wall)
        for name, (a, b) in zip(HOPS, itertools.pairwise(points), strict=True):
            self.hops.setdefault(name, []).append(b - a)

    def internal(self, observation_id: str, received_ms: int, arrived: float) -> None:
        """A re-keyed observation read back from the internal topic."""
        with self.lock:
            if observation_id in self.produced_at:
                self.internal_at[observation_id] = (received_ms, arrived)

    def output(self, observation_id: str, arrived: float) -> None:
        """A peer's output for the observation, read at ``arrived``."""
        with self.lock:
            sent = self.produced_at.get(observation_id)
            if sent is not None and observation_id not in self.output_seen:
                self.output_seen.add(observation_id)
                self.to_output.append(1000 * (arrived - sent))

    def alert(self, record: dict[str, Any], arrived: float) -> None:
        with self.lock:
            sent = self.produced_at.get(str(record.get("observation_id") or ""))
            if sent is not None:
                self.to_alert.append(1000 * (arrived - sent))

    def unmatched(self) -> int:
        with self.lock:
            return sum(len(q) for q in self.pending.values())


@dataclass
class OutputReader:
    """Reads the consolidated and alerts topics in a thread and hands each record to the tracker."""

    ns: Namespace
    tracker: Tracker
    stop: threading.Event = field(default_factory=threading.Event)
    ready: threading.Event = field(default_factory=threading.Event)
    internal: bool = False  # also read the internal (re-key) topic, for the per-hop breakdown

    def run(self) -> None:
        consolidated, alerts = self.ns.topic("consolidated"), self.ns.topic("alerts")
        internal = self.ns.topic("repartition") if self.internal else None
        schemas = self.ns.blueprint.schemas
        resolve = registry.from_settings(self.ns.settings, schemas)  # outputs in either framing

        def handle(message: Message, raw: bytes, arrived: float) -> None:
            try:
                if message.topic() == internal:
                    self._internal(message, raw, arrived)
                elif message.topic() == consolidated:
                    produced_ms = message.timestamp()[1]
                    record = codecs.decode(schemas, "consolidated", raw, resolve)
                    self.tracker.consolidated(record, arrived, produced_ms)
                else:
                    self.tracker.alert(codecs.decode(schemas, "alert", raw, resolve), arrived)
            except Exception:  # counted in the result, never fatal to the run
                self.tracker.errors += 1

        topics = (consolidated, alerts, *([internal] if internal else []))
        follow(self.ns.settings, topics, self.stop, self.ready, handle)

    def _internal(self, message: Message, raw: bytes, arrived: float) -> None:
        headers = message.headers() or []
        pairs = list(headers.items()) if isinstance(headers, dict) else headers
        received = next((value for name, value in pairs if name == RECEIVED_AT and value), None)
        if received is None:
            return
        subject, record = codecs.decode_any(self.ns.blueprint.schemas, raw)
        if subject == "observation":
            self.tracker.internal(str(record.get("observation_id") or ""), int(received), arrived)


@dataclass
class PeerReader:
    """Reads a peer's output and alerts topics (JSON naming the observation id) in a thread."""

    settings: Settings
    topics: tuple[str, str]  # output, alerts
    tracker: Tracker
    stop: threading.Event = field(default_factory=threading.Event)
    ready: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        out, _alerts = self.topics

        def handle(message: Message, raw: bytes, arrived: float) -> None:
            try:
                observation_id = str(json.loads(raw).get("observation_id") or "")
            except ValueError:
                self.tracker.errors += 1
                return
            if message.topic() == out:
                self.tracker.output(observation_id, arrived)
            else:
                self.tracker.alert({"observation_id": observation_id}, arrived)

        follow(self.settings, self.topics, self.stop, self.ready, handle)


def follow(
    settings: Settings,
    topics: Sequence[str],
    stop: threading.Event,
    ready: threading.Event,
    handle: Callable[[Message, bytes, float], None],
) -> None:
    """Read ``topics`` from their beginning until ``stop``, handing each record with a value to
    ``handle`` with the time it arrived; ``ready`` once assigned (or failed)."""
    consumer = Consumer(
        {
            **confluent_config(settings),
            "group.id": f"bench-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 5,
            "log_level": 3,
        }
    )
    try:
        metadata = consumer.list_topics(timeout=10).topics
        consumer.assign(
            [TopicPartition(name, p, OFFSET_BEGINNING) for name in topics for p in metadata[name].partitions]
        )
        ready.set()
        while not stop.is_set():
            for message in consumer.consume(500, READ_WAIT_S):
                arrived = time.perf_counter()
                raw = message.value()
                if message.error() is None and raw:
                    handle(message, raw, arrived)
    finally:
        ready.set()
        consumer.close()


def send_steadily(ns: Namespace, items: list[Item], rate: float, tracker: Tracker) -> dict[str, float]:
    """Item n is sent at t0 + n / rate (a late sender catches up); returns what the sender did."""
    # A live reporter's producer: idempotent, all replicas, a short linger (part of the latency).
    producer = Producer(
        {
            **confluent_config(ns.settings),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "log_level": 3,
        }
    )
    topic_of = {r: ns.blueprint.input_topic(r).name for r in {i.reporter for i in items}}
    behind = 0.0
    t0 = time.perf_counter()
    for n, item in enumerate(items):
        delay = t0 + n / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            behind = max(behind, -delay)
        tracker.sent(item, time.perf_counter())
        producer.produce(topic_of[item.reporter], item.value, item.key)
        producer.poll(0)
    seconds = time.perf_counter() - t0
    producer.flush(60)
    return {"seconds": seconds, "rate_achieved": len(items) / seconds, "max_behind_ms": 1000 * behind}


def percentiles(values: list[float], missing: int = 0) -> dict[str, float]:
    """Nearest-rank p50/p95/p99, max and mean (NaN when empty). ``missing`` observations never
    matched count as infinitely late: a percentile they reach is reported as infinite (null in
    JSON), not hidden by leaving them out."""
    ordered = sorted(values) + [math.inf] * missing

    def rank(q: float) -> float:
        if not ordered:
            return math.nan
        return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]

    return {
        "count": float(len(values)),
        "missing": float(missing),
        "p50": rank(50),
        "p95": rank(95),
        "p99": rank(99),
        "max": ordered[-1] if ordered else math.nan,
        "mean": sum(values) / len(values) if values else math.nan,
    }


def _ms(value: Any) -> int:
    if isinstance(value, int):
        return value
    return int(value.timestamp() * 1000)
