"""Entity state in Redis: one pipelined read and one pipelined atomic commit per batch.

Keys are ``<prefix>:{<entity>}:state``; the braces are a Redis Cluster hash tag, so everything one
commit touches lives in one slot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, TypeVar

import redis.asyncio as aioredis

from stream_app.domain.aggregates import Agg
from stream_app.domain.catalogue import Indicator
from stream_app.domain.entity import EntityState, HourRange, Seen, SeriesPeriod
from stream_app.logs import get_logger
from stream_app.ops.failures import classify_redis
from stream_app.ops.retry import retry_until_done
from stream_app.settings import Settings

T = TypeVar("T")
log = get_logger(__name__)

# Every key of an entity lives as long as the retention inside it (this and the previous reporting
# year of its newest value) after the last write, so idle entities age out.
STATE_TTL_S = 800 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Commit:
    """One entity's new state and the input position it includes."""

    entity: str
    state: EntityState
    source: str
    offset: int
    indicator: Indicator


@dataclass(frozen=True, slots=True)
class PreparedCommit:
    """A commit turned into the commit script's keys and arguments (see :meth:`StateStore.prepare`)."""

    entity: str
    keys: list[str]
    args: list[str | int]


@dataclass(slots=True)
class EntityReads:
    """What was read of one entity, raw: a batch run again after more reads starts from these."""

    state: dict[bytes, bytes] = field(default_factory=dict)
    seen: dict[str, bytes | None] = field(default_factory=dict)
    periods: dict[SeriesPeriod, bytes | None] = field(default_factory=dict)
    ranges: list[HourRange] = field(default_factory=list)

    def build(self) -> EntityState:
        """A fresh decoded state from the reads."""
        state = EntityState.from_hash(self.state)
        for observation_id, raw in self.seen.items():
            known = Seen.decode(raw)
            if known is not None:
                state.seen[observation_id] = known
        state.periods = {k: None if v is None else Agg.decode(v.decode()) for k, v in self.periods.items()}
        state.loaded_ranges = list(self.ranges)
        return state


@dataclass(slots=True)
class ReadRequest:
    """What to read of one entity: its state hash (once), observation ids, periods, ranges."""

    state: bool = False
    ids: set[str] = field(default_factory=set)
    periods: set[SeriesPeriod] = field(default_factory=set)
    ranges: set[HourRange] = field(default_factory=set)


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
        self._commit_script = client.register_script(lua_script("commit_entity.lua"))
        self._range_script = client.register_script(lua_script("observations_between.lua"))

    @property
    def client(self) -> aioredis.Redis:
        return self._client

    def key(self, entity: str, part: str = "state") -> str:
        """A key of ``entity``: ``state``, ``seen``, ``seen-index``, ``periods``, ``periods-index``."""
        return f"{self._prefix}:{{{entity}}}:{part}"

    def global_key(self, *parts: str) -> str:
        """A key outside any entity (the periods-due registry, indexes for the query API)."""
        return ":".join((self._prefix, *parts))

    async def read(
        self, requests: dict[str, ReadRequest], into: dict[str, EntityReads]
    ) -> dict[str, BaseException]:
        """Read what ``requests`` ask for, in one round trip, into ``into`` (per entity).

        Connection trouble is waited out (the whole read is retried); a reply that is an error about
        one entity's data (a key of the wrong type, say) is returned for that entity, so the records
        of every other entity go on.
        """
        plan: list[tuple[str, str, Any]] = []

        async def run() -> list[Any]:
            async with self._client.pipeline(transaction=False) as pipe:
                plan.clear()
                for entity, request in requests.items():
                    if request.state:
                        pipe.hgetall(self.key(entity))
                        plan.append((entity, "state", None))
                    if request.ids:
                        ids = sorted(request.ids)
                        pipe.hmget(self.key(entity, "seen"), ids)
                        plan.append((entity, "seen", ids))
                    if request.periods:
                        keys = sorted(request.periods)
                        pipe.hmget(self.key(entity, "periods"), [f"{s}|{lb}" for s, lb in keys])
                        plan.append((entity, "periods", keys))
                    for first, end in sorted(request.ranges):
                        seen, index = self.key(entity, "seen"), self.key(entity, "seen-index")
                        await self._range_script(keys=[seen, index], args=[first, end], client=pipe)
                        plan.append((entity, "range", (first, end)))
                result: list[Any] = await pipe.execute(raise_on_error=False)
                raise_retried(result)
                return result

        replies = await self.with_retry("load", run)
        return _collect(plan, replies, into)

    def prepare(self, commit: Commit) -> PreparedCommit:
        """Serialise one entity's commit (pure; raises if the state cannot be written out, which the
        caller charges to that entity rather than to the batch)."""
        return PreparedCommit(commit.entity, self._commit_keys(commit.entity), _commit_args(commit))

    async def commit(
        self, commits: Sequence[PreparedCommit], before: Sequence[tuple[Any, ...]] = ()
    ) -> tuple[int, dict[str, BaseException]]:
        """Write every commit atomically per entity, in one round trip.

        ``before``: single-key commands sent first in the same round trip (indexes that are safe to
        write more than once: the periods-due registry, the query API's indexes); an error about one
        of them is logged, not fatal: they are derived again by the next batch of their entity.
        Returns how many entities were written, and the entities whose commit Redis refused for good
        (an error about the data, not the connection: those are retried).
        """
        if not commits and not before:
            return 0, {}

        async def write() -> list[Any]:
            async with self._client.pipeline(transaction=False) as pipe:
                for command in before:
                    pipe.execute_command(*command)
                for c in commits:
                    await self._commit_script(keys=c.keys, args=c.args, client=pipe)
                result: list[Any] = await pipe.execute(raise_on_error=False)
                raise_retried(result)
                return result

        results = await self.with_retry("commit", write)
        for command, reply in zip(before, results, strict=False):
            if isinstance(reply, BaseException):
                what = {"command": str(command[0]), "key": str(command[1])}
                log.error("index_write_failed", **what, error=repr(reply)[:300])
        failed: dict[str, BaseException] = {}
        written = 0
        for c, reply in zip(commits, results[len(before) :], strict=True):
            if isinstance(reply, BaseException):
                failed[c.entity] = reply
            else:
                written += int(reply)
        return written, failed

    def _commit_keys(self, entity: str) -> list[str]:
        return [
            self.key(entity, part) for part in ("state", "seen", "seen-index", "periods", "periods-index")
        ]

    async def with_retry(self, operation: str, action: Callable[[], Awaitable[T]]) -> T:
        """Run ``action`` until Redis answers; the partition waits meanwhile (see stream_app.retry).
        An error about the data itself (not the connection) propagates."""
        return await retry_until_done(f"redis_{operation}", action, self._settings, classify_redis)


