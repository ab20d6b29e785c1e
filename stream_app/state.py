"""Entity state in Redis: one pipelined read and one pipelined atomic commit per batch.

Keys are ``<prefix>:{<entity>}:state``; the braces are a Redis Cluster hash tag, so everything one
commit touches lives in one slot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from stream_app.entity import EntityState
from stream_app.retry import retry_until_done
from stream_app.settings import Settings

T = TypeVar("T")

STATE_TTL_S = (
    35 * 24 * 3600
)  # longer than every retention inside (32 days of daily sums), so idle entities age out


@dataclass(frozen=True, slots=True)
class Commit:
    """One entity's new state and the input position it includes."""

    entity: str
    state: EntityState
    source: str
    offset: int


def connect(settings: Settings) -> aioredis.Redis:
    """An asyncio Redis client for the settings' URL (hiredis parser when installed)."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        settings.redis_url.get_secret_value(),
        socket_timeout=5.0,
        socket_connect_timeout=3.0,
        health_check_interval=30,
    )
    return client


class StateStore:
    """Reads and commits entity states; retries infrastructure failures until they pass."""

    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self._prefix = settings.redis_key_prefix
        script = resources.files("stream_app").joinpath("lua/commit_entity.lua").read_text(encoding="utf-8")
        self._commit_script = client.register_script(script)

    def key(self, entity: str, part: str = "state") -> str:
        """A key of ``entity``: its ``state`` hash, its ``seen`` hash or its ``seen-index``."""
        return f"{self._prefix}:{{{entity}}}:{part}"

    async def load(
        self, entities: Iterable[str], seen_ids: dict[str, list[str]] | None = None
    ) -> dict[str, EntityState]:
        """States of ``entities`` (new entities get an empty state), with whether each observation id
        in ``seen_ids`` (per entity) was already applied, in one round trip."""
        names = list(entities)
        wanted = seen_ids or {}

        async def read() -> list[Any]:
            async with self._client.pipeline(transaction=False) as pipe:
                for entity in names:
                    pipe.hgetall(self.key(entity))
                    ids = wanted.get(entity)
                    if ids:
                        pipe.hmget(self.key(entity, "seen"), ids)
                result: list[Any] = await pipe.execute()
                return result

        replies = iter(await self.with_retry("load", read))
        states = {}
        for entity in names:
            state = EntityState.from_hash(next(replies))
            ids = wanted.get(entity)
            if ids:
                for observation_id, value in zip(ids, next(replies), strict=True):
                    known = EntityState.decode_seen(value)
                    if known is not None:
                        state.seen[observation_id] = known
            states[entity] = state
        return states

    async def commit(self, commits: list[Commit]) -> int:
        """Write every commit atomically per entity, in one round trip; returns how many were written."""
        if not commits:
            return 0

        async def write() -> int:
            async with self._client.pipeline(transaction=False) as pipe:
                for c in commits:
                    removed = c.state.removed_fields()
                    fields = c.state.to_fields()
                    seen = c.state.seen_updates()
                    horizon = c.state.seen_horizon_hour
                    args: list[str | int] = [
                        EntityState.offset_field(c.source),
                        c.offset,
                        STATE_TTL_S,
                        "" if horizon is None else horizon,
                        len(removed),
                        len(fields),
                        len(seen),
                        *removed,
                    ]
                    for name, value in fields.items():
                        args.extend((name, value))
                    for observation_id, value, hour in seen:
                        args.extend((observation_id, value, hour))
                    keys = [self.key(c.entity), self.key(c.entity, "seen"), self.key(c.entity, "seen-index")]
                    await self._commit_script(keys=keys, args=args, client=pipe)
                results = await pipe.execute()
                return sum(int(r) for r in results)

        return await self.with_retry("commit", write)

    async def with_retry(self, operation: str, action: Callable[[], Awaitable[T]]) -> T:
        """Run ``action`` until Redis answers; the partition waits meanwhile (see stream_app.retry)."""
        return await retry_until_done(f"redis_{operation}", action, self._settings, _redis_failure)


def _redis_failure(exc: Exception) -> bool:
    return isinstance(exc, (RedisError, OSError, TimeoutError))
