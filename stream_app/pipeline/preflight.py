"""Start-up checks: Kafka and Redis answer, and the topics the worker needs exist.

A worker that cannot reach a service says so in one line and exits, instead of a traceback flood.
"""

from __future__ import annotations

import asyncio

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource
from redis.exceptions import RedisError

from stream_app.config.blueprint import Blueprint
from stream_app.exceptions import ConfigurationError, ServiceUnreachableError
from stream_app.kafka.acl import APP_WRITES
from stream_app.kafka.config import confluent_config
from stream_app.settings import Settings
from stream_app.state.store import connect


def check_kafka(
    settings: Settings, needed_topics: list[str], exact_partitions: dict[str, int] | None = None
) -> None:
    """Raise :class:`ServiceUnreachableError` unless the brokers answer, :class:`ConfigurationError`
    unless ``needed_topics`` exist.

    ``exact_partitions`` names topics whose partition count must be exactly as declared: the
    internal topic's, since entities are placed on it by hash modulo that count.
    """
    admin = AdminClient(
        {
            **confluent_config(settings),
            "socket.connection.setup.timeout.ms": 3000,
            "log_level": 0,  # librdkafka would print every failed connect; one line below says it all
        }
    )
    try:
        metadata = admin.list_topics(timeout=settings.startup_timeout_s)
    except KafkaException as exc:
        detail = exc.args[0].str() if exc.args else str(exc)
        raise ServiceUnreachableError(
            f"Kafka unreachable at {settings.kafka_bootstrap}: no broker answered within "
            f"{settings.startup_timeout_s:g} s ({detail})"
        ) from None
    missing = sorted(t for t in needed_topics if t not in metadata.topics)
    if missing:  # the cluster answered: it is its topics that are to fix, not its reachability
        raise ConfigurationError(
            f"Kafka at {settings.kafka_bootstrap} lacks topics {missing}: run `stream-app topics apply`"
        )
    for name, wanted in (exact_partitions or {}).items():
        have = len(metadata.topics[name].partitions)
        if have != wanted:
            raise ConfigurationError(
                f"topic {name} has {have} partitions, {wanted} declared: entities are placed by hash modulo "
                "the count, so it must match (to grow it: `stream-app topics grow`, docs/deploy.md)"
            )


async def _ping_redis(settings: Settings) -> None:
    client = connect(settings)  # a cluster client on a cluster: any of its nodes answers
    try:
        deadline = asyncio.get_running_loop().time() + settings.startup_timeout_s
        while True:
            try:
                await client.ping()
            except (RedisError, OSError) as exc:
                if asyncio.get_running_loop().time() >= deadline:
                    raise ServiceUnreachableError(
                        f"Redis unreachable at {_redacted(settings)}: {exc}"
                    ) from None
                await asyncio.sleep(0.5)
            else:
                return
    finally:
        await client.aclose()


def _redacted(settings: Settings) -> str:
    url = settings.redis_url.get_secret_value()
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def check_redis(settings: Settings) -> None:
    """Raise :class:`ServiceUnreachableError` unless Redis answers PING within the start-up timeout."""
    asyncio.run(_ping_redis(settings))


# The roles the worker's stages produce to: every one must take a record of STREAM_APP_OUTPUT_MAX_BYTES
# (the directives and audit records the HTTP API writes are small).
OUTPUT_ROLES = APP_WRITES - {"directives", "audit"}


def check_record_limits(settings: Settings, topics: list[str]) -> None:
    """Raise :class:`ConfigurationError` when a topic the worker writes refuses records of the output
    budget (its ``max.message.bytes``): the size check before producing would pass records the broker
    then refuses, and a refused batch takes its innocent neighbours with it."""
    admin = AdminClient({**confluent_config(settings), "log_level": 0})
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in topics]
    too_small = []
    try:
        for resource, future in admin.describe_configs(
            resources, request_timeout=settings.startup_timeout_s
        ).items():
            entry = future.result().get("max.message.bytes")
            if entry is not None and int(entry.value) < settings.output_max_bytes:
                too_small.append(f"{resource.name} ({entry.value})")
    except KafkaException as exc:
        raise ServiceUnreachableError(f"Kafka did not describe the topics' configs: {exc}") from None
    if too_small:
        raise ConfigurationError(
            f"topics accept smaller records than STREAM_APP_OUTPUT_MAX_BYTES ({settings.output_max_bytes}): "
            f"{', '.join(sorted(too_small))}; raise their max.message.bytes or lower the budget"
        )


def check_services(blueprint: Blueprint) -> None:
    """The checks, Kafka first; the worker calls this before it joins the group."""
    internal = blueprint.topic_by_role("repartition")
    check_kafka(blueprint.settings, [t.name for t in blueprint.topics], {internal.name: internal.partitions})
    check_record_limits(blueprint.settings, [t.name for t in blueprint.topics if t.role in OUTPUT_ROLES])
    check_redis(blueprint.settings)
