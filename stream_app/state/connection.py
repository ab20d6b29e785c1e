"""Connecting to Redis: a single Redis or a Redis Cluster client from the settings' URL."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from stream_app.settings import Settings

RedisClient = aioredis.Redis | RedisCluster
"""A single Redis or a Redis Cluster: every key a command or script touches shares one hash slot
(:mod:`stream_app.state.keys`), so the two answer the same commands."""


def connect(settings: Settings) -> RedisClient:
    """An asyncio Redis client for the settings' URL (hiredis parser when installed); a cluster client
    when ``STREAM_APP_REDIS_CLUSTER`` is set.

    A command that meets a dropped connection (Redis restarted, a failover) is sent again once on a
    fresh one: every command and script here is idempotent (the commit scripts skip what is applied),
    so the first request after a restart does not fail for a stale pooled connection. Longer outages
    are the callers' to wait out (``_retry``) or to answer 503 (the query API). The cluster client also
    follows MOVED and ASK redirections and reloads the slot map after a failover."""
    url = settings.redis_url.get_secret_value()
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), 2)
    if not settings.redis_cluster:
        client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=5.0,
            socket_connect_timeout=3.0,
            health_check_interval=30,
            retry=retry,
            retry_on_error=[RedisConnectionError],
        )
        return client
    nodes, options = cluster_address(url)
    return RedisCluster(
        startup_nodes=nodes,
        socket_timeout=5.0,
        socket_connect_timeout=3.0,
        health_check_interval=30,
        retry=retry,
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        **options,
    )


def cluster_address(url: str) -> tuple[list[ClusterNode], dict[str, Any]]:
    """The nodes to start from and the connection options of a cluster URL, whose host part may list
    several ``host:port`` (the options — user, password, TLS — are the same for every node)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("a Redis URL starts with redis:// or rediss://")
    auth, at, location = rest.rpartition("@")
    hosts, slash, tail = location.partition("/")
    nodes: list[ClusterNode] = []
    for address in hosts.split(","):
        host, colon, port = address.rpartition(":")
        if not colon or not port.isdigit():
            raise ValueError(f"a Redis Cluster node is host:port, got {address!r}")
        nodes.append(ClusterNode(host.strip("[]"), int(port)))
    first = f"{scheme}://{auth}{at}{nodes[0].host}:{nodes[0].port}{slash}{tail}"
    options: dict[str, Any] = dict(parse_url(first))
    for name in ("host", "port", "db", "connection_class"):
        options.pop(name, None)
    if scheme == "rediss":
        options["ssl"] = True
    return nodes, options
