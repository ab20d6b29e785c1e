"""Dead-letter topics: summarise them by reason, and replay selected records after a fix.

Nothing the intake rejects is lost: each dead letter holds the original bytes and key, the reason
code, a message for people, and the source topic, partition and offset. Replaying sends the original
bytes back to their source topic, tagged with a header naming the dead letter they came from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from stream_app import codecs
from stream_app.exceptions import DecodeError
from stream_app.runtime import Blueprint

REPLAY_HEADER = "stream-app-replay-of"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter, decoded, with where it sits in its dead-letter topic."""

    topic: str
    partition: int
    offset: int
    record: dict[str, Any]


@dataclass(slots=True)
class ReasonSummary:
    """Dead letters of one reporter and reason."""

    reporter: str
    reason: str
    count: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    example: str = ""
    sources: set[str] = field(default_factory=set)


def _ms(value: Any) -> int:
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else int(value)


def summarise(reporter: str, letters: list[DeadLetter]) -> list[ReasonSummary]:
    """Count dead letters by reason, with the first and last rejection time and one example message."""
    by_reason: dict[str, ReasonSummary] = {}
    for letter in letters:
        rec = letter.record
        summary = by_reason.setdefault(rec["reason"], ReasonSummary(reporter, rec["reason"]))
        at = _ms(rec["rejected_at"])
        summary.count += 1
        summary.first_ms = at if summary.first_ms is None else min(summary.first_ms, at)
        summary.last_ms = at if summary.last_ms is None else max(summary.last_ms, at)
        summary.example = summary.example or rec["message"]
        summary.sources.add(rec["source_topic"])
    return sorted(by_reason.values(), key=lambda s: (-s.count, s.reason))


def read_all(blueprint: Blueprint, topic: str, timeout_s: float = 10.0) -> Iterator[DeadLetter]:
    """Every dead letter currently in ``topic``, from the start to the end offsets seen on entry."""
    settings = blueprint.settings
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"{settings.group_id}-dlq-reader",
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
        partitions = sorted(metadata.topics[topic].partitions) if topic in metadata.topics else []
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high > low:
                ends[p] = high
                starts.append(TopicPartition(topic, p, low))
        if not starts:
            return
        consumer.assign(starts)
        while ends:
            message = consumer.poll(timeout_s)
            if message is None:
                break  # nothing arrives any more: the end offsets were compacted or deleted away
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(str(error))
                continue
            partition, offset = message.partition() or 0, message.offset() or 0
            if partition not in ends:
                continue
            try:
                record = codecs.decode(blueprint.schemas, "dead_letter", message.value() or b"")
            except DecodeError:
                record = None
            if record is not None:
                yield DeadLetter(topic, partition, offset, record)
            if offset + 1 >= ends[partition]:
                del ends[partition]
    finally:
        consumer.close()


def replay(
    blueprint: Blueprint,
    reporter: str,
    select: Callable[[DeadLetter], bool],
    dry_run: bool = False,
) -> tuple[int, int]:
    """Send the selected dead letters of ``reporter`` back to their source topic.

    Returns (selected, sent). Each record keeps its original key and bytes and carries a header
    ``stream-app-replay-of: <dlq topic>:<partition>:<offset>``.
    """
    source_topic = blueprint.input_topic(reporter).name
    chosen = [d for d in read_all(blueprint, blueprint.dead_letter_topic(reporter).name) if select(d)]
    if dry_run or not chosen:
        return len(chosen), 0
    failures: list[str] = []
    producer = Producer(
        {"bootstrap.servers": blueprint.settings.kafka_bootstrap, "acks": "all", "enable.idempotence": True}
    )
    for letter in chosen:
        rec = letter.record
        producer.produce(
            source_topic,
            key=rec["source_key"],
            value=rec["original"],
            headers=[(REPLAY_HEADER, f"{letter.topic}:{letter.partition}:{letter.offset}".encode())],
            on_delivery=lambda err, _m: failures.append(str(err)) if err else None,
        )
        producer.poll(0)
    producer.flush(30)
    return len(chosen), len(chosen) - len(failures)


def format_summary(rows: list[ReasonSummary]) -> list[str]:
    """Lines of a table for a person at a terminal."""

    def when(ms: int | None) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M") if ms else "-"

    lines = [f"{'reporter':<8} {'reason':<24} {'count':>7}  {'first (UTC)':<16}  {'last (UTC)':<16}  example"]
    for row in rows:
        lines.append(
            f"{row.reporter:<8} {row.reason:<24} {row.count:>7}  {when(row.first_ms):<16}  "
            f"{when(row.last_ms):<16}  {row.example[:80]}"
        )
    return lines
