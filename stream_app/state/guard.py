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
from stream_app.ops.retry import waiting
from stream_app.settings import Settings
from stream_app.state.store import StateLayer

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


class StateGuard:
    """Admits a batch once the state holds everything before it (see the module's docstring)."""

    def __init__(
        self, store: StateLayer, settings: Settings, earliest: EarliestOffsets, *, stage: str
    ) -> None:
        self.store = store
        self.settings = settings
        self.earliest = earliest
        self.stage = stage

    async def admit(self, firsts: Mapping[Partition, int]) -> None:
        """Return once the state holds every record before ``firsts`` (the batch's first offset per
        partition); until then wait, not ready, and say so."""
        problem = await self.problem(firsts)
        if problem is None:
            return
        gauge = metrics.STATE_LOST.labels(self.stage)
        with waiting("state_lost") as mark:
            mark()
            gauge.set(1)
            log.error("state_lost", stage=self.stage, problem=problem, action=REBUILD_HINT)
            while problem is not None:
                await asyncio.sleep(self.settings.retry_max_s)
                problem = await self.problem(firsts)
        gauge.set(0)
        log.info("state_sound", stage=self.stage)

    async def problem(self, firsts: Mapping[Partition, int]) -> str | None:
        """Why the state cannot take this batch; None when it can. A state never begun on a log read
        from its start gets its epoch here."""
        partitions = sorted(firsts)
        check = await self.store.checkpoint([source_of(p) for p in partitions])
        unmarked = [p for p in partitions if check.applied[source_of(p)] is None]
        earliest = await self.earliest(unmarked) if unmarked else {}
        for partition in partitions:
            mark, first = check.applied[source_of(partition)], firsts[partition]
            if mark is None and first > earliest.get(partition, 0):
                return (
                    f"{source_of(partition)}: the group is at offset {first}, past the start of the log "
                    f"({earliest.get(partition, 0)}), but the state holds none of it"
                    + ("" if check.epoch else " (no state epoch: Redis lost or never had this state)")
                )
            if mark is not None and first > mark + 1:
                return (
                    f"{source_of(partition)}: the state holds offsets up to {mark}, the group is at "
                    f"{first}: the records in between were acknowledged, their effects are gone"
                )
        if check.epoch is None:
            epoch = await self.store.begin_epoch(new_epoch(f"worker:{self.stage}"))
            log.info("state_epoch_begun", stage=self.stage, epoch=epoch)
        return None


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
