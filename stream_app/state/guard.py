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
import contextlib
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Protocol

from stream_app.domain.clock import now_ms
from stream_app.logs import get_logger
from stream_app.ops import metrics
from stream_app.ops.retry import retry_until_done, waiting
from stream_app.settings import Settings
from stream_app.state.owned import OwnedState
from stream_app.state.store import Mark, StateLayer, StateLostError

log = get_logger(__name__)

Partition = tuple[str, int]  # (topic, partition)
EarliestOffsets = Callable[[Sequence[Partition]], Awaitable[Mapping[Partition, int]]]
REBUILD_HINT = "run `stream-app state rebuild` (docs/runbook.md#streamappstatelost)"


def source_of(partition: Partition) -> str:
    """How a partition is named in the state (its entities' offset fields and its applied mark)."""
    return f"{partition[0]}:{partition[1]}"


def loss(source: str, mark: int | None, position: int | None, low: int) -> str | None:
    """The one rule for a partition: why a state whose applied mark is ``mark`` cannot be the one the
    consumer group's ``position`` (its next offset; None: never committed) was reached on, given the log
    starts at ``low``; None when it can be."""
    at = low if position is None else position
    if mark is None and at > low:
        return (
            f"{source}: the group is at offset {at}, past the start of the log ({low}), but the state "
            "holds none of it"
        )
    if mark is not None and at > mark + 1:
        return (
            f"{source}: the state holds offsets up to {mark}, the group is at {at}: the records in "
            "between were acknowledged, their effects are gone"
        )
    return None


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
        self,
        store: StateLayer,
        settings: Settings,
        earliest: EarliestOffsets,
        *,
        stage: str,
        owned: OwnedState[object] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.earliest = earliest
        self.stage = stage
        self.owned = owned  # what the stage keeps of what it wrote: checked against the marks admitted on
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
            if self.owned is not None:
                for source in moved:
                    self.owned.drop_source(source, "fenced")
            raise PartitionMovedError(f"applied marks moved since the batch was admitted: {moved}")

    async def admit(self, firsts: Mapping[Partition, int]) -> dict[str, int | None]:
        """Return once the state holds every record before ``firsts`` (the batch's first offset per
        partition); until then wait, not ready, and say so. Returns the floors the batch's applied
        marks must still reach when it commits (None: a partition read from the start of its log)."""
        problem, floors = await self._judge(firsts)
        if problem is None:
            return floors
        if self.owned is not None:  # whatever the state comes back as, it is read again
            self.owned.clear("lost")
        gauge = _LostGauge(self.stage)
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
        """Admit the batch, then ``apply`` it with the floors. When the state turns out lost while it
        runs — its marks refused, or an entity holding less than its partition's ledger vouches for
        (:mod:`stream_app.state.ledger`) — nothing of the batch is acknowledged: the stage waits, not
        ready (``state_lost``), and applies the batch again once the state is sound (a rebuild)."""
        gauge = _LostGauge(self.stage)
        said: str | None = None
        with waiting("state_lost") as mark:
            try:
                while True:
                    floors = await self.admit(firsts)
                    try:
                        await apply(floors)
                    except StateLostError as exc:
                        if self.owned is not None:
                            self.owned.clear("lost")
                        mark()
                        gauge.set(1)
                        if str(exc) != said:  # one line per distinct loss, not one per retry
                            said = str(exc)
                            log.error(  # noqa: TRY400 - the loss is the message, not a traceback
                                "state_lost", stage=self.stage, problem=said, action=REBUILD_HINT
                            )
                        await asyncio.sleep(self.settings.retry_max_s)
                        continue
                    return
            finally:
                if said is not None:
                    gauge.set(0)
                    log.info("state_sound", stage=self.stage)

    async def problem(self, firsts: Mapping[Partition, int]) -> str | None:
        """Why the state cannot take this batch; None when it can."""
        return (await self._judge(firsts))[0]

    async def _judge(self, firsts: Mapping[Partition, int]) -> tuple[str | None, dict[str, int | None]]:
        """(why the state cannot take the batch or None, the marks' floors). A state never begun, on a
        log read from its start, gets its epoch here."""
        partitions = sorted(firsts)
        found = audit_finding()
        if found is not None:
            return found, {}
        check = await self.store.checkpoint([source_of(p) for p in partitions])
        if check.rebuilding:
            return "a `stream-app state rebuild` is running (or stopped half-way: run it again)", {}
        unmarked = [p for p in partitions if check.applied[source_of(p)] is None]
        earliest = await self._earliest(unmarked) if unmarked else {}
        floors: dict[str, int | None] = {}
        for partition in partitions:
            source = source_of(partition)
            mark, first = check.applied[source], firsts[partition]
            problem = loss(source, mark, first, earliest.get(partition, 0))
            if problem is not None:
                if mark is None and not check.epoch:
                    problem += " (no state epoch: Redis lost or never had this state)"
                return problem, {}
            floors[source] = None if mark is None else first - 1
        self._admitted = {source_of(p): check.applied[source_of(p)] for p in partitions}
        epoch = check.epoch
        if epoch is None:
            if any(mark is not None for mark in check.applied.values()):
                return "applied marks without a state epoch: the state is not the one they were raised on", {}
            epoch = await self.store.begin_epoch(new_epoch(f"worker:{self.stage}"))
            log.info("state_epoch_begun", stage=self.stage, epoch=epoch)
        if self.owned is not None:  # under the epoch the batch commits in (the one just begun, say)
            self.owned.admit(epoch, self._admitted)
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


