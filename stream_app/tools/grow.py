"""``stream-app topics grow``: more partitions for an internal topic, without losing an entity's order.

The intake places every record of an entity on ``partition_for(entity, n)`` and the stateful step
refuses a record read from another partition (``misrouted``); a tick visits the entities its
partition's periods-due registry holds. So the count cannot simply be raised under running workers: an
entity's older records would wait on its old partition while its newer ones are applied from the new
one, and its periods would be closed from the old. Growing is safe when:

1. no worker of the group runs (the group has no member), and
2. the topic is drained: the group has committed every record of it (``STREAM_APP_INTAKE_PAUSED=true``
   workers apply what is left without reading new input; the input waits in Kafka meanwhile).

Then the partitions are added, every entity of the periods-due registry moves to the partition it now
lives on, and the operator declares the new count in ``topics.toml`` before starting the workers
(they refuse to start on a count other than the declared one). Roll-up contributions carry their own
sequence (the newest wins, whatever the order), so the roll-up topic needs only steps 1 and 2.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions

from stream_app.config.blueprint import Blueprint
from stream_app.exceptions import ConfigurationError
from stream_app.kafka.config import confluent_config
from stream_app.kafka.partitioning import partition_for
from stream_app.kafka.topics import PLACED_ROLES
from stream_app.state.store import StateStore, connect


@dataclass(frozen=True, slots=True)
class Grown:
    topic: str
    before: int
    after: int
    entities_moved: int


def grow(blueprint: Blueprint, topic: str, partitions: int) -> Grown:
    """Add partitions to internal ``topic`` (a name as declared or as on the cluster); see the module."""
    settings = blueprint.settings
    name = topic if any(t.name == topic for t in blueprint.topics) else settings.topic(topic)
    spec = next((t for t in blueprint.topics if t.name == name), None)
    if spec is None or spec.role not in PLACED_ROLES:
        internal = sorted(t.name for t in blueprint.topics if t.role in PLACED_ROLES)
        raise ConfigurationError(f"{topic!r} is not an internal topic; grow one of {internal}")
    admin = AdminClient(confluent_config(settings, **{"log_level": 3}))
    before = len(admin.list_topics(name, timeout=settings.startup_timeout_s).topics[name].partitions)
    if partitions < before:
        raise ConfigurationError(f"{name} has {before} partitions already; Kafka cannot remove partitions")
    group = admin.describe_consumer_groups([settings.group_id])[settings.group_id].result()
    if group.members:
        raise ConfigurationError(
            f"{len(group.members)} worker(s) of group {settings.group_id} still run: stop every worker first"
        )
    behind = _unapplied(blueprint, name, before)
    if behind:
        raise ConfigurationError(
            f"{name} is not drained ({sum(behind.values())} records not yet applied, on partitions "
            f"{sorted(behind)}): "
            "run the workers with STREAM_APP_INTAKE_PAUSED=true until `stream-app state status` shows no "
            "lag, stop them, then grow"
        )
    if partitions > before:  # the same count again: only finish the registry of an interrupted run
        for future in admin.create_partitions([NewPartitions(name, partitions)]).values():
            future.result()
    moved = asyncio.run(_regroup(blueprint, partitions)) if spec.role == "repartition" else 0
    return Grown(name, before, partitions, moved)


def _unapplied(blueprint: Blueprint, topic: str, partitions: int) -> dict[int, int]:
    """Partition -> records of ``topic`` the group has not committed, over the cluster's partitions
    (not the declared count: a second grow may come before topics.toml says the first)."""
    settings = blueprint.settings
    consumer = Consumer(confluent_config(settings, **{"group.id": settings.group_id, "log_level": 3}))
    try:
        behind = {}
        wanted = [TopicPartition(topic, p) for p in range(partitions)]
        for tp in consumer.committed(wanted, timeout=settings.startup_timeout_s):
            low, high = consumer.get_watermark_offsets(tp, timeout=settings.startup_timeout_s)
            position = max(tp.offset, low)
            if high > position:
                behind[tp.partition] = high - position
        return behind
    finally:
        consumer.close()


async def _regroup(blueprint: Blueprint, partitions: int) -> int:
    client = connect(blueprint.settings)
    try:
        store = StateStore(client, blueprint.settings)
        return await store.regroup_due(partitions, lambda entity: partition_for(entity, partitions))
    finally:
        await client.aclose()
