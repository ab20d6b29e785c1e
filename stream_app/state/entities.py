"""The stateful step on Redis: an entity's reads (and the ledger's word on them), its atomic commit
with the input offset it includes (the commit script of ``lua/``), the index writes sent with it,
the periods-due registry, and the audit of a partition's ledger."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from stream_app.domain.model import period_field
from stream_app.logs import get_logger
from stream_app.state import entity_hash, ledger
from stream_app.state.keys import STATE_TTL_S, Keys
from stream_app.state.layer import (
    Commit,
    DueAt,
    EntityReads,
    IndexWrite,
    Mark,
    PreparedCommit,
    ReadRequest,
    ReporterSent,
)
from stream_app.state.marks import AppliedMarks, _raise_mark_refusal
from stream_app.state.redis_base import _barrier, _text, raise_retried

log = get_logger(__name__)


class EntityStore(AppliedMarks):
    """Reads and commits entity states, with their index writes and applied marks."""

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
                    if request.length:
                        pipe.hlen(keys.entity(entity))
                        plan.append((entity, "length", None))
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
        return prepared_commit(self.keys, commit)

    async def commit(
        self,
        commits: Sequence[PreparedCommit],
        indexes: Sequence[IndexWrite] = (),
        applied: Mapping[str, Mark] | None = None,
    ) -> tuple[set[str], dict[str, BaseException]]:
        """Write every commit atomically per entity, in one round trip.

        ``indexes`` are sent first in the same round trip; an error about one of them is logged, not
        fatal: they are derived again by the next batch of their entity. Returns the entities written
        (the others of ``commits``: their states held this offset already, or Redis refused them),
        and the entities whose commit Redis refused for good (an error about the data, not the
        connection: those are retried).
        """
        marks = sorted((applied or {}).items())
        if not commits and not indexes and not marks:
            return set(), {}
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
        written: set[str] = set()
        end = len(before) + len(commits)
        for c, reply in zip(commits, results[len(before) : end], strict=True):
            if isinstance(reply, BaseException):
                failed[c.entity] = reply
            elif int(reply) == 1:
                written.add(c.entity)
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
        elif kind == "length":
            reads.length = int(reply)
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


def prepared_commit(keys: Keys, c: Commit) -> PreparedCommit:
    """One entity's commit as the commit script's keys and arguments, with what it does to the state
    hash (both stores' ``prepare``)."""
    write = entity_hash.hash_write(c.state, c.source, c.offset)
    return PreparedCommit(c.entity, keys.entity_all(c.entity), _commit_args(c, write), write)


def _commit_args(c: Commit, write: entity_hash.HashWrite) -> list[str | int]:
    removed, fields = write.removed, write.fields
    seen = entity_hash.seen_updates(c.state)
    periods = entity_hash.period_updates(c.state, c.indicator)
    retention = c.state.retention_ms
    args: list[str | int] = [
        write.offset_field,
        write.offset,
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
