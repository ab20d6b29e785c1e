"""The state layer: every Redis command the processor sends, behind one interface.

Callers ask for what they need — an entity's reads and its atomic commit with the input offset it
includes, the entities due at a tick, the query API's indexes, a roll-up's contributions, the briefing's
marker — and never see a key, a field format or a command. :class:`StateLayer` is the interface;
:class:`StateStore` implements it on Redis (pipelines and the Lua scripts of ``lua/``, one round trip
per batch), :class:`stream_app.state.memory.MemoryStateStore` in memory with the same semantics, for
unit tests of the agents' batch logic. Key names: :mod:`stream_app.state.keys`.

The stateful writes (entity commits, roll-up contributions) retry connection trouble until it passes
(the partition waits); the query API's reads do not (a request fails fast instead).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from typing import Any, Protocol, TypeVar, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from stream_app.domain.aggregates import Agg, same_period_last_year
from stream_app.domain.catalogue import Indicator
from stream_app.domain.entity.state import EntityState, HourRange, SeriesPeriod
from stream_app.domain.model import period_field, split_period_field
from stream_app.domain.rollup import decode_entries, encode_entry
from stream_app.logs import get_logger
from stream_app.ops.failures import classify_redis
from stream_app.ops.retry import retry_until_done
from stream_app.settings import Settings
from stream_app.state import entity_hash, ledger
from stream_app.state.keys import STATE_TTL_S, Keys
from stream_app.state.routing import ClusterRouter, RoutedPipeline

T = TypeVar("T")
log = get_logger(__name__)

# Every key of an entity lives as long as the retention inside it (this and the previous reporting
# year of its newest value) after the last write, so idle entities age out.
BRIEFING_MARKER_TTL_S = 8 * 24 * 3600

PeriodKey = tuple[str, str, str, str]  # a roll-up period: (indicator, target, series, label)


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


@dataclass(frozen=True, slots=True)
class DueAt:
    """Index write: ``entity`` (of internal ``partition``) has an open period whose deadline is
    ``deadline_ms``; None: it has none."""

    partition: int
    entity: str
    deadline_ms: int | None


@dataclass(frozen=True, slots=True)
class ReporterSent:
    """Index write: ``reporter`` has sent values of ``entity`` (compliance's "connected")."""

    reporter: str
    entity: str


@dataclass(frozen=True, slots=True)
class ActiveAlert:
    """Index write: the open alert's record as JSON; None once it is resolved."""

    alert_key: str
    record_json: str | None


IndexWrite = DueAt | ReporterSent | ActiveAlert
"""Writes that are safe to repeat, sent with a batch's commits: derived again by the next batch of
their entity, so an error about one is logged, not fatal."""


@dataclass(frozen=True, slots=True)
class RollupWrite:
    """One source's contribution to a roll-up period: kept unless a higher ``seq`` is already there."""

    period: PeriodKey
    source: str
    seq: int
    aggregate: str | None


@dataclass(frozen=True, slots=True)
class RollupApplied:
    """What :meth:`StateLayer.apply_rollup` did: the writes refused for good (by position, with the
    error), and per period asked, its sources and last year's (or the error reading them)."""

    refused: dict[int, BaseException]
    periods: list[tuple[dict[str, Agg] | BaseException, dict[str, Agg] | BaseException]]


@dataclass(slots=True)
class EntityReads:
    """What was read of one entity, raw: a batch run again after more reads starts from these."""

    state: dict[bytes, bytes] = field(default_factory=dict)
    seen: dict[str, bytes | None] = field(default_factory=dict)
    periods: dict[SeriesPeriod, bytes | None] = field(default_factory=dict)
    ranges: list[HourRange] = field(default_factory=list)
    vouched: int | None = None  # the offset the partition's ledger says the state holds (asked or not)

    def build(self) -> EntityState:
        """A fresh decoded state from the reads."""
        state = entity_hash.decode_state(self.state)
        for observation_id, raw in self.seen.items():
            known = entity_hash.decode_seen(raw)
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


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """How far the state goes: its epoch (None: never begun, or lost), per input partition
    (``<topic>:<partition>``) the highest offset it holds (None: none), and whether a rebuild runs."""

    epoch: str | None
    applied: dict[str, int | None]
    rebuilding: bool = False


Mark = tuple[int, int | None]
"""A partition's new applied mark: (the batch's last offset, the floor the mark must still reach — the
batch's first offset - 1 — or None for a partition read from the start of its log)."""


class StateLostError(RuntimeError):
    """The state lost what a batch was admitted on while the batch ran (Redis restarted empty, flushed,
    failed over, or a rebuild began): its applied mark was refused. The batch is not acknowledged; the
    stage waits on the state guard again."""


class StateLayer(Protocol):
    """What the agents and the query API ask of the state; implemented on Redis and in memory."""

    keys: Keys

    async def read(
        self,
        requests: dict[str, ReadRequest],
        into: dict[str, EntityReads],
        vouched: Mapping[str, Sequence[str]] | None = None,
    ) -> dict[str, BaseException]:
        """Read what ``requests`` ask for into ``into``, and what the ledger of each source of
        ``vouched`` says of its entities (``EntityReads.vouched``); the entities whose data could not
        be read."""
        ...

    def prepare(self, commit: Commit) -> PreparedCommit:
        """Serialise one entity's commit (raises if the state cannot be written out)."""
        ...

    async def commit(
        self,
        commits: Sequence[PreparedCommit],
        indexes: Sequence[IndexWrite] = (),
        applied: Mapping[str, Mark] | None = None,
    ) -> tuple[int, dict[str, BaseException]]:
        """Write every commit atomically per entity (skipped if its offset is already applied), the
        index writes, and then the partitions' applied marks (``applied``: source -> offset);
        how many entities were written, and the entities refused for good."""
        ...

    async def checkpoint(self, sources: Sequence[str]) -> Checkpoint:
        """The epoch and the applied marks of ``sources``."""
        ...

    async def begin_epoch(self, epoch: str) -> str:
        """Record ``epoch`` unless one is there; the epoch now stored."""
        ...

    async def set_marks(self, marks: Mapping[str, int], epoch: str) -> None:
        """Set the applied marks and the epoch as given (a rebuild's, or an adoption's end)."""
        ...

    async def due_entities(self, partition: int, now_ms: int) -> list[str]:
        """Entities of an internal partition with a period whose deadline is at or before ``now_ms``."""
        ...

    async def ledger_loss(self, source: str, count: int) -> str | None:
        """Up to ``count`` entries of a partition's ledger, chosen at random, checked against their
        entities' states: what is lost, or None."""
        ...

    async def apply_rollup(
        self,
        writes: Sequence[RollupWrite],
        periods: Sequence[PeriodKey],
        applied: Mapping[str, Mark] | None = None,
    ) -> RollupApplied:
        """Apply contributions and the partitions' applied marks, then read every period of
        ``periods`` and its last year's."""
        ...

    async def rollup_ledger(self, periods: Sequence[PeriodKey]) -> list[tuple[int, int | None]]:
        """Per period: how many sources its hash holds, and how many the roll-ups' ledger says it held."""
        ...

    async def vouch_rollups(self, counts: Mapping[PeriodKey, int]) -> None:
        """Record in the roll-ups' ledger how many sources each period's hash holds now."""
        ...

    async def rollup_ledger_loss(self, count: int) -> str | None:
        """Up to ``count`` roll-up ledger entries at random, checked against their hashes."""
        ...

    async def entity_state(self, entity: str) -> EntityState | None:
        """An entity's decoded state hash; None if it has none."""
        ...

    async def entity_states(self, entities: Sequence[str]) -> list[EntityState | None]:
        """Several entities' decoded states, in one round trip; None for one that has none."""
        ...

    async def entity_periods(
        self, entity: str, wanted: Sequence[SeriesPeriod] | None = None
    ) -> dict[SeriesPeriod, Agg | None]:
        """An entity's period aggregates: those of ``wanted`` (None where absent), or all it has."""
        ...

    async def period_values(self, wanted: Sequence[tuple[str, SeriesPeriod]]) -> list[Agg | None]:
        """One period aggregate per (entity, (series, label)), None where absent."""
        ...

    async def rollup_sources(
        self, indicator: str, target: str, series: str, labels: Sequence[str]
    ) -> list[dict[str, Agg]]:
        """Per label, the sources' aggregates of a roll-up period."""
        ...

    async def active_alerts(self) -> list[dict[str, Any]]:
        """The open alerts' records."""
        ...

    async def reporter_entities(self, reporters: Sequence[str]) -> list[set[str]]:
        """Per reporter, the entities it has ever sent."""
        ...

    async def briefing_published(self, day: date) -> bool:
        """Whether the briefing of ``day`` was published."""
        ...

    async def mark_briefing(self, day: date, now_ms: int) -> None:
        """Remember that the briefing of ``day`` was published."""
        ...


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


class StateStore:
    """The state layer on Redis: reads and commits entity states; retries infrastructure failures of
    the stateful writes until they pass."""

    def __init__(self, client: RedisClient, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self.keys = Keys(settings.redis_key_prefix)
        self._commit_script = client.register_script(lua_script("commit_entity.lua"))
        self._range_script = client.register_script(lua_script("observations_between.lua"))
        self._rollup_script = client.register_script(lua_script("rollup_apply.lua"))
        self._mark_script = client.register_script(lua_script("applied_mark.lua"))
        # per partition, the commits Redis confirmed that no ledger holds yet: the next mark writes them
        self._unvouched: dict[str, dict[str, int]] = {}
        self._router = (
            ClusterRouter(
                client,
                [self._commit_script, self._range_script, self._rollup_script, self._mark_script],
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

    # ------------------------------------------------------------------ the stateful step

    async def read(
        self,
        requests: dict[str, ReadRequest],
        into: dict[str, EntityReads],
        vouched: Mapping[str, Sequence[str]] | None = None,
    ) -> dict[str, BaseException]:
        """Read what ``requests`` ask for, in one round trip, into ``into`` (per entity), with the
        ledger entries of ``vouched`` (source -> entities).

        Connection trouble is waited out (the whole read is retried); a reply that is an error about
        one entity's data (a key of the wrong type, say) is returned for that entity, so the records
        of every other entity go on.
        """
        plan: list[tuple[str, str, Any]] = []
        keys = self.keys

        async def run() -> list[Any]:
            async with self._batch() as pipe:
                plan.clear()
                for entity, request in requests.items():
                    if request.state:
                        pipe.hgetall(keys.entity(entity))
                        plan.append((entity, "state", None))
                    if request.ids:
                        ids = sorted(request.ids)
                        pipe.hmget(keys.entity(entity, "seen"), ids)
                        plan.append((entity, "seen", ids))
                    if request.periods:
                        wanted = sorted(request.periods)
                        pipe.hmget(keys.entity(entity, "periods"), [period_field(*p) for p in wanted])
                        plan.append((entity, "periods", wanted))
                    for first, end in sorted(request.ranges):
                        seen, index = keys.entity(entity, "seen"), keys.entity(entity, "seen-index")
                        await self._range_script(keys=[seen, index], args=[first, end], client=pipe)
                        plan.append((entity, "range", (first, end)))
                for source, entities in sorted((vouched or {}).items()):
                    pipe.hmget(keys.ledger(source), list(entities))
                    plan.append(("", "ledger", list(entities)))
                result: list[Any] = await pipe.execute(raise_on_error=False)
                raise_retried(result)
                return result

        replies = await self._retry("load", run)
        return _collect(plan, replies, into, int(time.time() * 1000))

    def prepare(self, commit: Commit) -> PreparedCommit:
        """Serialise one entity's commit (pure; raises if the state cannot be written out, which the
        caller charges to that entity rather than to the batch)."""
        return PreparedCommit(commit.entity, self.keys.entity_all(commit.entity), _commit_args(commit))

    async def commit(
        self,
        commits: Sequence[PreparedCommit],
        indexes: Sequence[IndexWrite] = (),
        applied: Mapping[str, Mark] | None = None,
    ) -> tuple[int, dict[str, BaseException]]:
        """Write every commit atomically per entity, in one round trip.

        ``indexes`` are sent first in the same round trip; an error about one of them is logged, not
        fatal: they are derived again by the next batch of their entity. Returns how many entities
        were written, and the entities whose commit Redis refused for good (an error about the data,
        not the connection: those are retried).
        """
        marks = sorted((applied or {}).items())
        if not commits and not indexes and not marks:
            return 0, {}
        before = [self._index_command(write) for write in indexes]
        # what each mark vouches for: the commits of its partition that Redis confirmed in earlier batches
        # (a commit vouched for before its reply came could be one that never landed). A replay sets no
        # marks, and so no ledger: a rebuild starts the ledgers afresh.
        carried = {source: sorted(self._unvouched.pop(source, {}).items()) for source, _ in marks}
        now_ms = int(time.time() * 1000)

        async def write() -> list[Any]:
            async with self._batch(durable=True) as pipe:
                for command in before:
                    pipe.execute_command(*command)
                for c in commits:
                    await self._commit_script(keys=c.keys, args=c.args, client=pipe)
                # after the commits: an append-only file that lost its tail never holds a mark
                # without the writes it covers (on a cluster: once every primary holds them)
                _barrier(pipe)
                for source, mark in marks:
                    await self._mark(pipe, source, mark, carried[source], now_ms)
                result: list[Any] = await pipe.execute(raise_on_error=False)
                raise_retried(result)
                return result

        results = await self._retry("commit", write)
        for command, reply in zip(before, results, strict=False):
            if isinstance(reply, BaseException):
                what = {"command": str(command[0]), "key": str(command[1])}
                log.error("index_write_failed", **what, error=repr(reply)[:300])
        failed: dict[str, BaseException] = {}
        written = 0
        end = len(before) + len(commits)
        for c, reply in zip(commits, results[len(before) : end], strict=True):
            if isinstance(reply, BaseException):
                failed[c.entity] = reply
            else:
                written += int(reply)
        _raise_mark_refusal(marks, results[end:])
        if marks:
            self._confirmed(commits, failed)
        return written, failed

    def _confirmed(self, commits: Sequence[PreparedCommit], failed: Mapping[str, BaseException]) -> None:
        """Remember the commits Redis confirmed (written, or already there: the state holds the
        offset either way), for the next mark of their partition to vouch for."""
        for source, pairs in ledger.entries((c.entity, c.args) for c in commits).items():
            pending = self._unvouched.setdefault(source, {})
            for entity, offset in pairs:
                if entity not in failed:
                    pending[entity] = max(offset, pending.get(entity, offset))

    async def _mark(
        self, pipe: Any, source: str, mark: Mark, vouched: Sequence[tuple[str, int]] = (), now_ms: int = 0
    ) -> None:
        offset, floor = mark
        keys = [self.keys.applied(source), self.keys.rebuilding(), self.keys.ledger(source)]
        args: list[str | int] = [offset, "" if floor is None else floor]
        for entity, at in vouched:
            args += [entity, ledger.encode(at, now_ms)]
        await self._mark_script(keys=keys, args=args, client=pipe)

    async def ledger_loss(self, source: str, count: int) -> str | None:
        """Up to ``count`` ledger entries of ``source`` at random (HRANDFIELD), each checked against its
        entity's offset field, in two round trips; no retry (the audit tries again next time)."""
        raw: list[Any] = (
            await self._client.hrandfield(  # type: ignore[assignment]  # with values: a flat list
                self.keys.ledger(source), count, withvalues=True
            )
            or []
        )
        pairs = list(zip(raw[0::2], raw[1::2], strict=True))
        if not pairs:
            return None
        entities = [_text(name) for name, _ in pairs]
        field = entity_hash.offset_field(source)
        async with self._batch() as pipe:
            for entity in entities:
                pipe.hget(self.keys.entity(entity), field)
            held: list[Any] = await pipe.execute()
        now_ms = int(time.time() * 1000)
        for entity, (_, value), offset in zip(entities, pairs, held, strict=True):
            state = {} if offset is None else {field.encode(): offset}
            problem = ledger.loss(entity, source, state, ledger.decode(value, now_ms))
            if problem is not None:
                return problem
        return None

    async def set_marks(self, marks: Mapping[str, int], epoch: str) -> None:
        """Set the applied marks and the epoch as given (a rebuild's, or an adoption's end)."""
        async with self._client.pipeline(transaction=False) as pipe:
            for source, offset in sorted(marks.items()):
                pipe.set(self.keys.applied(source), offset)
            pipe.set(self.keys.epoch(), epoch)
            await pipe.execute()

    async def checkpoint(self, sources: Sequence[str]) -> Checkpoint:
        """The epoch and the applied marks of ``sources``, in one round trip (waits out Redis)."""

        async def read() -> list[Any]:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.get(self.keys.epoch())
                pipe.exists(self.keys.rebuilding())
                for source in sources:
                    pipe.get(self.keys.applied(source))
                result: list[Any] = await pipe.execute()
                return result

        epoch, rebuilding, *marks = await self._retry("checkpoint", read)
        return Checkpoint(
            None if epoch is None else _text(epoch),
            {s: None if m is None else int(m) for s, m in zip(sources, marks, strict=True)},
            bool(rebuilding),
        )

    async def begin_epoch(self, epoch: str) -> str:
        key = self.keys.epoch()

        async def write() -> Any:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.set(key, epoch, nx=True)
                pipe.get(key)
                return (await pipe.execute())[1]

        return _text(await self._retry("checkpoint", write))

    def _index_command(self, write: IndexWrite) -> tuple[Any, ...]:
        keys = self.keys
        if isinstance(write, DueAt):
            if write.deadline_ms is None:
                return ("ZREM", keys.due(write.partition), write.entity)
            return ("ZADD", keys.due(write.partition), write.deadline_ms, write.entity)
        if isinstance(write, ReporterSent):
            return ("SADD", keys.reporter_entities(write.reporter), write.entity)
        if write.record_json is None:
            return ("HDEL", keys.active_alerts(), write.alert_key)
        return ("HSET", keys.active_alerts(), write.alert_key, write.record_json)

    async def due_entities(self, partition: int, now_ms: int) -> list[str]:
        """Entities of a partition with a period whose deadline has passed (the periods-due registry)."""
        key = self.keys.due(partition)

        async def read() -> list[Any]:
            return list(await self._client.zrangebyscore(key, "-inf", now_ms))

        return [_text(raw) for raw in await self._retry("load", read)]

    async def regroup_due(self, partitions: int, home_of: Callable[[str], int]) -> int:
        """Move every entity of the periods-due registries of ``partitions`` partitions to the registry
        of the partition it lives on, ``home_of(entity)`` (``stream-app topics grow``; no worker runs).
        Returns how many moved. Each move adds before it removes, and a second run finishes what a crash
        left (a duplicate, never a lost deadline)."""
        moved = 0
        for partition in range(partitions):
            source = self.keys.due(partition)
            entries = await self._client.zrangebyscore(source, "-inf", "+inf", withscores=True)
            for raw, deadline in cast(list[tuple[bytes, float]], entries):
                entity = _text(raw)
                home = home_of(entity)
                if home == partition:
                    continue
                await self._client.zadd(self.keys.due(home), {entity: deadline})
                await self._client.zrem(source, entity)
                moved += 1
        return moved

    async def apply_rollup(
        self,
        writes: Sequence[RollupWrite],
        periods: Sequence[PeriodKey],
        applied: Mapping[str, Mark] | None = None,
    ) -> RollupApplied:
        """Apply every write and the applied marks, and read every period (and last year's), in one
        round trip."""
        keys = self.keys
        marks = sorted((applied or {}).items())

        async def run() -> list[Any]:
            async with self._batch(durable=True) as pipe:
                for w in writes:
                    await self._rollup_script(
                        keys=[keys.rollup(*w.period)],
                        args=[w.source, w.seq, encode_entry(w.seq, w.aggregate), STATE_TTL_S],
                        client=pipe,
                    )
                _barrier(pipe)
                for source, mark in marks:
                    await self._mark(pipe, source, mark)
                for indicator, target, series, label in periods:
                    pipe.hgetall(keys.rollup(indicator, target, series, label))
                    pipe.hgetall(keys.rollup(indicator, target, series, same_period_last_year(label)))
                result: list[Any] = await pipe.execute(raise_on_error=False)
                raise_retried(result)
                return result

        replies = await self._retry("rollup", run)
        refused = {i: r for i, r in enumerate(replies[: len(writes)]) if isinstance(r, BaseException)}
        _raise_mark_refusal(marks, replies[len(writes) : len(writes) + len(marks)])
        reads = [_entries_or_error(r) for r in replies[len(writes) + len(marks) :]]
        return RollupApplied(refused, list(zip(reads[0::2], reads[1::2], strict=True)))

    async def rollup_ledger(self, periods: Sequence[PeriodKey]) -> list[tuple[int, int | None]]:
        """One round trip: the periods' hash lengths and their ledger entries (waits out Redis)."""
        if not periods:
            return []
        names = [self.keys.rollup(*p) for p in periods]

        async def read() -> list[Any]:
            async with self._batch() as pipe:
                pipe.hmget(self.keys.rollup_ledger(), names)
                for name in names:
                    pipe.hlen(name)
                result: list[Any] = await pipe.execute()
                return result

        vouched, *held = await self._retry("rollup", read)
        now_ms = int(time.time() * 1000)
        return [(int(n), ledger.decode(v, now_ms)) for v, n in zip(vouched, held, strict=True)]

    async def vouch_rollups(self, counts: Mapping[PeriodKey, int]) -> None:
        if not counts:
            return
        now_ms = int(time.time() * 1000)
        pairs: list[str] = []
        for period, n in sorted(counts.items()):
            pairs += [self.keys.rollup(*period), ledger.encode(n, now_ms)]

        async def write() -> None:
            await self._client.execute_command("HSET", self.keys.rollup_ledger(), *pairs)

        await self._retry("rollup", write)

    async def rollup_ledger_loss(self, count: int) -> str | None:
        raw: list[Any] = (
            await self._client.hrandfield(  # type: ignore[assignment]  # with values: a flat list
                self.keys.rollup_ledger(), count, withvalues=True
            )
            or []
        )
        pairs = [(_text(name), value) for name, value in zip(raw[0::2], raw[1::2], strict=True)]
        if not pairs:
            return None
        async with self._batch() as pipe:
            for name, _ in pairs:
                pipe.hlen(name)
            held: list[Any] = await pipe.execute()
        now_ms = int(time.time() * 1000)
        for (name, value), n in zip(pairs, held, strict=True):
            problem = ledger.rollup_loss(name, int(n), ledger.decode(value, now_ms))
            if problem is not None:
                return problem
        return None

    # ------------------------------------------------------------------ the query API's reads

    async def entity_state(self, entity: str) -> EntityState | None:
        raw = await self._client.hgetall(self.keys.entity(entity))
        return entity_hash.decode_state({_bytes(k): _bytes(v) for k, v in raw.items()}) if raw else None

    async def entity_states(self, entities: Sequence[str]) -> list[EntityState | None]:
        async with self._client.pipeline(transaction=False) as pipe:
            for entity in entities:
                pipe.hgetall(self.keys.entity(entity))
            replies = await pipe.execute()
        return [
            entity_hash.decode_state({_bytes(k): _bytes(v) for k, v in raw.items()}) if raw else None
            for raw in replies
        ]

    async def entity_periods(
        self, entity: str, wanted: Sequence[SeriesPeriod] | None = None
    ) -> dict[SeriesPeriod, Agg | None]:
        key = self.keys.entity(entity, "periods")
        if wanted is None:
            raw = await self._client.hgetall(key)
            return {split_period_field(_text(k)): Agg.decode(_text(v)) for k, v in raw.items()}
        values = await self._client.hmget(key, [period_field(*p) for p in wanted])
        return {p: _agg(v) for p, v in zip(wanted, values, strict=True)}

    async def period_values(self, wanted: Sequence[tuple[str, SeriesPeriod]]) -> list[Agg | None]:
        async with self._client.pipeline(transaction=False) as pipe:
            for entity, period in wanted:
                pipe.hget(self.keys.entity(entity, "periods"), period_field(*period))
            replies = await pipe.execute()
        return [_agg(raw) for raw in replies]

    async def rollup_sources(
        self, indicator: str, target: str, series: str, labels: Sequence[str]
    ) -> list[dict[str, Agg]]:
        async with self._client.pipeline(transaction=False) as pipe:
            for label in labels:
                pipe.hgetall(self.keys.rollup(indicator, target, series, label))
            replies = await pipe.execute()
        return [decode_entries(raw) for raw in replies]

    async def active_alerts(self) -> list[dict[str, Any]]:
        raw = await self._client.hgetall(self.keys.active_alerts())
        return [json.loads(v) for v in raw.values()]

    async def reporter_entities(self, reporters: Sequence[str]) -> list[set[str]]:
        async with self._client.pipeline(transaction=False) as pipe:
            for code in reporters:
                pipe.smembers(self.keys.reporter_entities(code))
            replies = await pipe.execute()
        return [{_text(m) for m in members} for members in replies]

    async def briefing_published(self, day: date) -> bool:
        return bool(await self._client.exists(self.keys.briefing(day)))

    async def mark_briefing(self, day: date, now_ms: int) -> None:
        await self._client.set(self.keys.briefing(day), str(now_ms), ex=BRIEFING_MARKER_TTL_S)

    async def _retry(self, operation: str, action: Callable[[], Awaitable[T]]) -> T:
        """Run ``action`` until Redis answers; the partition waits meanwhile (see stream_app.ops.retry).
        An error about the data itself (not the connection) propagates."""
        return await retry_until_done(f"redis_{operation}", action, self._settings, classify_redis)


class StateMarkRefusedError(RuntimeError):
    """Redis refused to store an applied mark: the deployment's keys are wrong, not a record."""


def _raise_mark_refusal(marks: Sequence[tuple[str, Mark]], replies: Sequence[Any]) -> None:
    """A refused applied mark: the state lost what the batch was admitted on (StateLostError), or a key
    of another type under its name — a defect of the deployment, not of a record. Raised either way,
    so the batch is not acknowledged."""
    for (source, _), reply in zip(marks, replies, strict=True):
        if isinstance(reply, BaseException):
            if str(reply).startswith("STATELOST"):
                raise StateLostError(f"{source}: {reply}") from reply
            raise StateMarkRefusedError(f"applied mark of {source} refused: {reply!r}") from reply


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _bytes(raw: Any) -> bytes:
    return raw if isinstance(raw, bytes) else str(raw).encode()


def _agg(raw: Any) -> Agg | None:
    return None if raw is None else Agg.decode(_text(raw))


def _entries_or_error(reply: Any) -> dict[str, Agg] | BaseException:
    if isinstance(reply, BaseException):
        return reply
    try:
        return decode_entries(reply)
    except Exception as exc:  # a roll-up hash that does not decode: the caller charges its period
        return exc


def _collect(
    plan: list[tuple[str, str, Any]], replies: list[Any], into: dict[str, EntityReads], now_ms: int
) -> dict[str, BaseException]:
    """Sort a read's replies into each entity's reads; the entities whose replies were errors."""
    failed: dict[str, BaseException] = {}
    for (entity, kind, arg), reply in zip(plan, replies, strict=True):
        if kind == "ledger":  # an unreadable ledger vouches for nothing (the marks still guard)
            for name, raw in zip(arg, [] if isinstance(reply, BaseException) else reply, strict=False):
                into.setdefault(name, EntityReads()).vouched = ledger.decode(raw, now_ms)
            continue
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


def _commit_args(c: Commit) -> list[str | int]:
    removed = entity_hash.removed_fields(c.state)
    fields = entity_hash.changed_fields(c.state)
    seen = entity_hash.seen_updates(c.state)
    periods = entity_hash.period_updates(c.state, c.indicator)
    retention = c.state.retention_ms
    args: list[str | int] = [
        entity_hash.offset_field(c.source),
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
