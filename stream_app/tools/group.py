"""``stream-app group reset GROUP --topic T --to-datetime ISO [--execute]``: move a consumer group's
positions on one topic to a moment, so that the records from then on are processed again (or skipped).

What ``kafka-consumer-groups --reset-offsets --to-datetime`` does, through the project's own
connection (the admin's credentials and CA from the settings; no properties file holding a password):
for each partition, the first offset whose record is at or after the moment (the partition's end when
none is), compared with the group's committed position. A dry run by default: it prints the plan;
``--execute`` commits it, only while the group has no members (a running worker would overwrite it,
and Kafka refuses it anyway), and writes one audit record (``group_reset``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime

from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from stream_app.api import audit
from stream_app.config.blueprint import Blueprint
from stream_app.exceptions import ConfigurationError, RefusedError, ServiceUnreachableError, UsageError
from stream_app.kafka.config import confluent_config
from stream_app.settings import Settings

# A group in these states has no members: its positions may be changed.
_IDLE = frozenset({ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD})


@dataclass(frozen=True, order=True, slots=True)
class Move:
    """One partition's position: the group's now (None: never committed) and after the reset."""

    partition: int
    committed: int | None
    target: int

    @property
    def records(self) -> int | None:
        """How many records the group will read again (positive) or skip (negative)."""
        return None if self.committed is None else self.committed - self.target


def moment_ms(text: str) -> int:
    """An ISO-8601 time with its offset, in epoch milliseconds; without an offset it is refused: the
    host's time zone is no place to guess a reset's moment from."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--to-datetime {text!r} is no ISO-8601 time") from None
    if moment.tzinfo is None:
        raise UsageError(f"--to-datetime {text!r}: give the time with its offset (e.g. +07:00 or Z)")
    return int(moment.timestamp() * 1000)


def plan_moves(
    committed: Mapping[int, int | None], found: Mapping[int, int], ends: Mapping[int, int]
) -> list[Move]:
    """The moves of every partition: the offset Kafka found for the moment, or the partition's end when
    no record is at or after it (Kafka answers -1)."""
    return sorted(Move(p, committed.get(p), found[p] if found[p] >= 0 else ends[p]) for p in found)


@dataclass(frozen=True, slots=True)
class Reset:
    """A reset's plan (or what was committed)."""

    group: str
    topic: str
    to_datetime: str
    at_ms: int
    executed: bool
    moves: list[Move]


def plan(settings: Settings, group: str, topic: str, to_datetime: str) -> Reset:
    """The positions the group would take on ``topic``; changes nothing."""
    at_ms = moment_ms(to_datetime)
    consumer = Consumer(confluent_config(settings, **{"group.id": group, "log_level": 3}))
    try:
        metadata = consumer.list_topics(topic, timeout=settings.startup_timeout_s).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise ConfigurationError(f"topic {topic!r} does not exist on the cluster")
        parts = sorted(metadata.partitions)
        timeout = settings.startup_timeout_s
        found = consumer.offsets_for_times([TopicPartition(topic, p, at_ms) for p in parts], timeout=timeout)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1] for p in parts
        }
        committed = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=timeout)
    except KafkaException as exc:
        raise ServiceUnreachableError(f"Kafka did not answer for {topic!r}: {exc}") from None
    finally:
        consumer.close()
    moves = plan_moves(
        {tp.partition: tp.offset if tp.offset >= 0 else None for tp in committed},
        {tp.partition: tp.offset for tp in found},
        ends,
    )
    return Reset(group, topic, to_datetime, at_ms, False, moves)


def execute(settings: Settings, reset: Reset) -> Reset:
    """Commit ``reset``'s positions; refused while the group has members."""
    admin = AdminClient(confluent_config(settings, **{"log_level": 3}))
    timeout = settings.startup_timeout_s
    try:
        described = admin.describe_consumer_groups([reset.group], request_timeout=timeout)[
            reset.group
        ].result()
        if described.state not in _IDLE:
            raise RefusedError(
                f"group {reset.group!r} has {len(described.members)} member(s) ({described.state.name}): "
                "stop its consumers (every worker) first"
            )
        request = ConsumerGroupTopicPartitions(
            reset.group, [TopicPartition(reset.topic, m.partition, m.target) for m in reset.moves]
        )
        admin.alter_consumer_group_offsets([request], request_timeout=timeout)[reset.group].result()
    except KafkaException as exc:
        raise ServiceUnreachableError(f"Kafka refused the reset of {reset.group!r}: {exc}") from None
    return Reset(reset.group, reset.topic, reset.to_datetime, reset.at_ms, True, reset.moves)


def run(
    blueprint: Blueprint, group: str, topic: str, to_datetime: str, *, execute_it: bool, output: str
) -> int:
    """The ``group reset`` verb: plan, and commit with ``--execute``; print; the exit code."""
    reset = plan(blueprint.settings, group, topic, to_datetime)
    if execute_it:
        reset = execute(blueprint.settings, reset)  # RefusedError: exit 1 (stream_app.exit_codes)
        details = {"topic": topic, "to_datetime": to_datetime, "partitions": str(len(reset.moves))}
        audit.send_cli(blueprint, "group_reset", group, "applied", details)
    if output == "json":
        print(
            json.dumps({**asdict(reset), "moves": [{**asdict(m), "records": m.records} for m in reset.moves]})
        )
        return 0
    for move in reset.moves:
        before = "none" if move.committed is None else str(move.committed)
        again = "" if move.records is None else f"  ({move.records:+d} records)"
        print(f"{topic}[{move.partition}]  {before} -> {move.target}{again}")
    if reset.executed:
        print(f"group {group}: {len(reset.moves)} partition(s) of {topic} reset to {to_datetime}")
    else:
        print(f"group {group}: dry run, nothing changed; add --execute to commit (every consumer stopped)")
    return 0
