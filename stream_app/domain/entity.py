"""The stateful step for one entity (indicator at a region or station): pure, no I/O.

Given the entity's state as read from Redis and one input record of its partition — an observation,
a clock tick, or a directive from the center — compute the new state and the records to publish. The
agent reads the states of a whole batch, applies records in order, publishes, then commits the states
with their applied offsets atomically (``lua/commit_entity.lua``).

What an entity keeps (see docs/domain.md, "Redis layout"):

- hourly and daily aggregates per series (``h:``, ``d:``: the rolling 24 h, 7 d and 30 d windows, and
  the history the alert rules look at), and the reporting periods its values fall in (its own
  frequency and every longer one: month, quarter, half-year, year, by the indicator's calendar) in a
  separate ``periods`` hash, read per batch for the periods the batch touches only;
- every observation applied (``seen``: id → revision, event time, value, quality, series) for the
  retention, so a duplicate is recognised and a correction (a higher revision) *retracts* the old
  value from every aggregate it counted in before adding the new one;
- the periods still open (``po:``), closed by time (a tick or any record after the deadline), which
  publishes their final values; a value for a closed period still updates it and is counted late;
- alert rules' state (``r:``) and what the center did about each alert (``m:``).

A step that needs data not loaded (a period or a range of past observations, known only once the
state is read) records it in ``EntityState.missing``; the agent loads it and runs the batch again
from the states as read, so the step stays pure and the common path reads Redis once.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any

from stream_app.domain.aggregates import (
    DAY_RETENTION_DAYS,
    RETENTION_HOURS,
    Agg,
    close_time_ms,
    exact,
    hour_of,
    period_by_label,
    periods_at,
    periods_of,
    same_period_last_year,
    slice_of,
)
from stream_app.domain.alerting import (
    BucketHistory,
    Rule,
    RuleBook,
    RuleState,
    Verdict,
    on_observation,
    on_tick,
)
from stream_app.domain.alerting.transitions import Transition
from stream_app.domain.calendar import ReportingPeriod, period_of
from stream_app.domain.catalogue import Catalogue, Indicator
from stream_app.domain.clock import HOUR_MS, as_ms, local_date, local_midnight_ms
from stream_app.domain.model import CO_REPORTER_BREAKDOWN, Observation
from stream_app.domain.reasons import Reason
from stream_app.domain.records import AlertRecord

_HOUR_PREFIX = "h:"
_DAY_PREFIX = "d:"
_OPEN_PREFIX = "po:"
_OFFSET_PREFIX = "off:"
_RULE_PREFIX = "r:"
_META_PREFIX = "m:"
_SCALARS = (
    "latest_value",
    "latest_event_time",
    "newest_event_time",
    "last_seen",
    "reporter",
    "latest_period",
    "authority_event_time",
)

SeriesHour = tuple[str, int]  # (series, hour since the epoch)
SeriesDay = tuple[str, int]  # (series, local day ordinal)
SeriesPeriod = tuple[str, str]  # (series, period label)
HourRange = tuple[int, int]  # [first hour, end hour) of event time


def retention_start_ms(indicator: Indicator, newest_event_time: int) -> int:
    """Observations and periods are kept from the start of the previous reporting year (of the
    indicator's calendar) of the entity's newest value: this year and last, so the same period last
    year is always at hand and a correction or a late value within two years is exact."""
    return _retention_start(indicator.calendar, local_date(newest_event_time).toordinal())


@functools.lru_cache(maxsize=4096)
def _retention_start(calendar: str, local_day_ordinal: int) -> int:
    noon = local_midnight_ms(local_day_ordinal) + 12 * HOUR_MS
    this_year = period_of("annual", calendar, noon)
    return period_of("annual", calendar, this_year.start_ms - 1).start_ms


@dataclass(frozen=True, slots=True)
class Seen:
    """An observation as applied: enough to recognise it again and to retract it."""

    revision: int
    event_time: int
    value: float
    quality: str
    series: str
    earlier: tuple[int, ...] = ()  # revisions applied before this one (their redelivery is a duplicate)

    @property
    def hour(self) -> int:
        return hour_of(self.event_time)

    def knows(self, revision: int) -> bool:
        """Whether ``revision`` of this observation was applied (now or before a correction)."""
        return revision == self.revision or revision in self.earlier

    def encode(self) -> str:
        earlier = ".".join(str(r) for r in self.earlier)
        return f"{self.revision},{self.event_time},{self.value!r},{self.quality},{earlier},{self.series}"

    @staticmethod
    def decode(value: bytes | str | None) -> Seen | None:
        """A seen-hash value, or None for an id never applied."""
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else value
        revision, event_time, number, quality, earlier, series = text.split(",", 5)
        before = tuple(int(r) for r in earlier.split(".")) if earlier else ()
        return Seen(int(revision), int(event_time), float(number), quality, series, before)


# How many of an occurrence's latest change ids are kept to recognise a directive about it (besides
# the FIRING that opened it): an operator's screen holds the newest change it received, so a directive
# cites one of the last few; an occurrence that changed more often since is a view out of date.
OCCURRENCE_CHANGES_KEPT = 16


@dataclass(slots=True)
class AlertMeta:
    """What is known about one rule's alert beyond its level: its last change and the center's actions.

    An *occurrence* is one episode of the alert, from its FIRING to the next FIRING (a resolved
    occurrence stays the current one until the alert fires again: a comment on it is still about it).
    ``occurrence`` is the id of the FIRING that opened it, ``opened_at`` when that was processed, and
    ``changes`` the ids of its latest changes (transitions and directives), newest last: a directive
    names the change the center saw by its ``alert_id``, and only these belong to the current
    occurrence. All three are empty in state written before occurrences were recorded."""

    transition: str = ""
    alert_id: str = ""
    acknowledged_by: str = ""
    acknowledged_at: int = 0
    assigned_to: str = ""
    comment: str = ""
    directive_id: str = ""
    occurrence: str = ""
    opened_at: int = 0
    changes: tuple[str, ...] = ()

    def to_fields(self) -> dict[str, str]:
        return {
            "t": self.transition,
            "id": self.alert_id,
            "ab": self.acknowledged_by,
            "aa": str(self.acknowledged_at),
            "as": self.assigned_to,
            "c": self.comment,
            "d": self.directive_id,
            "o": self.occurrence,
            "oa": str(self.opened_at),
            "ch": ",".join(self.changes),
        }

    @staticmethod
    def from_fields(fields: dict[str, str]) -> AlertMeta:
        changes = fields.get("ch", "")
        return AlertMeta(
            transition=fields.get("t", ""),
            alert_id=fields.get("id", ""),
            acknowledged_by=fields.get("ab", ""),
            acknowledged_at=int(fields.get("aa") or 0),
            assigned_to=fields.get("as", ""),
            comment=fields.get("c", ""),
            directive_id=fields.get("d", ""),
            occurrence=fields.get("o", ""),
            opened_at=int(fields.get("oa") or 0),
            changes=tuple(changes.split(",")) if changes else (),
        )

    def record_change(self, change_id: str, *, opens: bool, at_ms: int) -> None:
        """Count a published change in the current occurrence; a FIRING (``opens``) starts a new one."""
        if opens:
            self.occurrence, self.opened_at, self.changes = change_id, at_ms, (change_id,)
        elif change_id not in self.changes:
            self.changes = (*self.changes, change_id)[-OCCURRENCE_CHANGES_KEPT:]

    def is_of_current_occurrence(self, change_id: str) -> bool:
        """Whether ``change_id`` is a change of the current occurrence (as far as the ids kept tell)."""
        if not change_id:
            return False
        return change_id in (self.occurrence, self.alert_id) or change_id in self.changes


@dataclass(slots=True)
class EntityState:
    """What Redis holds for one entity, decoded; mutable within one batch."""

    latest_value: float = 0.0  # of the entity's own series (records without breakdowns)
    latest_event_time: int = -1
    newest_event_time: int = -1  # of any series: retention counts back from it
    # processing time of the live record that last moved ``authority_event_time``: absence rules
    # count from it
    last_seen: int = -1
    reporter: str = ""  # who sent the authoritative record of ``authority_event_time``: alerts name it
    # event time of the newest authoritative record (any series): only a record at least as new moves
    # ``reporter`` and ``last_seen``, so history from an earlier authority neither takes the feed over
    # nor makes it look alive (see ``_follow_authority``)
    authority_event_time: int = -1
    latest_period: str = ""
    offsets: dict[str, int] = field(default_factory=dict)
    hours: dict[SeriesHour, Agg] = field(default_factory=dict)
    days: dict[SeriesDay, Agg] = field(default_factory=dict)
    open_periods: dict[SeriesPeriod, int] = field(default_factory=dict)  # -> when it closes (epoch ms)
    # Periods read from the periods hash (None: loaded, absent) and changed since.
    periods: dict[SeriesPeriod, Agg | None] = field(default_factory=dict)
    changed_periods: set[SeriesPeriod] = field(default_factory=set)
    # Observations read from the seen hash (the batch's ids, and whole ranges when a correction
    # needs them), and those applied since.
    seen: dict[str, Seen] = field(default_factory=dict)
    new_seen: set[str] = field(default_factory=set)
    loaded_ranges: list[HourRange] = field(default_factory=list)
    retention_ms: int | None = None  # observations and periods before this are forgotten at commit
    rules: dict[str, RuleState] = field(default_factory=dict)
    meta: dict[str, AlertMeta] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    # What a step needed but was not loaded: ("period", series, label) or ("range", first, end).
    missing: set[tuple[str, Any, Any]] = field(default_factory=set)
    # True when the state holds everything there is (a state built in memory: tests, a replay):
    # a period or an observation it lacks does not exist, rather than is not loaded.
    complete: bool = False
    # where the last full expiry pass left retention (see ``expire``)
    expired_at: int | None = None
    oldest_day: int = 0

    @property
    def known(self) -> bool:
        """Whether this entity has ever reported (timer rules watch only known feeds)."""
        return self.newest_event_time >= 0 or self.latest_event_time >= 0

    @staticmethod
    def from_hash(raw: dict[bytes, bytes]) -> EntityState:
        """Decode an entity's Redis hash (empty hash: a new entity)."""
        state = EntityState()
        grouped: dict[str, dict[str, dict[str, str]]] = {_RULE_PREFIX: {}, _META_PREFIX: {}}
        for raw_name, raw_value in raw.items():
            name, value = raw_name.decode(), raw_value.decode()
            prefix, _, rest = name.partition(":")
            prefix += ":"
            if prefix == _HOUR_PREFIX:
                series, _, hour = rest.rpartition(":")
                state.hours[(series, int(hour))] = Agg.decode(value)
            elif prefix == _DAY_PREFIX:
                series, _, day = rest.rpartition(":")
                state.days[(series, int(day))] = Agg.decode(value)
            elif prefix == _OPEN_PREFIX:
                series, _, label = rest.rpartition("|")
                state.open_periods[(series, label)] = int(value)
            elif prefix == _OFFSET_PREFIX:
                state.offsets[rest] = int(value)
            elif prefix in grouped:
                rule_id, _, key = rest.rpartition(":")
                grouped[prefix].setdefault(rule_id, {})[key] = value
            elif name in ("latest_event_time", "newest_event_time", "last_seen", "authority_event_time"):
                setattr(state, name, int(value))
            elif name == "latest_value":
                state.latest_value = float(value)
            elif name in ("reporter", "latest_period"):
                setattr(state, name, value)
        state.rules = {rid: RuleState.from_fields(f) for rid, f in grouped[_RULE_PREFIX].items()}
        state.meta = {rid: AlertMeta.from_fields(f) for rid, f in grouped[_META_PREFIX].items()}
        if b"authority_event_time" not in raw:
            # written before it was kept: the entity's own series holds authoritative values only,
            # so its latest is the best known lower bound (-1 when it has none: the next record moves)
            state.authority_event_time = state.latest_event_time
        return state

    def to_fields(self) -> dict[str, str]:
        """The hash fields changed since the state was read (offsets are written by the commit script)."""
        fields = {
            "latest_value": repr(self.latest_value),
            "latest_event_time": str(self.latest_event_time),
            "newest_event_time": str(self.newest_event_time),
            "last_seen": str(self.last_seen),
            "reporter": self.reporter,
            "latest_period": self.latest_period,
            "authority_event_time": str(self.authority_event_time),
        }
        for name in self.changed:
            prefix, _, rest = name.partition(":")
            prefix += ":"
            if prefix == _HOUR_PREFIX:
                series, _, hour = rest.rpartition(":")
                fields[name] = self.hours[(series, int(hour))].encode()
            elif prefix == _DAY_PREFIX:
                series, _, day = rest.rpartition(":")
                fields[name] = self.days[(series, int(day))].encode()
            elif prefix == _OPEN_PREFIX:
                series, _, label = rest.rpartition("|")
                fields[name] = str(self.open_periods[(series, label)])
            elif prefix == _RULE_PREFIX:
                for key, value in self.rules[rest].to_fields().items():
                    fields[f"{_RULE_PREFIX}{rest}:{key}"] = value
            elif prefix == _META_PREFIX:
                for key, value in self.meta[rest].to_fields().items():
                    fields[f"{_META_PREFIX}{rest}:{key}"] = value
        return fields

    def removed_fields(self) -> list[str]:
        """Fields that fell out of retention (or were emptied by a correction) since the state was read."""
        return sorted(self.removed - self.changed)

    # ------------------------------------------------------------------ periods (the periods hash)

    def period_updates(self, indicator: Indicator) -> list[tuple[str, str | None, int]]:
        """(field, encoded aggregate or None to delete, period end in epoch ms) of changed periods."""
        out = []
        for series, label in sorted(self.changed_periods):
            agg = self.periods.get((series, label))
            end = period_by_label(label, indicator.calendar, indicator.deadline_day).end_ms
            out.append((f"{series}|{label}", None if agg is None else agg.encode(), end))
        return out

    def period(self, key: SeriesPeriod) -> Agg | None:
        """A period's aggregate (None: no values yet); records it as missing when not loaded."""
        if key not in self.periods and not self.complete:
            self.missing.add(("period", key[0], key[1]))
        return self.periods.get(key)

    def has_period(self, key: SeriesPeriod) -> bool:
        if key in self.periods or self.complete:
            return True
        self.missing.add(("period", key[0], key[1]))
        return False

    def set_period(self, key: SeriesPeriod, agg: Agg | None) -> None:
        self.periods[key] = agg
        self.changed_periods.add(key)

    # ------------------------------------------------------------------ observations (the seen hash)

    def put_seen(self, seen_key: str, seen: Seen) -> None:
        """Remember an observation (by ``Observation.seen_key``) as applied with this revision and value."""
        self.seen[seen_key] = seen
        self.new_seen.add(seen_key)

    def seen_updates(self) -> list[tuple[str, str, int]]:
        """(observation id, encoded record, hour) of the ids applied since the state was read."""
        return [(o, self.seen[o].encode(), self.seen[o].hour) for o in sorted(self.new_seen)]

    def range_loaded(self, first_hour: int, end_hour: int) -> bool:
        """Whether every observation of ``[first_hour, end_hour)`` is in ``seen``; else recorded missing."""
        if self.complete or any(lo <= first_hour and end_hour <= hi for lo, hi in self.loaded_ranges):
            return True
        self.missing.add(("range", first_hour, end_hour))
        return False

    def values_in(
        self, series: str, first_ms: int, end_ms: int, without: str
    ) -> Iterator[tuple[float, int, str]]:
        """(value, event time, observation id) of the current observations of ``series`` in a time range,
        but one (``without``: its seen key, reporter and observation id)."""
        for seen_key, seen in self.seen.items():
            if seen_key != without and seen.series == series and first_ms <= seen.event_time < end_ms:
                yield seen.value, seen.event_time, seen_key.partition("|")[2]

    # ------------------------------------------------------------------ rules

    def rule_state(self, rule_id: str) -> RuleState:
        """The state of one rule (a new rule starts clear); marked for writing."""
        state = self.rules.get(rule_id)
        if state is None:
            state = self.rules[rule_id] = RuleState()
        self.changed.add(f"{_RULE_PREFIX}{rule_id}")
        return state

    def alert_meta(self, rule_id: str) -> AlertMeta:
        """What is known about one rule's alert; marked for writing."""
        meta = self.meta.get(rule_id)
        if meta is None:
            meta = self.meta[rule_id] = AlertMeta()
        self.changed.add(f"{_META_PREFIX}{rule_id}")
        return meta

    def history(self) -> BucketHistory:
        """What the rules may ask of the entity's own series' past."""
        return BucketHistory(
            {h: a for (s, h), a in self.hours.items() if s == ""},
            {date.fromordinal(d): a.sum for (s, d), a in self.days.items() if s == ""},
        )

    def lazy_history(self) -> LazyHistory:
        """The same, built only if a rule asks (level rules never do)."""
        return LazyHistory(self)

    # ------------------------------------------------------------------ hourly and daily aggregates

    def set_hour(self, key: SeriesHour, agg: Agg | None) -> None:
        self._set(self.hours, key, agg, f"{_HOUR_PREFIX}{key[0]}:{key[1]}")

    def set_day(self, key: SeriesDay, agg: Agg | None) -> None:
        self._set(self.days, key, agg, f"{_DAY_PREFIX}{key[0]}:{key[1]}")

    def open_period(self, key: SeriesPeriod, closes_at: int) -> None:
        self.open_periods[key] = closes_at
        self.changed.add(f"{_OPEN_PREFIX}{key[0]}|{key[1]}")

    def close_period(self, key: SeriesPeriod) -> None:
        del self.open_periods[key]
        self._forget(f"{_OPEN_PREFIX}{key[0]}|{key[1]}")

    def _set(self, table: dict[Any, Agg], key: Any, agg: Agg | None, name: str) -> None:
        if agg is None:
            table.pop(key, None)
            self._forget(name)
        else:
            table[key] = agg
            self.changed.add(name)
            self.removed.discard(name)

    def expire(self, added: tuple[SeriesHour, SeriesDay] | None = None) -> None:
        """Drop hourly aggregates older than 48 h and daily ones older than 32 days (of event time,
        counted back from the newest value).

        ``added``: the hour and day the last step counted in. While the newest hour stays where the
        last full pass left it, only those two can have fallen out of retention, so the full pass
        (every hour and day of the state) runs once per newest hour, not once per observation."""
        newest_hour = hour_of(self.newest_event_time)
        if added is not None and newest_hour == self.expired_at:
            hour_key, day_key = added
            if hour_key[1] <= newest_hour - RETENTION_HOURS:
                self.set_hour(hour_key, None)
            if day_key[1] < self.oldest_day:
                self.set_day(day_key, None)
            return
        for key in [k for k in self.hours if k[1] <= newest_hour - RETENTION_HOURS]:
            self.set_hour(key, None)
        oldest_day = local_date(self.newest_event_time).toordinal() - DAY_RETENTION_DAYS
        for key in [k for k in self.days if k[1] < oldest_day]:
            self.set_day(key, None)
        self.expired_at, self.oldest_day = newest_hour, oldest_day

    def latest_of(self, series: str) -> Agg | None:
        """The newest day of a series: its ``last`` is the series' latest value."""
        days = [a for (s, _), a in self.days.items() if s == series]
        return max(days, key=lambda a: (a.last_time, a.last_id)) if days else None

    def _forget(self, name: str) -> None:
        self.changed.discard(name)
        self.removed.add(name)

    @staticmethod
    def offset_field(source: str) -> str:
        return f"{_OFFSET_PREFIX}{source}"


class LazyHistory:
    """``History`` of an entity's own series, built on first use."""

    __slots__ = ("_built", "_state")

    def __init__(self, state: EntityState) -> None:
        self._state = state
        self._built: BucketHistory | None = None

    def _history(self) -> BucketHistory:
        if self._built is None:
            self._built = self._state.history()
        return self._built

    def min_since(self, since_ms: int) -> float | None:
        return self._history().min_since(since_ms)

    def max_since(self, since_ms: int) -> float | None:
        return self._history().max_since(since_ms)

    def daily_values(self, before_local_day: date, days: int) -> list[float]:
        """What ``BucketHistory.daily_values`` answers, read from the days kept without building it."""
        end, kept = before_local_day.toordinal(), self._state.days
        return [kept[("", day)].sum for day in range(end - days, end) if ("", day) in kept]


@dataclass(frozen=True, slots=True)
class EntityKey:
    """An entity's parts, as in its key ``indicator|region|station-or-dash``."""

    indicator: str
    region: str
    station: str | None

    @staticmethod
    def parse(entity: str) -> EntityKey:
        indicator, region, station = entity.split("|")
        return EntityKey(indicator, region, None if station == "-" else station)

    def __str__(self) -> str:
        return f"{self.indicator}|{self.region}|{self.station or '-'}"


def checked_entity(catalogue: Catalogue, text: str) -> EntityKey:
    """The entity an internal record names, checked against the catalogue: its indicator exists and
    the region and station fit the indicator's scope (``region_level``). Raises ``ValueError``
    otherwise: only a defect or a forged record gets there, and the step must never see it."""
    parts = text.split("|")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"entity {text[:80]!r} is not <indicator>|<region>|<station or ->")
    key = EntityKey.parse(text)
    indicator = catalogue.indicators.get(key.indicator)
    if indicator is None:
        raise ValueError(f"entity {text[:80]!r}: unknown indicator")
    region = catalogue.regions.get(key.region)
    if region is None or region.kind == "legacy":
        raise ValueError(f"entity {text[:80]!r}: {key.region!r} is not a current unit")
    if indicator.region_level == "national":
        fits = region.kind == "national" and key.station is None
    elif indicator.region_level == "province":
        fits = region.kind == "current" and key.station is None
    else:
        station = catalogue.stations.get(key.station or "")
        fits = station is not None and station.region == key.region
    if not fits:
        raise ValueError(
            f"entity {text[:80]!r} does not fit {indicator.code}'s scope ({indicator.region_level})"
        )
    return key


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
    settle_ms: int = 0
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


