"""What every part of the Redis state store shares: the client, the registered Lua scripts, the
pipelines (routed per primary on a cluster), the retry of connection trouble, and the reply helpers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, TypeVar

from redis.asyncio.cluster import RedisCluster

from stream_app.ops.failures import classify_redis
from stream_app.ops.retry import retry_until_done
from stream_app.settings import Settings
from stream_app.state.connection import RedisClient
from stream_app.state.keys import Keys
from stream_app.state.routing import ClusterRouter, RoutedPipeline

T = TypeVar("T")


class RedisBase:
    """The Redis client, the Lua scripts and the pipelines the state store's parts send on."""

    def __init__(self, client: RedisClient, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self.keys = Keys(settings.redis_key_prefix)
        self._commit_script = client.register_script(lua_script("commit_entity.lua"))
        self._range_script = client.register_script(lua_script("observations_between.lua"))
        self._rollup_script = client.register_script(lua_script("rollup_apply.lua"))
        self._rollup_lengths_script = client.register_script(lua_script("rollup_lengths.lua"))
        self._mark_script = client.register_script(lua_script("applied_mark.lua"))
        # per partition, the commits Redis confirmed that no ledger holds yet: the next mark writes them
        self._unvouched: dict[str, dict[str, int]] = {}
        self._router = (
            ClusterRouter(
                client,
                [
                    self._commit_script,
                    self._range_script,
                    self._rollup_script,
                    self._rollup_lengths_script,
                    self._mark_script,
                ],
                wait_replicas=settings.redis_wait_replicas,
                wait_ms=settings.redis_wait_timeout_ms,
                sync_prefix=self.keys.sync_prefix(),
            )
            if isinstance(client, RedisCluster)
            else None
        )

    def _batch(self, *, durable: bool = False) -> Any:
        """A pipeline for a batch that may carry scripts: on a cluster, routed per primary (and, when
        ``durable``, on a replica before it returns: ``STREAM_APP_REDIS_WAIT_REPLICAS``)."""
        if self._router is not None:
            return self._router.pipeline(durable=durable)
        return self._client.pipeline(transaction=False)

    async def aclose(self) -> None:
        """Close the per-primary connections of a cluster (the client itself is the caller's)."""
        if self._router is not None:
            await self._router.aclose()

    async def _retry(self, operation: str, action: Callable[[], Awaitable[T]]) -> T:
        """Run ``action`` until Redis answers; the partition waits meanwhile (see stream_app.ops.retry).
        An error about the data itself (not the connection) propagates."""
        return await retry_until_done(f"redis_{operation}", action, self._settings, classify_redis)


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _bytes(raw: Any) -> bytes:
    return raw if isinstance(raw, bytes) else str(raw).encode()


def _barrier(pipe: Any) -> None:
    """A plain pipeline runs in order on one connection; a routed one is told where a phase ends."""
    if isinstance(pipe, RoutedPipeline):
        pipe.barrier()


def raise_retried(replies: Sequence[Any]) -> None:
    """Raise the first error reply that is to be waited out (a failover, Redis loading, an ACL): a
    pipeline with ``raise_on_error=False`` hands back every reply, good or bad."""
    for reply in replies:
        if isinstance(reply, BaseException) and classify_redis(reply).retried:
            raise reply


def lua_script(name: str) -> str:
    return resources.files("stream_app.state").joinpath(f"lua/{name}").read_text(encoding="utf-8")
