"""Pipelines on a Redis Cluster that carry Lua scripts, keep their order and wait for a replica.

redis-py's cluster pipeline refuses ``EVALSHA``, and a pipeline spread over several primaries neither
keeps an order between them nor lets a ``WAIT`` cover the writes. :class:`RoutedPipeline` records the
commands like a pipeline, then sends each primary its own commands, in order, on one connection of its
own (a plain pipeline, which loads a missing script by itself), ending with ``WAIT`` when the batch
must be on a replica before it is acknowledged. A :meth:`RoutedPipeline.barrier` splits the batch in
phases: a phase starts once every primary has answered the one before (the applied marks come after
the writes they cover, on whatever primary each lives).

Every key of one command shares a hash slot (:mod:`stream_app.state.keys`). A reply of a primary that
moved, failed or did not reach a replica is an error in place of each of its commands' replies, like a
pipeline's ``raise_on_error=False``; the caller's retry sends the batch again (every write is
idempotent) and the slot map is reloaded first.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from stream_app.ops.failures import classify_redis

SYNC_KEY_TTL_MS = 60_000
READ_ONLY = frozenset({"HGETALL", "HMGET", "HGET", "HLEN", "GET", "EXISTS", "SMEMBERS", "ZRANGEBYSCORE"})


@dataclass(slots=True)
class _Command:
    args: tuple[Any, ...]
    key: str
    phase: int
    script: AsyncScript | None = None
    options: dict[str, Any] = field(default_factory=dict)


class ClusterRouter:
    """One plain client per primary (made as the slot map names them), beside the cluster client."""

    def __init__(
        self,
        cluster: RedisCluster,
        scripts: list[AsyncScript],
        *,
        wait_replicas: int,
        wait_ms: int,
        sync_prefix: str,
    ) -> None:
        self.cluster = cluster
        self.scripts = {script.sha: script for script in scripts}
        self.wait_replicas = wait_replicas
        self.wait_ms = wait_ms
        self.sync_prefix = sync_prefix
        self._nodes: dict[str, aioredis.Redis] = {}
        self._sync_keys: dict[str, str] = {}
        self._stale = False

    def pipeline(self, *, durable: bool) -> RoutedPipeline:
        return RoutedPipeline(self, durable=durable)

    def node_client(self, name: str, host: str, port: int) -> aioredis.Redis:
        client = self._nodes.get(name)
        if client is None:
            kwargs = self.cluster.connection_kwargs
            ssl = issubclass(kwargs.get("connection_class", object), SSLConnection)
            options = {k: v for k, v in kwargs.items() if k in _PLAIN_OPTIONS}
            # one quick reconnection, as connect()'s clients; longer trouble is the caller's to wait out
            retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), 1)
            client = aioredis.Redis(
                host=host,
                port=port,
                ssl=ssl,
                retry=retry,
                retry_on_error=[RedisConnectionError, RedisTimeoutError],
                **options,
            )
            self._nodes[name] = client
        return client

    async def aclose(self) -> None:
        clients, self._nodes = list(self._nodes.values()), {}
        for client in clients:
            await client.aclose()

    async def run(self, commands: list[_Command], *, durable: bool) -> list[Any]:
        await self._slot_map()
        replies: list[Any] = [None] * len(commands)
        phases = sorted({c.phase for c in commands})
        for number, phase in enumerate(phases):
            if number and any(isinstance(r, BaseException) and classify_redis(r).retried for r in replies):
                # a primary did not take the phase before: the batch is sent again, this phase unsent
                for i, command in enumerate(commands):
                    if command.phase >= phase:
                        replies[i] = TryAgainError(
                            "TRYAGAIN an earlier phase of the batch is to be sent again"
                        )
                break
            by_node: dict[str, list[int]] = {}
            nodes: dict[str, Any] = {}
            for i, command in enumerate(commands):
                if command.phase != phase:
                    continue
                try:
                    node = self.cluster.get_node_from_key(command.key)
                except SlotNotCoveredError as exc:  # no primary holds the slot (a failover): retried
                    self._stale = True
                    raise ClusterDownError(f"CLUSTERDOWN no primary holds the slot of {command.key}") from exc
                if node is None:
                    raise ClusterDownError(f"CLUSTERDOWN no primary holds the slot of {command.key}")
                by_node.setdefault(node.name, []).append(i)
                nodes[node.name] = node
            await asyncio.gather(
                *(
                    self._run_node(nodes[name], indexes, commands, replies, durable)
                    for name, indexes in by_node.items()
                )
            )
        return replies

    async def _slot_map(self) -> None:
        """Load the slot map the first time, and again after a reply said it changed."""
        if not self._stale and self.cluster.nodes_manager.slots_cache:
            return
        try:
            if self._stale:
                await self.cluster.nodes_manager.initialize()
            else:
                await self.cluster.initialize()
        except Exception as exc:  # no node answered yet (a failover, a restart): waited out by the caller
            raise ClusterDownError(f"CLUSTERDOWN the slot map could not be loaded: {exc}") from exc
        self._stale = False
        self._sync_keys.clear()

    def _sync_key(self, node: Any) -> str:
        """A key of this primary's slots (the first ``<prefix>{sync-<n>}`` that hashes there)."""
        key = self._sync_keys.get(node.name)
        if key is None:
            for n in range(100_000):
                candidate = f"{self.sync_prefix}{n}}}"
                holder = self.cluster.get_node_from_key(candidate)
                if holder is not None and holder.name == node.name:
                    key = self._sync_keys[node.name] = candidate
                    break
            else:  # a primary without a slot cannot hold a key of the batch either
                raise ClusterDownError(f"CLUSTERDOWN {node.name} holds no slot")
        return key

    async def _run_node(
        self, node: Any, indexes: list[int], commands: list[_Command], replies: list[Any], durable: bool
    ) -> None:
        client = self.node_client(node.name, node.host, node.port)
        writes = any(commands[i].args[0] not in READ_ONLY for i in indexes)
        wait = durable and writes and self.wait_replicas > 0
        try:
            async with client.pipeline(transaction=False) as pipe:
                for i in indexes:
                    command = commands[i]
                    if command.script is not None:
                        pipe.scripts.add(command.script)  # type: ignore[arg-type]  # the async Script
                    pipe.execute_command(*command.args, **command.options)
                if wait:
                    # a write of this connection's own, so that WAIT covers the batch's earlier writes
                    # even when this attempt found them all applied (a script that changes nothing is
                    # not replicated, and WAIT only counts this connection's writes)
                    pipe.execute_command("SET", self._sync_key(node), "1", "PX", SYNC_KEY_TTL_MS)
                    pipe.execute_command("WAIT", self.wait_replicas, self.wait_ms)
                got: list[Any] = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            self._stale = True
            for i in indexes:
                replies[i] = exc
            return
        if wait:
            acked, synced = got.pop(), got.pop()
            if (
                isinstance(synced, BaseException)  # then WAIT may have covered nothing of the batch
                or isinstance(acked, BaseException)
                or int(acked) < self.wait_replicas
            ):
                # NOREPLICAS: a transient refusal (failures.classify_redis); the batch is sent again
                error = ResponseError(
                    f"NOREPLICAS WAIT: {acked!r} of {self.wait_replicas} replicas of {node.name} "
                    f"acknowledged within {self.wait_ms} ms"
                )
                got = [error] * len(indexes)
        for i, reply in zip(indexes, got, strict=True):
            if isinstance(reply, _MAP_CHANGED):
                self._stale = True  # the slot map changed, or is changing: reload it before the next batch
            replies[i] = reply