def needed_periods(indicator: Indicator, obs: Observation) -> list[SeriesPeriod]:
    """The periods applying ``obs`` reads: those it counts in and the same periods last year."""
    series = slice_of(obs.breakdowns)
    day = local_date(obs.event_time).toordinal()
    labels = _needed_labels(indicator.frequency, indicator.calendar, indicator.deadline_day, day)
    return [(series, label) for label in labels]


@functools.lru_cache(maxsize=65536)
def _deadline_ms(label: str, calendar: str, deadline_day: int) -> int:
    """When the period a label names closes by its own deadline."""
    return close_time_ms(period_by_label(label, calendar, deadline_day))


@functools.lru_cache(maxsize=65536)
def _period_plan(
    frequency: str, calendar: str, deadline_day: int, local_day_ordinal: int
) -> tuple[tuple[str, int], ...]:
    """(label, when it closes) of the periods holding a local day, own frequency first."""
    periods = periods_at(frequency, calendar, deadline_day, local_day_ordinal)
    return tuple((p.label, close_time_ms(p)) for p in periods)


@functools.lru_cache(maxsize=65536)
def _needed_labels(
    frequency: str, calendar: str, deadline_day: int, local_day_ordinal: int
) -> tuple[str, ...]:
    periods = periods_at(frequency, calendar, deadline_day, local_day_ordinal)
    return tuple(p.label for p in periods) + tuple(same_period_last_year(p.label) for p in periods)