def _collect(
    plan: list[tuple[str, str, Any]], replies: list[Any], into: dict[str, EntityReads]
) -> dict[str, BaseException]:
    """Sort a read's replies into each entity's reads; the entities whose replies were errors."""
    failed: dict[str, BaseException] = {}
    for (entity, kind, arg), reply in zip(plan, replies, strict=True):
        if isinstance(reply, BaseException):
            failed.setdefault(entity, reply)
            continue
        reads = into.setdefault(entity, EntityReads())
        if kind == "state":
            reads.state = reply
        elif kind == "seen":
            reads.seen.update(zip(arg, reply, strict=True))
        elif kind == "periods":
            reads.periods.update(zip(arg, reply, strict=True))
        else:
            pairs = iter(reply)
            for seen_key, raw in zip(pairs, pairs, strict=True):
                reads.seen[seen_key.decode()] = raw
            reads.ranges.append(arg)
    return failed


def raise_retried(replies: Sequence[Any]) -> None:
    """Raise the first error reply that is to be waited out (a failover, Redis loading, an ACL): a
    pipeline with ``raise_on_error=False`` hands back every reply, good or bad."""
    for reply in replies:
        if isinstance(reply, BaseException) and classify_redis(reply).retried:
            raise reply


def lua_script(name: str) -> str:
    return resources.files("stream_app.state").joinpath(f"lua/{name}").read_text(encoding="utf-8")


def _commit_args(c: Commit) -> list[str | int]:
    removed = c.state.removed_fields()
    fields = c.state.to_fields()
    seen = c.state.seen_updates()
    periods = c.state.period_updates(c.indicator)
    retention = c.state.retention_ms
    args: list[str | int] = [
        EntityState.offset_field(c.source),
        c.offset,
        STATE_TTL_S,
        "" if retention is None else retention,
        len(removed),
        len(fields),
        len(seen),
        len(periods),
        *removed,
    ]
    for name, value in fields.items():
        args.extend((name, value))
    for observation_id, record, hour in seen:
        args.extend((observation_id, record, hour))
    for name, aggregate, ends in periods:
        args.extend((name, aggregate or "", ends))
    return args
