"""What every step of an entity shares: its context, what it did with a record, what a batch touched."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from stream_app.domain.alerting import RuleBook
from stream_app.domain.catalogue import Catalogue
from stream_app.domain.entity.state import EntityState, SeriesPeriod
from stream_app.domain.records import AlertRecord


class Outcome(StrEnum):
    """What a step did with one record."""

    APPLIED = "applied"
    CORRECTED = "corrected"  # applied, retracting the earlier revision's value
    PENDING = "pending"  # data to load first (see ``EntityState.missing``): run again after reading
    ALREADY_APPLIED = "already_applied"  # at or before the entity's applied offset: a redelivery
    DUPLICATE = "duplicate"  # this revision of this observation was applied before
    STALE = "stale"  # an earlier revision than one already applied
    BEYOND_RETENTION = "beyond_retention"  # older than the entity's retention: cannot be judged


_SKIPPED = frozenset({Outcome.ALREADY_APPLIED, Outcome.DUPLICATE, Outcome.STALE, Outcome.BEYOND_RETENTION})


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one record did (its :class:`Outcome`), whether it arrived after its reporting period
    closed, and the alerts to publish."""

    outcome: Outcome
    late: bool = False  # its reporting period had already closed when it arrived
    alerts: tuple[AlertRecord, ...] = ()
    addressee: str = ""  # a directive applied: the reporter it is forwarded to (``responsible_reporter``)

    @property
    def skipped(self) -> bool:
        """Nothing applied: already applied, a duplicate, or refused."""
        return self.outcome in _SKIPPED

    @property
    def refused(self) -> bool:
        """Refused for good (the record is dead-lettered with the outcome as its reason)."""
        return self.outcome in (Outcome.STALE, Outcome.BEYOND_RETENTION)

    @property
    def alert(self) -> AlertRecord | None:
        """The first alert (most observations cause at most one)."""
        return self.alerts[0] if self.alerts else None


@dataclass(frozen=True, slots=True)
class Context:
    """What every step needs besides the state and the record."""

    catalogue: Catalogue
    rulebook: RuleBook
    now_ms: int
    # > 0 for a bulk record (history): a closed period it changes is held open this long and
    # published when it closes again, once for all the bulk records that changed it meanwhile
    hold_ms: int = 0
    # the record came through a bulk topic (history, a backfill): it never refreshes liveness
    bulk: bool = False


@dataclass(slots=True)
class Touched:
    """What a batch changed in one entity, for the records published once per batch (debounced)."""

    periods: set[SeriesPeriod] = field(default_factory=set)
    closed: set[SeriesPeriod] = field(default_factory=set)
    late: set[SeriesPeriod] = field(default_factory=set)
    revision: int = 0
    reporters: set[str] = field(default_factory=set)  # who sent the batch's values


def already_applied(state: EntityState, source: str, offset: int) -> bool:
    """Whether the record at ``offset`` of ``source`` is already in ``state`` (a redelivery).

    Otherwise the offset is recorded: it is part of what the commit will write.
    """
    applied = state.offsets.get(source)
    if applied is not None and offset <= applied:
        return True
    state.offsets[source] = offset
    return False