def apply(
    state: EntityState,
    obs: Observation,
    *,
    source: str,
    offset: int,
    ctx: Context,
    touched: Touched | None = None,
) -> StepResult:
    """Apply ``obs`` (read at ``offset`` of ``source``) to ``state`` in place.

    Skipped, with no effect:
    - an offset at or below the one already applied for ``source``: Redis already holds its effects
      (a redelivery after a crash or rebalance);
    - an observation id already applied at this revision (or at this revision before a correction):
      the same record published twice upstream (the intake is at-least-once) — ``duplicate``;
    - an observation id applied at a later revision, never at this one — ``stale``, for the
      dead-letter topic;
    - a value older than the retention (the previous reporting year): neither a duplicate nor a
      correction can be recognised there — ``beyond_retention``, for the dead-letter topic.
    A correction (a higher revision) first retracts the earlier value from every aggregate it
    counted in. ``pending``: data must be loaded first (``state.missing``); the agent runs the batch
    again once it is.
    """
    touched = touched if touched is not None else Touched()
    if already_applied(state, source, offset):
        return StepResult(Outcome.ALREADY_APPLIED)
    indicator = ctx.catalogue.indicators[obs.indicator]
    newest = max(state.newest_event_time, obs.event_time)
    retention = retention_start_ms(indicator, newest)
    if obs.event_time < retention:
        return StepResult(Outcome.BEYOND_RETENTION)
    known = state.seen.get(obs.seen_key)
    if known is not None and known.knows(obs.revision):
        # the same record again: published twice upstream, or an earlier revision re-sent by the
        # intake after a crash, once the correction was already applied
        return StepResult(Outcome.DUPLICATE)
    if known is not None and known.revision > obs.revision:
        return StepResult(Outcome.STALE)

    series = slice_of(obs.breakdowns)
    day = local_date(obs.event_time).toordinal()
    periods = _period_plan(indicator.frequency, indicator.calendar, indicator.deadline_day, day)
    old_periods: tuple[ReportingPeriod, ...] = ()
    if known is not None:
        old_periods = periods_of(
            indicator.frequency, indicator.calendar, indicator.deadline_day, known.event_time
        )
    # open periods this value's retention forgets at the commit (a settling history period, once
    # values two reporting years later arrive): published now, while they are still there
    dropping = _out_of_retention(state, indicator, retention)
    ready = all([state.has_period(k) & state.has_period(_last_year(k)) for k in dropping])
    if not _loaded(state, indicator, series, day, known=known, old_periods=old_periods) or not ready:
        return StepResult(Outcome.PENDING)

    if known is not None:
        _retract(state, obs, known, old_periods, touched)
    earlier = (*known.earlier, known.revision) if known is not None else ()
    state.put_seen(
        obs.seen_key, Seen(obs.revision, obs.event_time, obs.value, obs.quality.value, series, earlier)
    )
    state.newest_event_time = newest
    state.retention_ms = max(retention, state.retention_ms or retention)
    for key in dropping:
        state.close_period(key)
        touched.closed.add(key)
    late, added = _count(state, obs, series=series, periods=periods, ctx=ctx, touched=touched)
    state.expire(added)
    _update_latest(state, obs, series, known, added[1])
    touched.revision = obs.revision
    touched.reporters.add(obs.reporter)
    # a co-reporter's values neither feed the authoritative feed nor stand in for it
    alive = CO_REPORTER_BREAKDOWN not in obs.breakdowns and _follow_authority(state, obs, ctx)
    alerts = _observation_alerts(state, obs, ctx, alive=alive) if series == "" else ()
    close_due(state, ctx, touched, indicator, tick=False)
    return StepResult(Outcome.CORRECTED if known is not None else Outcome.APPLIED, late=late, alerts=alerts)