# ------------------------------------------------------------------------------------------ the audit

_holding: Counter[str] = Counter()  # stage -> holders of its state_lost gauge (guards and the audit)


class _LostGauge:
    """``stream_app_state_lost{stage}`` held by several (each stage's guard, the audit): 1 while any
    holds it."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.held = False

    def set(self, value: int) -> None:
        if bool(value) == self.held:
            return
        self.held = bool(value)
        _holding[self.stage] += 1 if value else -1
        metrics.STATE_LOST.labels(self.stage).set(1 if _holding[self.stage] > 0 else 0)


CommittedOffsets = Callable[[Sequence[Partition]], Awaitable[Mapping[Partition, int | None]]]
_finding: dict[str, str] = {}  # "audit" -> what the last audit found wrong; empty while sound
STALE_AFTER_SKIPS = 4  # audits in a row that could not run before the last finding is dropped


def audit_finding() -> str | None:
    """What the state audit last found wrong in this worker's state (None: sound, or not audited)."""
    return _finding.get("audit")


class StateAudit:
    """Finds a lost state without waiting for a record to meet it: every ``STREAM_APP_STATE_AUDIT_S``
    a worker compares, for the stateful partitions it owns, the applied marks with what Kafka says the
    group committed (read fresh from the group's coordinator), and samples each partition's ledger
    against the entities it vouches for (:mod:`stream_app.state.ledger`). A loss found makes the worker
    not ready (``state_lost``), sets ``stream_app_state_lost{stage}``, logs one error, and holds every
    stateful batch off (:meth:`StateGuard.admit`) until an audit finds the state sound again.

    Its reads wait for nothing: an audit that cannot reach Redis or Kafka says so in a log line and
    tries again at the next interval (the stages wait out the outage themselves)."""

    def __init__(
        self,
        store: StateLayer,
        settings: Settings,
        *,
        assigned: Callable[[], Sequence[Partition]],
        committed: CommittedOffsets,
        earliest: EarliestOffsets,
        stage_of: Callable[[str], str],
        sample: int = 64,
    ) -> None:
        self.store = store
        self.settings = settings
        self.assigned = assigned
        self.committed = committed
        self.earliest = earliest
        self.stage_of = stage_of  # the stage reading a topic (the gauge's label)
        self.sample = sample
        self._wait = contextlib.ExitStack()
        self._stages: dict[str, _LostGauge] = {}
        self._skipped = 0  # audits in a row that could not run

    async def check(self) -> tuple[str, str] | None:
        """(the stage, what is wrong) of the first loss found in the partitions owned now; None: sound."""
        partitions = sorted(self.assigned())
        if not partitions:
            return None
        # the group's offsets first: a commit always follows its marks, so a sound state never reads
        # behind an offset read before it
        committed = await self.committed(partitions)
        check = await self.store.checkpoint([source_of(p) for p in partitions])
        unmarked = [p for p in partitions if check.applied[source_of(p)] is None and committed.get(p)]
        earliest = await self.earliest(unmarked) if unmarked else {}
        for p in partitions:
            source = source_of(p)
            problem = loss(source, check.applied[source], committed.get(p), earliest.get(p, 0))
            if problem is not None:
                return self.stage_of(p[0]), problem
        for p in partitions:
            problem = await self.store.ledger_loss(source_of(p), self.sample)
            if problem is not None:
                return self.stage_of(p[0]), problem
        if any(self.stage_of(topic) == "rollup" for topic, _ in partitions):
            problem = await self.store.rollup_ledger_loss(self.sample)
            if problem is not None:
                return "rollup", problem
        return None

    async def run_once(self) -> None:
        """One audit; never raises (it runs on a timer: an exception would stop the worker)."""
        try:
            found = await self.check()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis or Kafka away: the stages wait it out; audit next time
            self._skipped += 1
            log.warning("state_audit_skipped", error=repr(exc)[:300], in_a_row=self._skipped)
            if self._skipped >= STALE_AFTER_SKIPS:  # a finding nobody can confirm any more goes; the
                self.clear()  # stages' own checks still refuse a lost state when a batch meets it
            return
        self._skipped = 0
        if found is None:
            self.clear()
            return
        stage, problem = found
        if _finding.get("audit") != problem:
            log.error("state_lost", stage=stage, problem=problem, found_by="audit", action=REBUILD_HINT)
        _finding["audit"] = problem
        if not self._stages:
            self._wait.enter_context(waiting("state_lost"))()
        if stage not in self._stages:
            self._stages[stage] = _LostGauge(stage)
            self._stages[stage].set(1)

    def clear(self) -> None:
        if _finding.pop("audit", None) is not None:
            log.info("state_sound", found_by="audit")
        for gauge in self._stages.values():
            gauge.set(0)
        self._stages.clear()
        self._wait.close()
