"""The state layer's interface: :class:`StateLayer`, what the agents and the query API ask of the
state, and the values it speaks in (commits and their reads, index writes, roll-up contributions,
checkpoints and applied marks). Implemented on Redis by :class:`stream_app.state.store.StateStore`
and in memory by :class:`stream_app.state.memory.MemoryStateStore`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

from stream_app.domain.aggregates import Agg
from stream_app.domain.catalogue import Indicator
from stream_app.domain.entity.state import EntityState, HourRange, SeriesPeriod
from stream_app.domain.rollup import PeriodSources
from stream_app.state import entity_hash
from stream_app.state.keys import Keys

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
    state_hash: entity_hash.HashWrite | None = None  # what it does to the state hash, when it writes


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
    error), per write whether the script wrote it (False: the hash held its sequence or a later one,
    or the write was refused), and per period asked, what its hash holds after the writes (or the
    error reading it)."""

    refused: dict[int, BaseException]
    written: list[bool]
    reads: list[PeriodSources | BaseException]


@dataclass(slots=True)
class EntityReads:
    """What was read of one entity, raw: a batch run again after more reads starts from these."""

    state: dict[bytes, bytes] = field(default_factory=dict)
    seen: dict[str, bytes | None] = field(default_factory=dict)
    periods: dict[SeriesPeriod, bytes | None] = field(default_factory=dict)
    ranges: list[HourRange] = field(default_factory=list)
    vouched: int | None = None  # the offset the partition's ledger says the state holds (asked or not)
    length: int | None = None  # the state hash's number of fields, when asked (ReadRequest.length)

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
    """What to read of one entity: its state hash (once), observation ids, periods, ranges; or, for a
    hash the worker holds, only its number of fields (``length``: a hash gone from Redis on its own,
    expired or deleted, is told apart from the one held)."""

    state: bool = False
    length: bool = False
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
    ) -> tuple[set[str], dict[str, BaseException]]:
        """Write every commit atomically per entity (skipped if its offset is already applied), the
        index writes, and then the partitions' applied marks (``applied``: source -> offset);
        the entities written, and the entities refused for good."""
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
        ``periods`` (the caller names last year's too, and leaves out those it holds), in one round
        trip."""
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