def _follow_authority(state: EntityState, obs: Observation, ctx: Context) -> bool:
    """What an authoritative record says about the feed the timer rules watch and the alerts name;
    whether it is a sign that the feed is alive now.

    Authority follows time: the feed is the newest record's by event time, so only a record at least
    as new as the newest authoritative one moves ``reporter`` (an older one is history, perhaps from
    an earlier authority: EVN's grid figures before NSMO took over) — and only such a record *arriving
    live* moves ``last_seen``: a bulk load, or a late figure of the past, says nothing about whether
    the feed is alive now, so absence still fires during one."""
    if obs.period and obs.period > state.latest_period:
        state.latest_period = obs.period  # a report is a report, however it came: late_report's
    if obs.event_time < state.authority_event_time:
        return False
    state.authority_event_time = obs.event_time
    state.reporter = obs.reporter
    if ctx.bulk:
        return False
    state.last_seen = max(state.last_seen, ctx.now_ms)
    return True


def _out_of_retention(state: EntityState, indicator: Indicator, retention: int) -> list[SeriesPeriod]:
    """The open periods ending at or before ``retention``: the commit forgets them (sorted)."""
    if not state.open_periods or (state.retention_ms is not None and retention <= state.retention_ms):
        return []  # retention has not moved since they were checked
    return sorted(
        key
        for key in state.open_periods
        if period_by_label(key[1], indicator.calendar, indicator.deadline_day).end_ms <= retention
    )


