"""Connecting to Redis: a single Redis or a Redis Cluster client from the settings' URL."""

from __future__ import annotations

from typing import Any, TypeVar, cast

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection, parse_url
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
        pool = client.connection_pool
        pool.connection_class = packing_with_hiredis(pool.connection_class)
        return client
    nodes, options = cluster_address(url)
    cluster = RedisCluster(
        startup_nodes=nodes,
        socket_timeout=5.0,
        socket_connect_timeout=3.0,
        health_check_interval=30,
        retry=retry,
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        **options,
    )
    # every node's connections (the startup nodes' too: the first discovery makes them again from these)
    node_options = cluster.nodes_manager.connection_kwargs
    node_options["connection_class"] = packing_with_hiredis(node_options["connection_class"])
    return cluster


C = TypeVar("C", bound=AbstractConnection)
_PACKING_WITH_HIREDIS: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def packing_with_hiredis(base: type[C]) -> type[C]:
    """``base`` packing its commands with hiredis (C) rather than redis-py's asyncio packer (Python).

    redis-py's synchronous client packs with hiredis when it is installed; its asyncio connections
    always pack in Python, one ``Encoder.encode`` per argument: at a live rate the worker's scripts
    and pipelines (tens of arguments each) spent more CPU packing than Redis spent running them.
    hiredis accepts what the encoder accepts (bytes, str as UTF-8, int, float as ``repr``) and refuses
    what it refuses (bool, None): those, and anything else it refuses, fall back to ``base``'s packer
    and its error. The bytes on the wire are the same (``tests/unit/test_redis_packing.py``)."""

    made = _PACKING_WITH_HIREDIS.get(base)
    if made is not None:
        return cast("type[C]", made)

    class HiredisPacking(base):  # type: ignore[valid-type,misc]  # a class made from a class argument
        def pack_command(self, *args: Any) -> list[bytes]:
            name = args[0]
            # a command named in several words ("CLIENT SETNAME") is sent as several arguments
            words = tuple(name.encode().split() if isinstance(name, str) else name.split())
            try:
                return [hiredis.pack_command(words + args[1:])]
            except TypeError:  # not bytes, str, int or float: the encoder's own answer (DataError)
                return list(super().pack_command(*args))

    HiredisPacking.__name__ = HiredisPacking.__qualname__ = f"Hiredis{base.__name__}"
    _PACKING_WITH_HIREDIS[base] = HiredisPacking
    return HiredisPacking


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
