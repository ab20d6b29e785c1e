"""A state reset is never silent: before a stateful stage applies a batch, the state must hold every
record of each partition before the batch's first offset.

Every commit raises the partition's *applied mark* (the highest offset whose record the state holds) in
the same round trip, after the entities' writes. The consumer group's position is the first offset of
the next batch; so when the mark is behind it — or missing while the group has read past the start of
the partition — records were acknowledged whose effects Redis no longer holds: a Redis without
persistence restarted, a flush, a failover to a stale replica, an append-only file that lost its tail.

Applying on would aggregate from zero as if nothing happened. Instead the stage waits, the batch
unacknowledged: ``/readyz`` and ``/health`` name ``state_lost``, ``stream_app_state_lost`` is 1 (alert
``StreamAppStateLost``), and one error line says what to do — ``stream-app state rebuild``, which
replays the log into the state and raises the marks; the stage then goes on by itself.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Protocol

from stream_app.domain.clock import now_ms
from stream_app.logs import get_logger
from stream_app.ops import metrics
from stream_app.ops.retry import retry_until_done, waiting
from stream_app.settings import Settings
from stream_app.state.store import Mark, StateLayer, StateLostError

log = get_logger(__name__)

Partition = tuple[str, int]  # (topic, partition)
EarliestOffsets = Callable[[Sequence[Partition]], Awaitable[Mapping[Partition, int]]]
REBUILD_HINT = "run `stream-app state rebuild` (docs/runbook.md#streamappstatelost)"


def source_of(partition: Partition) -> str:
    """How a partition is named in the state (its entities' offset fields and its applied mark)."""
    return f"{partition[0]}:{partition[1]}"


def new_epoch(how: str) -> str:
    """An epoch: a fresh id, when and how the state began."""
    return f"{uuid.uuid4().hex} {now_ms()} {how}"


class PartitionMovedError(RuntimeError):
    """Another worker applied records of this batch's partitions since the batch was admitted: this
    worker was paused past its session timeout and lost them (a zombie). Its batch must publish
    nothing and stay unacknowledged; the new owner has it."""


class StateGuard:
    """Admits a batch once the state holds everything before it (see the module's docstring)."""

    def __init__(
        self, store: StateLayer, settings: Settings, earliest: EarliestOffsets, *, stage: str
    ) -> None:
        self.store = store
        self.settings = settings
        self.earliest = earliest
        self.stage = stage
        self._admitted: dict[str, int | None] = {}  # the marks the current batch was admitted on

    async def fence(self) -> None:
        """Before a batch publishes: raise :class:`PartitionMovedError` when a mark it was admitted on
        moved meanwhile. Only this worker's batch of these partitions writes their marks between its
        admission and its commit, so a mark that moved means another owner: the offset-in-commit
        rule already refuses a zombie's state writes; this keeps its outputs (a stale consolidated
        value published after the new owner's) off the topics too. What is left is the time between
        this read and the publish."""
        if not self._admitted:
            return
        sources = sorted(self._admitted)
        check = await self.store.checkpoint(sources)
        moved = {
            s: (self._admitted[s], check.applied[s]) for s in sources if check.applied[s] != self._admitted[s]
        }
        if moved:
            raise PartitionMovedError(f"applied marks moved since the batch was admitted: {moved}")

    async def admit(self, firsts: Mapping[Partition, int]) -> dict[str, int | None]:
        """Return once the state holds every record before ``firsts`` (the batch's first offset per
        partition); until then wait, not ready, and say so. Returns the floors the batch's applied
        marks must still reach when it commits (None: a partition read from the start of its log)."""
        problem, floors = await self._judge(firsts)
        if problem is None:
            return floors
        gauge = metrics.STATE_LOST.labels(self.stage)
        with waiting("state_lost") as mark:
            mark()
            gauge.set(1)
            log.error("state_lost", stage=self.stage, problem=problem, action=REBUILD_HINT)
            try:
                while problem is not None:
                    await asyncio.sleep(self.settings.retry_max_s)
                    problem, floors = await self._judge(firsts)
            finally:
                gauge.set(0)
        log.info("state_sound", stage=self.stage)
        return floors

    async def run(
        self, firsts: Mapping[Partition, int], apply: Callable[[dict[str, int | None]], Awaitable[None]]
    ) -> None:
        """Admit the batch, then ``apply`` it with the floors; when the state is lost while it runs
        (its marks refused), wait on the state again and apply it again once it is sound — what the
        batch already wrote is skipped then as applied, or cleared by the rebuild."""
        while True:
            floors = await self.admit(firsts)
            try:
                await apply(floors)
            except StateLostError as exc:
                log.exception("state_lost_in_flight", stage=self.stage, problem=str(exc), action=REBUILD_HINT)
                continue
            return

    async def problem(self, firsts: Mapping[Partition, int]) -> str | None:
        """Why the state cannot take this batch; None when it can."""
        return (await self._judge(firsts))[0]

    async def _judge(self, firsts: Mapping[Partition, int]) -> tuple[str | None, dict[str, int | None]]:
        """(why the state cannot take the batch or None, the marks' floors). A state never begun, on a
        log read from its start, gets its epoch here."""
        partitions = sorted(firsts)
        check = await self.store.checkpoint([source_of(p) for p in partitions])
        if check.rebuilding:
            return "a `stream-app state rebuild` is running (or stopped half-way: run it again)", {}
        unmarked = [p for p in partitions if check.applied[source_of(p)] is None]
        earliest = await self._earliest(unmarked) if unmarked else {}
        floors: dict[str, int | None] = {}
        for partition in partitions:
            source = source_of(partition)
            mark, first = check.applied[source], firsts[partition]
            if mark is None:
                if first > earliest.get(partition, 0):
                    return (
                        f"{source}: the group is at offset {first}, past the start of the log "
                        f"({earliest.get(partition, 0)}), but the state holds none of it"
                        + ("" if check.epoch else " (no state epoch: Redis lost or never had this state)")
                    ), {}
                floors[source] = None
            elif first > mark + 1:
                return (
                    f"{source}: the state holds offsets up to {mark}, the group is at {first}: the "
                    "records in between were acknowledged, their effects are gone"
                ), {}
            else:
                floors[source] = first - 1
        self._admitted = {source_of(p): check.applied[source_of(p)] for p in partitions}
        if check.epoch is None:
            if any(mark is not None for mark in check.applied.values()):
                return "applied marks without a state epoch: the state is not the one they were raised on", {}
            epoch = await self.store.begin_epoch(new_epoch(f"worker:{self.stage}"))
            log.info("state_epoch_begun", stage=self.stage, epoch=epoch)
        return None, floors

    async def _earliest(self, partitions: Sequence[Partition]) -> Mapping[Partition, int]:
        async def ask() -> Mapping[Partition, int]:
            return await self.earliest(partitions)

        return await retry_until_done("kafka_offsets", ask, self.settings)


def marks_of(lasts: Mapping[str, int], floors: Mapping[str, int | None] | None) -> dict[str, Mark]:
    """The applied marks a batch commits: each partition's last offset, with the floor the guard
    admitted it on (none given: the start of the log, as in a replay's own bookkeeping)."""
    return {source: (offset, (floors or {}).get(source)) for source, offset in lasts.items()}


class Positioned(Protocol):
    """Where a message was read (what Faust's and confluent-kafka's messages both say)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


def firsts_of(messages: Iterable[Positioned]) -> dict[Partition, int]:
    """The first offset of each partition among a batch's messages."""
    out: dict[Partition, int] = {}
    for m in messages:
        key = (m.topic, m.partition)
        out[key] = min(out.get(key, m.offset), m.offset)
    return out


def lasts_of(messages: Iterable[Positioned]) -> dict[str, int]:
    """The last offset of each partition among a batch's messages, by source name (the applied marks)."""
    out: dict[str, int] = {}
    for m in messages:
        source = source_of((m.topic, m.partition))
        out[source] = max(out.get(source, -1), m.offset)
    return out