def _last_year(key: SeriesPeriod) -> SeriesPeriod:
    return (key[0], same_period_last_year(key[1]))


def _loaded(
    state: EntityState,
    indicator: Indicator,
    series: str,
    day: int,
    *,
    known: Seen | None,
    old_periods: tuple[ReportingPeriod, ...],
) -> bool:
    """Whether the state holds what applying the observation reads (else it is recorded missing):
    its periods and last year's, and for a correction the earlier value's periods and its year's
    observations."""
    if state.complete:
        return True
    loaded = state.periods
    labels = _needed_labels(indicator.frequency, indicator.calendar, indicator.deadline_day, day)
    ready = all([(series, label) in loaded or state.has_period((series, label)) for label in labels])
    if known is not None:
        year = old_periods[-1]
        ready = state.range_loaded(hour_of(year.start_ms), hour_of(year.end_ms - 1) + 1) and ready
        keys = [(known.series, p.label) for p in old_periods]
        ready = all([state.has_period(k) for k in keys]) and ready
        ready = all([state.has_period((s, same_period_last_year(lb))) for s, lb in keys]) and ready
    return ready


def _update_latest(
    state: EntityState, obs: Observation, series: str, known: Seen | None, day: SeriesDay
) -> None:
    """The entity's latest value (of its own series) after applying ``obs``."""
    if known is None and series == "" and obs.event_time > state.latest_event_time and day in state.days:
        # newer than every value of the entity's own series still held: it is the latest
        state.latest_value, state.latest_event_time = obs.value, obs.event_time
    elif series == "" or (known is not None and known.series == ""):  # a correction may retract the latest
        latest = state.latest_of("")
        if latest is not None:
            state.latest_value, state.latest_event_time = latest.last_value, latest.last_time


