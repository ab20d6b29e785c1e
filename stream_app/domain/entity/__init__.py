"""The stateful step for one entity (indicator at a region or station): pure, no I/O.

Given the entity's state as read from Redis and one input record of its partition — an observation,
a clock tick, or a directive from the center — compute the new state and the records to publish. The
agent reads the states of a whole batch, applies records in order, publishes, then commits the states
with their applied offsets atomically (``lua/commit_entity.lua``).

What an entity keeps (see docs/domain.md, "Redis layout"):

- hourly and daily aggregates per series (the rolling 24 h, 7 d and 30 d windows, and
  the history the alert rules look at), and the reporting periods its values fall in (its own
  frequency and every longer one: month, quarter, half-year, year, by the indicator's calendar) in a
  separate ``periods`` hash, read per batch for the periods the batch touches only;
- every observation applied (``seen``: id → revision, event time, value, quality, series) for the
  retention, so a duplicate is recognised and a correction (a higher revision) *retracts* the old
  value from every aggregate it counted in before adding the new one;
- the periods still open, closed by time (a tick or any record after the deadline), which
  publishes their final values; a value for a closed period still updates it and is counted late;
- alert rules' state and what the center did about each alert.

A step that needs data not loaded (a period or a range of past observations, known only once the
state is read) records it in ``EntityState.missing``; the agent loads it and runs the batch again
from the states as read, so the step stays pure and the common path reads Redis once.

The package by meaning: ``state`` (what an entity keeps), ``identity`` (entity and alert keys),
``step`` (what every step shares), ``observe`` (an observation), ``tick`` (a clock tick),
``directive`` (a directive of the center), ``records`` (the alert records published). How the state
is stored in Redis is the state layer's (``stream_app/state/entity_hash.py``). New code imports from
the submodules; the names below are re-exported for the modules that import them from here.
"""

from __future__ import annotations

from stream_app.domain.entity.directive import (
    DirectiveRefusal,
    DirectiveRefusedError,
    direct,
    responsible_reporter,
    stale_occurrence,
)
from stream_app.domain.entity.identity import (
    EntityKey,
    alert_id,
    alert_key,
    checked_entity,
    entity_of_alert_key,
)
from stream_app.domain.entity.observe import apply, needed_periods
from stream_app.domain.entity.records import alert_record
from stream_app.domain.entity.state import (
    OCCURRENCE_CHANGES_KEPT,
    AlertMeta,
    EntityState,
    HourRange,
    Kind,
    LazyHistory,
    Part,
    Seen,
    SeriesDay,
    SeriesHour,
    SeriesPeriod,
    retention_start_ms,
)
from stream_app.domain.entity.step import Context, Outcome, StepResult, Touched, already_applied
from stream_app.domain.entity.tick import close_due, tick

__all__ = [
    "OCCURRENCE_CHANGES_KEPT",
    "AlertMeta",
    "Context",
    "DirectiveRefusal",
    "DirectiveRefusedError",
    "EntityKey",
    "EntityState",
    "HourRange",
    "Kind",
    "LazyHistory",
    "Outcome",
    "Part",
    "Seen",
    "SeriesDay",
    "SeriesHour",
    "SeriesPeriod",
    "StepResult",
    "Touched",
    "alert_id",
    "alert_key",
    "alert_record",
    "already_applied",
    "apply",
    "checked_entity",
    "close_due",
    "direct",
    "entity_of_alert_key",
    "needed_periods",
    "responsible_reporter",
    "retention_start_ms",
    "stale_occurrence",
    "tick",
]
