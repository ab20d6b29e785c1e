"""Operators' and the center's inputs to a running pipeline: ticks and directives.

Both are ordinary records on Kafka, so they are ordered, durable and replayable like everything else.
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Producer

from stream_app.config.blueprint import Blueprint
from stream_app.kafka.config import confluent_config
from stream_app.kafka.partitioning import TICK_KEY, partition_for
from stream_app.kafka.subjects import output_framing
from stream_app.wire import codecs


def _producer(blueprint: Blueprint) -> Producer:
    return Producer({**confluent_config(blueprint.settings), "acks": "all", "log_level": 3})


def send_ticks(blueprint: Blueprint, at_ms: int | None = None, source: str = "cli") -> int:
    """One tick (time ``at_ms``, default now) into every partition of the internal topic."""
    internal = blueprint.topic_by_role("repartition")
    schema = blueprint.schemas.latest("tick")
    now_ms = at_ms if at_ms is not None else int(time.time() * 1000)
    producer = _producer(blueprint)
    for partition in range(internal.partitions):
        record = {"partition": partition, "now": now_ms, "source": source}
        producer.produce(
            internal.name, key=TICK_KEY, value=codecs.encode(schema, record), partition=partition
        )
    if producer.flush(30):
        raise RuntimeError("ticks not delivered within 30 s")
    return internal.partitions


def send_directive(
    blueprint: Blueprint,
    *,
    alert_key: str,
    action: str,
    actor: str,
    alert_id: str = "",
    assignee: str | None = None,
    comment: str | None = None,
    reporter: str = "",
    directive_id: str | None = None,
) -> str:
    """Publish a directive about ``alert_key`` to the center's directives topic; returns its id."""
    directive_id = directive_id or f"dir-{uuid.uuid4().hex[:16]}"
    record = {
        "directive_id": directive_id,
        "alert_key": alert_key,
        "alert_id": alert_id,
        "reporter": reporter,
        "action": action,
        "actor": actor,
        "assignee": assignee,
        "comment": comment,
        "issued_at": int(time.time() * 1000),
        "due_at": None,
    }
    topic = blueprint.topic_by_role("directives").name
    framing = output_framing(blueprint, topics=[topic])  # a public topic: framed as the worker would
    producer = _producer(blueprint)
    producer.produce(
        topic,
        key=alert_key.encode(),
        value=framing.encode(topic, blueprint.schemas.latest("directive"), record),
    )
    if producer.flush(30):
        raise RuntimeError("directive not delivered within 30 s")
    return directive_id


def internal_partition(blueprint: Blueprint, entity: str) -> int:
    """The internal-topic partition that owns ``entity``."""
    return partition_for(entity, blueprint.topic_by_role("repartition").partitions)