def _count(
    state: EntityState,
    obs: Observation,
    *,
    series: str,
    periods: tuple[tuple[str, int], ...],
    ctx: Context,
    touched: Touched,
) -> tuple[bool, tuple[SeriesHour, SeriesDay]]:
    """Count the value in its hour, its local day and its periods; whether it arrived late, and the
    hour and day it counted in.

    The aggregates are updated in place: a run's state is decoded for that run alone."""
    value, event_time, observation_id, now = obs.value, obs.event_time, obs.observation_id, ctx.now_ms
    quality = obs.quality.value
    number = exact(value)
    hour_key = (series, hour_of(event_time))
    hour = state.hours.get(hour_key)
    if hour is None:
        state.set_hour(hour_key, Agg.of(value, event_time, observation_id, quality, now, exact_value=number))
    else:
        hour.absorb(value, event_time, observation_id, quality, arrival=now, number=number)
        state.set_hour(hour_key, hour)
    day_key = (series, local_date(event_time).toordinal())
    day = state.days.get(day_key)
    if day is None:
        state.set_day(day_key, Agg.of(value, event_time, observation_id, quality, now, exact_value=number))
    else:
        day.absorb(value, event_time, observation_id, quality, arrival=now, number=number)
        state.set_day(day_key, day)
    late = _count_in_periods(state, obs, series, periods, number, ctx=ctx, touched=touched)
    return late, (hour_key, day_key)


def _count_in_periods(
    state: EntityState,
    obs: Observation,
    series: str,
    periods: tuple[tuple[str, int], ...],
    number: Decimal,
    *,
    ctx: Context,
    touched: Touched,
) -> bool:
    """Count the value in its reporting periods (in place); whether it arrived after its own closed."""
    value, event_time, observation_id, now = obs.value, obs.event_time, obs.observation_id, ctx.now_ms
    quality = obs.quality.value
    late = False
    periods_state, touched_periods = state.periods, touched.periods
    changed_periods = state.changed_periods
    for index, (label, closes) in enumerate(periods):
        key = (series, label)
        agg = periods_state.get(key)
        if agg is None:
            state.set_period(key, Agg.of(value, event_time, observation_id, quality, now, exact_value=number))
        else:
            agg.absorb(value, event_time, observation_id, quality, arrival=now, number=number)
            changed_periods.add(key)
        if closes > now:
            touched_periods.add(key)
            if key not in state.open_periods:
                state.open_period(key, closes)
            continue
        if index == 0:
            late = True
            touched.late.add(key)
        if ctx.settle_ms:  # history: published once it settles, as a period closing (``close_due``)
            if key not in state.open_periods:
                state.open_period(key, now + ctx.settle_ms)
        else:
            touched_periods.add(key)
    return late


def _retract(
    state: EntityState,
    obs: Observation,
    old: Seen,
    periods: tuple[ReportingPeriod, ...],
    touched: Touched,
) -> None:
    """Take an earlier revision's value out of every aggregate it counted in."""

    def without(agg: Agg, first_ms: int, end_ms: int) -> Agg | None:
        rest = None
        if agg.needs_rescan(old.value, old.event_time, obs.observation_id):
            rest = state.values_in(old.series, first_ms, end_ms, without=obs.seen_key)
        return agg.remove(old.value, old.quality, rest)

    hour_key = (old.series, old.hour)
    hour = state.hours.get(hour_key)
    if hour is not None:
        state.set_hour(hour_key, without(hour, old.hour * HOUR_MS, (old.hour + 1) * HOUR_MS))
    day = local_date(old.event_time)
    day_key = (old.series, day.toordinal())
    day_agg = state.days.get(day_key)
    if day_agg is not None:
        first = period_of("daily", "decree09", old.event_time)
        state.set_day(day_key, without(day_agg, first.start_ms, first.end_ms))
    for period in periods:
        key = (old.series, period.label)
        agg = state.periods.get(key)
        if agg is not None:
            state.set_period(key, without(agg, period.start_ms, period.end_ms))
            touched.periods.add(key)


