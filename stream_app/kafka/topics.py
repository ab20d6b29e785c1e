"""Topics as data (declared in ``topics/topics.toml``, see :mod:`stream_app.config.topics`): plan
compares the declarations with the cluster, apply makes the cluster match, idempotently."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from stream_app.config.topics import TopicSpec
from stream_app.exceptions import ConfigurationError, ServiceUnreachableError
from stream_app.kafka.config import confluent_config
from stream_app.settings import Settings


@dataclass(frozen=True, slots=True)
class TopicChange:
    """One difference between the declaration and the cluster."""

    topic: str
    # create | add_partitions | alter_config | partitions_shrink (not possible) | partitions_placed (an
    # internal topic: only `stream-app topics grow` adds partitions to it)
    action: str
    detail: str


PLACED_ROLES = frozenset({"repartition", "rollup"})
"""Internal topics whose records the processor places by hashing a key modulo the partition count."""


def _admin(settings: Settings) -> AdminClient:
    return AdminClient({**confluent_config(settings), "socket.timeout.ms": 10000, "log_level": 3})


def plan(settings: Settings, specs: list[TopicSpec]) -> list[TopicChange]:
    """Differences between ``specs`` and the cluster, without changing anything."""
    admin = _admin(settings)
    try:
        metadata = admin.list_topics(timeout=settings.startup_timeout_s)
    except KafkaException as exc:
        raise ServiceUnreachableError(f"Kafka at {settings.kafka_bootstrap} unreachable: {exc}") from exc
    changes: list[TopicChange] = []
    existing = [s for s in specs if s.name in metadata.topics]
    for spec in specs:
        current = metadata.topics.get(spec.name)
        if current is None:
            changes.append(
                TopicChange(
                    spec.name, "create", f"{spec.partitions} partitions, config {spec.config or '{}'}"
                )
            )
        elif len(current.partitions) < spec.partitions and spec.role in PLACED_ROLES:
            changes.append(
                TopicChange(
                    spec.name,
                    "partitions_placed",
                    f"cluster has {len(current.partitions)}, declared {spec.partitions}: entities are placed "
                    "by hash modulo the count; grow it with `stream-app topics grow` (docs/deploy.md)",
                )
            )
        elif len(current.partitions) < spec.partitions:
            changes.append(
                TopicChange(spec.name, "add_partitions", f"{len(current.partitions)} -> {spec.partitions}")
            )
        elif len(current.partitions) > spec.partitions:
            changes.append(
                TopicChange(
                    spec.name,
                    "partitions_shrink",
                    f"cluster has {len(current.partitions)}, declared {spec.partitions}: "
                    "Kafka cannot remove partitions; fix the declaration",
                )
            )
    if existing:
        resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in existing]
        described = admin.describe_configs(resources, request_timeout=settings.startup_timeout_s)
        for spec, future in zip(existing, described.values(), strict=True):
            entries: dict[str, Any] = future.result()
            for key, wanted in spec.config.items():
                have = entries[key].value if key in entries else None
                if have != wanted:
                    changes.append(TopicChange(spec.name, "alter_config", f"{key}: {have} -> {wanted}"))
    return changes


def apply(settings: Settings, specs: list[TopicSpec]) -> list[TopicChange]:
    """Make the cluster match ``specs``; idempotent. Returns the changes made."""
    admin = _admin(settings)
    changes = plan(settings, specs)
    by_name = {s.name: s for s in specs}
    creates = [by_name[c.topic] for c in changes if c.action == "create"]
    if creates:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, s.replication_factor, config=s.config) for s in creates],
            request_timeout=settings.startup_timeout_s,
        )
        for name, fut in futures.items():
            try:
                fut.result()
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise ConfigurationError(f"creating topic {name!r}: {exc}") from exc
    if creates:
        _wait_until_usable(admin, {s.name: s.partitions for s in creates}, settings.startup_timeout_s)
    grows = [by_name[c.topic] for c in changes if c.action == "add_partitions"]
    if grows:
        for fut in admin.create_partitions([NewPartitions(s.name, s.partitions) for s in grows]).values():
            fut.result()
    alters = sorted({c.topic for c in changes if c.action == "alter_config"})
    if alters:
        resources = []
        for name in alters:
            entries = [
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                for k, v in by_name[name].config.items()
            ]
            resources.append(ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=entries))
        for fut in admin.incremental_alter_configs(resources).values():
            fut.result()
    shrinks = [c for c in changes if c.action in ("partitions_shrink", "partitions_placed")]
    if shrinks:
        raise ConfigurationError("; ".join(f"{c.topic}: {c.detail}" for c in shrinks))
    return changes


def delete(settings: Settings, names: list[str]) -> list[str]:
    """Delete these topics (and their records); returns those that existed."""
    admin = _admin(settings)
    try:
        present = [n for n in names if n in admin.list_topics(timeout=settings.startup_timeout_s).topics]
    except KafkaException as exc:
        raise ServiceUnreachableError(f"Kafka at {settings.kafka_bootstrap} unreachable: {exc}") from exc
    if present:
        for name, future in admin.delete_topics(
            present, operation_timeout=settings.startup_timeout_s
        ).items():
            try:
                future.result()
            except KafkaException as exc:
                raise ServiceUnreachableError(f"Kafka refused to delete {name!r}: {exc}") from None
    return present


def _wait_until_usable(admin: AdminClient, partitions: dict[str, int], timeout_s: float) -> None:
    """Wait until every new topic has all its partitions with a leader.

    CreateTopics returns once the controller accepted the topics, before every broker serves them:
    a consumer that subscribes in between may see no partitions and not look again for minutes.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        metadata = admin.list_topics(timeout=timeout_s)
        pending = [
            name
            for name, count in partitions.items()
            if name not in metadata.topics
            or len(metadata.topics[name].partitions) < count
            or any(p.leader < 0 for p in metadata.topics[name].partitions.values())
        ]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise ServiceUnreachableError(f"topics not ready after {timeout_s:g} s: {sorted(pending)[:5]}")
        time.sleep(0.1)
