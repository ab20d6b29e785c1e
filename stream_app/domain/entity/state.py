"""An entity's state as the step sees it: what it keeps, decoded, with no storage format.

How it is stored (the Redis hash's field names and value encodings) is the state layer's
(``stream_app/state/entity_hash.py``); the state here names its changed parts by :class:`Kind`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any, TypeVar

from stream_app.domain.aggregates import DAY_RETENTION_DAYS, RETENTION_HOURS, Agg, hour_of
from stream_app.domain.alerting import BucketHistory, RuleState
from stream_app.domain.calendar import period_of
from stream_app.domain.catalogue import Indicator
from stream_app.domain.clock import HOUR_MS, local_date, local_midnight_ms

SeriesHour = tuple[str, int]  # (series, hour since the epoch)
SeriesDay = tuple[str, int]  # (series, local day ordinal)
SeriesPeriod = tuple[str, str]  # (series, period label)
HourRange = tuple[int, int]  # [first hour, end hour) of event time
_T = TypeVar("_T")


class Kind(StrEnum):
    """The kinds of part an entity's state is made of (each kept per series, period or rule)."""

    HOUR = "hour"  # an hourly aggregate: (series, hour since the epoch)
    DAY = "day"  # a daily aggregate: (series, local day ordinal)
    OPEN = "open"  # a reporting period still open: (series, period label)
    RULE = "rule"  # an alert rule's state: (rule id, "")
    META = "meta"  # what is known about a rule's alert: (rule id, "")


Part = tuple[Kind, str, int | str]  # (kind, series or rule id, hour, day, period label or "")


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
    # parts of the state changed since it was read, and those emptied (the state layer writes them)
    changed: set[Part] = field(default_factory=set)
    removed: set[Part] = field(default_factory=set)
    # What a step needed but was not loaded: ("period", series, label) or ("range", first, end).
    missing: set[tuple[str, Any, Any]] = field(default_factory=set)
    # True when the state holds everything there is (a state built in memory: tests, a replay):
    # a period or an observation it lacks does not exist, rather than is not loaded.
    complete: bool = False
    # where the last full expiry pass left retention (see ``expire``)
    expired_at: int | None = None
    oldest_day: int = 0
    # no open period closes at a record before this time (a lower bound; None: not known yet): most
    # open periods of a history load are held for a tick, so a record need not look at them again
    # (see ``tick.close_due``)
    record_close_from: int | None = field(default=None, compare=False)

    @property
    def known(self) -> bool:
        """Whether this entity has ever reported (timer rules watch only known feeds)."""
        return self.newest_event_time >= 0 or self.latest_event_time >= 0

    # ------------------------------------------------------------------ periods (the periods hash)

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
        return self._for_writing(self.rules, Kind.RULE, rule_id, RuleState)

    def alert_meta(self, rule_id: str) -> AlertMeta:
        """What is known about one rule's alert; marked for writing."""
        return self._for_writing(self.meta, Kind.META, rule_id, AlertMeta)

    def _for_writing(self, parts: dict[str, _T], kind: Kind, rule_id: str, new: Callable[[], _T]) -> _T:
        """A rule's part of ``kind`` (``new()`` if there is none yet), marked for writing."""
        part = parts.get(rule_id)
        if part is None:
            part = parts[rule_id] = new()
        self.changed.add((kind, rule_id, ""))
        return part

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
        self._set(self.hours, key, agg, (Kind.HOUR, key[0], key[1]))

    def set_day(self, key: SeriesDay, agg: Agg | None) -> None:
        self._set(self.days, key, agg, (Kind.DAY, key[0], key[1]))

    def open_period(self, key: SeriesPeriod, closes_at: int) -> None:
        self.open_periods[key] = closes_at
        self.changed.add((Kind.OPEN, key[0], key[1]))
        if self.record_close_from is not None:
            self.record_close_from = min(self.record_close_from, closes_at)

    def close_period(self, key: SeriesPeriod) -> None:
        del self.open_periods[key]
        self._forget((Kind.OPEN, key[0], key[1]))

    def _set(self, table: dict[Any, Agg], key: Any, agg: Agg | None, part: Part) -> None:
        if agg is None:
            table.pop(key, None)
            self._forget(part)
        else:
            table[key] = agg
            self.changed.add(part)
            self.removed.discard(part)

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

    def _forget(self, part: Part) -> None:
        self.changed.discard(part)
        self.removed.add(part)


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