def close_due(
    state: EntityState, ctx: Context, touched: Touched, indicator: Indicator, *, tick: bool
) -> None:
    """Close the periods whose deadline has passed: their final values are published.

    A period held open while history settles (``Context.settle_ms``: it closes later than its own
    deadline) is closed by a tick only: closing it needs the period and last year's read, which a
    history batch does not hold, and a tick reads them once for all the batches since."""
    now = ctx.now_ms
    due = [(key, closes) for key, closes in state.open_periods.items() if closes <= now]
    for key, closes in sorted(due):
        if not tick and closes > _deadline_ms(key[1], indicator.calendar, indicator.deadline_day):
            continue
        last_year = (key[0], same_period_last_year(key[1]))
        if state.has_period(key) & state.has_period(last_year):
            state.close_period(key)
            touched.closed.add(key)


def _observation_alerts(
    state: EntityState, obs: Observation, ctx: Context, *, alive: bool
) -> tuple[AlertRecord, ...]:
    history = state.lazy_history()
    alerts = []
    for rule in ctx.rulebook.rules_for(obs.indicator, obs.region, obs.station):
        verdict = on_observation(
            rule,
            state.rule_state(rule.rule_id),
            value=obs.value,
            event_time_ms=obs.event_time,
            history=history,
            now_ms=ctx.now_ms,
            alive=alive,
        )
        if verdict.transition is not None:
            alerts.append(
                _alert(
                    state,
                    rule,
                    verdict,
                    EntityKey(obs.indicator, obs.region, obs.station),
                    cause=f"{obs.observation_id}#{obs.revision}",
                    ctx=ctx,
                    observation_id=obs.observation_id,
                    event_time=obs.event_time,
                )
            )
    return tuple(alerts)


def tick(
    state: EntityState,
    entity: EntityKey,
    *,
    source: str,
    offset: int,
    ctx: Context,
    touched: Touched | None = None,
) -> StepResult:
    """At the tick's time ``ctx.now_ms``: close the periods whose deadline has passed, and evaluate
    the timer rules (absence, late report).

    Only feeds that have reported at least once are watched: a feed never connected is the
    compliance view's business (the article's "40/78 connected"), not an alert storm at first start.
    """
    touched = touched if touched is not None else Touched()
    if not state.known or already_applied(state, source, offset):
        return StepResult(Outcome.ALREADY_APPLIED)
    indicator = ctx.catalogue.indicators[entity.indicator]
    close_due(state, ctx, touched, indicator, tick=True)
    if state.missing:
        return StepResult(Outcome.PENDING)
    alerts = []
    for rule in ctx.rulebook.timer_rules_for(entity.indicator, entity.region, entity.station):
        verdict = on_tick(
            rule,
            state.rule_state(rule.rule_id),
            last_seen_ms=state.last_seen if state.last_seen >= 0 else None,
            latest_period=state.latest_period or None,
            now_ms=ctx.now_ms,
            indicator=indicator,
        )
        if verdict.transition is not None:
            alerts.append(
                _alert(
                    state, rule, verdict, entity, cause=f"tick@{ctx.now_ms}", ctx=ctx, event_time=ctx.now_ms
                )
            )
    return StepResult(Outcome.APPLIED, alerts=tuple(alerts))


class DirectiveRefusal(StrEnum):
    """Why the stateful step refuses a directive: its dead-letter reason code (``center.directives.dlq``)."""

    UNKNOWN_ALERT = Reason.UNKNOWN_ALERT  # no alert of that key ever fired at the entity
    ALERT_NOT_OPEN = Reason.ALERT_NOT_OPEN  # only a comment is taken on a resolved alert
    STALE_ALERT = Reason.STALE_ALERT  # about an earlier occurrence of the alert, not the current one


