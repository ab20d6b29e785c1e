"""Dead-letter topics: summarise them by reason, and replay selected records after a fix.

Nothing a stage refuses is lost: each dead letter holds the original bytes and key, the reason code,
a message for people, the source topic, partition and offset, the stage and, for a poison record, the
exception type. Reporters' records go to the reporter's dead-letter topic; poison of the internal
stages to the stage's (``internal.consolidate.dlq``, ``internal.rollup.dlq``); directives to
``center.directives.dlq``. Replaying sends the original bytes back to where they were read, tagged with
a header naming the dead letter they came from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from stream_app.config.blueprint import Blueprint
from stream_app.domain import clock
from stream_app.domain.clock import as_ms
from stream_app.exceptions import ServiceUnreachableError
from stream_app.kafka import registry
from stream_app.kafka.config import confluent_config
from stream_app.kafka.publisher import received_at
from stream_app.kafka.registry import SchemaRegistryUnavailable
from stream_app.wire import codecs
from stream_app.wire.codecs import ConfluentResolver, DecodeError

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


def summarise(reporter: str, letters: list[DeadLetter]) -> list[ReasonSummary]:
    """Count dead letters by reason, with the first and last rejection time and one example message."""
    by_reason: dict[str, ReasonSummary] = {}
    for letter in letters:
        rec = letter.record
        summary = by_reason.setdefault(rec["reason"], ReasonSummary(reporter, rec["reason"]))
        at = as_ms(rec["rejected_at"])
        summary.count += 1
        summary.first_ms = at if summary.first_ms is None else min(summary.first_ms, at)
        summary.last_ms = at if summary.last_ms is None else max(summary.last_ms, at)
        summary.example = summary.example or rec["message"]
        summary.sources.add(rec["source_topic"])
    return sorted(by_reason.values(), key=lambda s: (-s.count, s.reason))


def read_all(blueprint: Blueprint, topic: str, timeout_s: float = 10.0) -> Iterator[DeadLetter]:
    """Every dead letter currently in ``topic``, from the start to the end offsets seen on entry: Avro
    single-object encoded, or Confluent-framed (through ``STREAM_APP_SCHEMA_REGISTRY_URL``)."""
    settings = blueprint.settings
    resolve = registry.from_settings(settings, blueprint.schemas)
    consumer = Consumer(
        {
            **confluent_config(settings),
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
            record = _decoded(blueprint, message.value() or b"", resolve)
            if record is not None:
                yield DeadLetter(topic, partition, offset, record)
            if offset + 1 >= ends[partition]:
                del ends[partition]
    finally:
        consumer.close()


def _decoded(blueprint: Blueprint, value: bytes, resolve: ConfluentResolver | None) -> dict[str, Any] | None:
    """A dead letter in either framing; None when undecodable."""
    try:
        return codecs.decode(blueprint.schemas, "dead_letter", value, resolve)
    except DecodeError:
        return None
    except SchemaRegistryUnavailable as exc:  # a partial count would mislead: stop and say why
        raise ServiceUnreachableError(str(exc)) from None


STAGES = {
    "directives": "directives_dead_letter",
    "consolidate": "consolidate_dead_letter",
    "rollup": "rollup_dead_letter",
}
"""The stages with a dead-letter topic of their own (a reporter's records go to the reporter's)."""


@dataclass(frozen=True, slots=True)
class Source:
    """A dead-letter topic and where its records go back to: a reporter's input topic (the broker's
    partitioner places them by key, as the reporter's producer did), or an internal topic, to the very
    partition they were read from (an internal record belongs to the partition that owns its entity)."""

    label: str  # the reporter code or the stage
    topic: str
    replay_to: str
    same_partition: bool


def reporter_source(blueprint: Blueprint, reporter: str) -> Source:
    return Source(
        reporter, blueprint.dead_letter_topic(reporter).name, blueprint.input_topic(reporter).name, False
    )


def stage_source(blueprint: Blueprint, stage: str) -> Source:
    topic = blueprint.topic_by_role(STAGES[stage]).name
    if stage == "directives":
        return Source(stage, topic, blueprint.topic_by_role("directives").name, False)
    source = blueprint.topic_by_role("repartition" if stage == "consolidate" else "rollup").name
    return Source(stage, topic, source, True)


def replay(
    blueprint: Blueprint,
    source: Source,
    select: Callable[[DeadLetter], bool],
    dry_run: bool = False,
) -> tuple[int, int]:
    """Send the selected dead letters of ``source`` back where they were read.

    Returns (selected, sent). Each record keeps its original key and bytes and carries a header
    ``stream-app-replay-of: <dlq topic>:<partition>:<offset>``. A dead letter whose original bytes had
    to be left out (``original_truncated``: too large for a letter, never inflated, or a minimal letter)
    or whose key was (``source_key_truncated``) cannot be replayed and is not selected: the original is
    in the source topic at the letter's position.
    """
    chosen = [d for d in read_all(blueprint, source.topic) if select(d) and _replayable(d.record)]
    if dry_run or not chosen:
        return len(chosen), 0
    failures: list[str] = []
    producer = Producer({**confluent_config(blueprint.settings), "acks": "all", "enable.idempotence": True})
    for letter in chosen:
        rec = letter.record
        extra = {"partition": rec["source_partition"]} if source.same_partition else {}
        producer.produce(
            source.replay_to,
            key=rec["source_key"],
            value=rec["original"],
            # a replay onto the internal topic is received now: its step runs at this time, live and on
            # a rebuild alike
            headers=[
                (REPLAY_HEADER, f"{letter.topic}:{letter.partition}:{letter.offset}".encode()),
                *received_at(clock.now_ms()),
            ],
            on_delivery=lambda err, _m: failures.append(str(err)) if err else None,
            **extra,
        )
        producer.poll(0)
    producer.flush(30)
    return len(chosen), len(chosen) - len(failures)


def _replayable(record: dict[str, Any]) -> bool:
    return not (record.get("original_truncated") or record.get("source_key_truncated"))


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