_MAP_CHANGED = (MovedError, AskError, ReadOnlyError, ClusterDownError, TryAgainError)

_PLAIN_OPTIONS = frozenset(
    {
        "username",
        "password",
        "credential_provider",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "health_check_interval",
        "ssl_ca_certs",
        "ssl_ca_data",
        "ssl_cert_reqs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_check_hostname",
        "ssl_min_version",
        "ssl_ciphers",
        "encoding",
        "encoding_errors",
        "decode_responses",
        "client_name",
    }
)


class RoutedPipeline:
    """The pipeline subset the state layer uses, routed per primary (see the module's docstring)."""

    def __init__(self, router: ClusterRouter, *, durable: bool) -> None:
        self._router = router
        self._durable = durable
        self._commands: list[_Command] = []
        self._phase = 0

    async def __aenter__(self) -> RoutedPipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._commands.clear()

    def barrier(self) -> None:
        """The commands after this one start once every command before it is answered."""
        self._phase += 1

    def execute_command(self, *args: Any, **options: Any) -> RoutedPipeline:
        self._commands.append(_Command(args, str(args[1]), self._phase, options=options))
        return self

    def hgetall(self, key: str) -> RoutedPipeline:
        return self.execute_command("HGETALL", key)

    def hget(self, key: str, name: str) -> RoutedPipeline:
        return self.execute_command("HGET", key, name)

    def hmget(self, key: str, names: list[str]) -> RoutedPipeline:
        return self.execute_command("HMGET", key, *names)

    def hlen(self, key: str) -> RoutedPipeline:
        return self.execute_command("HLEN", key)

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> None:
        """What ``Script.__call__`` sends when the client is not a redis-py pipeline."""
        if numkeys < 1:
            raise ValueError("a script on a cluster names at least one key (its slot)")
        command = _Command(("EVALSHA", sha, numkeys, *keys_and_args), str(keys_and_args[0]), self._phase)
        command.script = self._router.scripts[sha]
        self._commands.append(command)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        commands, self._commands = self._commands, []
        replies = await self._router.run(commands, durable=self._durable)
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, BaseException):
                    raise reply
        return replies