class DirectiveRefusedError(ValueError):
    """A directive that cannot be applied; ``reason`` is its dead-letter reason code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = str(reason)  # a plain string for the dead letter's encoders (not the enum member)


def stale_occurrence(meta: AlertMeta, directive: Mapping[str, Any]) -> str | None:
    """Why ``directive`` is not about the alert's current occurrence (``meta``), or None when it is.

    A directive names the occurrence by the id of a change the center saw (``alert_id``): it must be
    one of the current occurrence's, or the directive was meant for an earlier one (the alert resolved
    and fired again since) and must not land on the new one — an acknowledgement would hide a new
    critical alert. A directive naming no change (an empty ``alert_id``: the CLI without
    ``--alert-id``, an older producer) means "the occurrence current as I issue this": it is stale when
    it was issued before that occurrence fired (a directive held in a queue while the alert re-fired).
    State written before occurrences were recorded cannot tell: such a directive is taken, as before.
    """
    if not meta.occurrence:
        return None
    named = str(directive.get("alert_id") or "")
    key = directive["alert_key"]
    if named:
        if meta.is_of_current_occurrence(named):
            return None
        return (
            f"alert {key!r}: {named!r} is not a change of its current occurrence (opened by"
            f" {meta.occurrence}); it has resolved and fired again since, or the view is"
            f" {OCCURRENCE_CHANGES_KEPT}+ changes out of date"
        )
    issued = as_ms(directive["issued_at"])
    if issued < meta.opened_at:
        return (
            f"alert {key!r}: the directive names no occurrence and was issued before the current one"
            f" fired ({meta.occurrence})"
        )
    return None


def direct(
    state: EntityState,
    entity: EntityKey,
    directive: dict[str, Any],
    *,
    source: str,
    offset: int,
    ctx: Context,
) -> StepResult:
    """Apply a directive of the center to the alert it names: record who acknowledged, was assigned,
    commented; publish the change, and say whom to forward the directive to (the reporter responsible
    now). Raises :class:`DirectiveRefusedError` (:class:`DirectiveRefusal`) for an alert that never
    fired, a directive about an earlier occurrence of it, or an action other than a comment on an
    alert that is not open."""
    if already_applied(state, source, offset):
        return StepResult(Outcome.ALREADY_APPLIED)
    rule_id = directive["alert_key"].split("|", 1)[0]
    rules = {r.rule_id: r for r in ctx.rulebook.rules_for(entity.indicator, entity.region, entity.station)}
    rule, rule_state, known = rules.get(rule_id), state.rules.get(rule_id), state.meta.get(rule_id)
    if rule is None or rule_state is None or known is None or not known.transition:
        raise DirectiveRefusedError(
            DirectiveRefusal.UNKNOWN_ALERT, f"no alert {directive['alert_key']!r} ever fired"
        )
    # before "not open": a directive about an earlier occurrence is refused as that, open or not
    stale = stale_occurrence(known, directive)
    if stale is not None:
        raise DirectiveRefusedError(DirectiveRefusal.STALE_ALERT, stale)
    action = directive["action"]
    if rule_state.level < rule.alert_from and action != "COMMENT":
        raise DirectiveRefusedError(
            DirectiveRefusal.ALERT_NOT_OPEN, f"alert {directive['alert_key']!r} is not open; cannot {action}"
        )
    meta = state.alert_meta(rule_id)
    issued = as_ms(directive["issued_at"])
    if action in ("ACKNOWLEDGE", "ASSIGN", "ESCALATE", "CLOSE") and not meta.acknowledged_by:
        meta.acknowledged_by, meta.acknowledged_at = directive["actor"], issued
    if directive.get("assignee"):
        meta.assigned_to = directive["assignee"]
    if directive.get("comment"):
        meta.comment = directive["comment"]
    meta.directive_id = directive["directive_id"]
    level = rule_state.level
    verdict = Verdict(
        transition=Transition(meta.transition) if meta.transition else Transition.FIRING,
        level=level,
        previous_level=level,
        value=rule_state.value,
        threshold=rule.levels[level].lower if rule.levels else None,
        detail=f"{action.lower()} by {directive['actor']}",
    )
    alert = _alert(
        state,
        rule,
        verdict,
        entity,
        cause=f"directive:{directive['directive_id']}",
        ctx=ctx,
        event_time=issued,
        event_type=action,
    )
    addressee = responsible_reporter(ctx.catalogue, entity, ctx.now_ms)
    return StepResult(Outcome.APPLIED, alerts=(alert,), addressee=addressee)


def responsible_reporter(catalogue: Catalogue, entity: EntityKey, now_ms: int) -> str:
    """Who answers for an entity's feed now: the catalogue's authority at this moment, whoever sent
    its newest values (an earlier authority's history, while the current one is silent, must not
    take the center's directives away from the reporter that has to act on them)."""
    return catalogue.authority(entity.indicator, entity.region, now_ms)


def alert_key(rule_id: str, entity: EntityKey) -> str:
    """One alert lifecycle: a rule at an entity."""
    return f"{rule_id}|{entity}"


def entity_of_alert_key(alert_key: str) -> str | None:
    """``<rule id>|<indicator>|<region>|<station or ->`` -> ``<indicator>|<region>|<station or ->``."""
    parts = alert_key.split("|")
    if len(parts) != 4 or not all(parts):
        return None
    return "|".join(parts[1:])


def alert_id(key: str, change: str, cause: str) -> str:
    """Deterministic alert id: reprocessing the same input yields the same id, never a new one."""
    return "alr-" + hashlib.blake2b(f"{key}|{change}|{cause}".encode(), digest_size=12).hexdigest()


def _alert(
    state: EntityState,
    rule: Rule,
    verdict: Verdict,
    entity: EntityKey,
    *,
    cause: str,
    ctx: Context,
    event_time: int,
    observation_id: str = "",
    event_type: str = "TRANSITION",
) -> AlertRecord:
    """The Avro alert record of one change, with what the center did about it so far."""
    key = alert_key(rule.rule_id, entity)
    assert verdict.transition is not None  # noqa: S101 - callers publish transitions only
    change = verdict.transition.value if event_type == "TRANSITION" else event_type
    meta = state.alert_meta(rule.rule_id)
    new_id = alert_id(key, change, cause)
    if event_type == "TRANSITION":
        meta.transition, meta.alert_id = verdict.transition.value, new_id
        if verdict.transition is Transition.RESOLVED:
            meta.acknowledged_by, meta.acknowledged_at, meta.assigned_to, meta.comment = "", 0, "", ""
    opens = event_type == "TRANSITION" and verdict.transition is Transition.FIRING
    meta.record_change(new_id, opens=opens, at_ms=ctx.now_ms)
    shown = rule.levels[verdict.level] if rule.levels else None
    return {
        # Every change has its own id (a directive's too): consumers deduplicate by it safely.
        "alert_id": new_id,
        "alert_key": key,
        "rule": rule.rule_id,
        "rule_kind": rule.kind,
        "domain": rule.domain,
        "event_type": event_type,
        "transition": verdict.transition.value,
        "indicator": entity.indicator,
        "reporter": state.reporter,
        "region": entity.region,
        "station": entity.station,
        "value": verdict.value if verdict.value is not None else state.latest_value,
        "threshold": verdict.threshold,
        "level": verdict.level,
        "previous_level": verdict.previous_level,
        "level_code": shown.code if shown else str(verdict.level),
        "level_name_vi": shown.name_vi if shown else "",
        "level_name_en": shown.name_en if shown else "",
        "colour": shown.colour if shown else "#808080",
        "observation_id": observation_id,
        "cause_observation_ids": [observation_id] if observation_id else [],
        "detail": verdict.detail,
        "acknowledged_by": meta.acknowledged_by or None,
        "acknowledged_at": meta.acknowledged_at or None,
        "assigned_to": meta.assigned_to or None,
        "comment": meta.comment or None,
        "directive_id": (meta.directive_id or None) if event_type != "TRANSITION" else None,
        "event_time": event_time,
        "processing_time": ctx.now_ms,
    }
