"""The librdkafka driver commits the reporters' partitions, which its bounded reader fetches and
librdkafka does not (stream_app/kafka/rdlanes/bounded.py): the group's coordinator checks an
OffsetCommit by the member and its generation, not by what the member fetches. Shown here with a
plain librdkafka member of a group of the test's own on a reporter topic, on the real broker."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from stream_app.config.blueprint import Blueprint
from stream_app.kafka.config import confluent_config
from stream_app.settings import Settings


def _member(settings: Settings, group: str, topic: str, assigned: list[list[TopicPartition]]) -> Consumer:
    def on_assign(consumer: Any, partitions: list[TopicPartition]) -> None:
        assigned.append(partitions)
        consumer.assign([])  # the group's partitions, fetched by no one here (as the bounded reader's)

    consumer = Consumer(
        confluent_config(
            settings,
            **{
                "group.id": group,
                "enable.auto.commit": False,
                "partition.assignment.strategy": "roundrobin",
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 500,
                "max.poll.interval.ms": 6000,
                "log_level": 3,
            },
        )
    )
    consumer.subscribe([topic], on_assign=on_assign)
    return consumer


def _poll_until(consumer: Consumer, done: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        consumer.poll(0.2)
    assert done(), "no assignment in time"


def test_a_member_commits_a_partition_the_group_assigned_it_that_it_does_not_fetch(
    settings: Settings, blueprint: Blueprint
) -> None:
    topic = blueprint.input_topic("MAE").name
    group = f"{settings.group_id}-commits-{uuid.uuid4().hex[:6]}"
    assigned: list[list[TopicPartition]] = []
    member = _member(settings, group, topic, assigned)
    try:
        _poll_until(member, lambda: bool(assigned))
        tp = assigned[0][0]
        assert member.assignment() == [], "librdkafka fetches none of the group's partitions"

        member.commit(offsets=[TopicPartition(tp.topic, tp.partition, 7)], asynchronous=False)
        assert _committed(settings, group, tp) == 7, "committed by the member, though not fetched by it"
        member.poll(0.2)  # still a member in good standing: a second commit moves the offset on
        member.commit(offsets=[TopicPartition(tp.topic, tp.partition, 9)], asynchronous=False)
        assert _committed(settings, group, tp) == 9
    finally:
        member.close()


# A member fenced out of the group (a zombie past max.poll.interval) has its commits refused: shown on
# the workers themselves, on both drivers, by test_zombie_worker.py. A plain librdkafka consumer left a
# zombie here could hang in close() (seen once in a CI run), so this file does not make one.


def _committed(settings: Settings, group: str, tp: TopicPartition) -> int:
    reader = Consumer(confluent_config(settings, **{"group.id": group, "log_level": 3}))
    try:
        [found] = reader.committed([TopicPartition(tp.topic, tp.partition)], timeout=10)
        return int(found.offset)
    finally:
        reader.close()
