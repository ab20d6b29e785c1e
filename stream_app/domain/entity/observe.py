"""The observation step: apply one observation to an entity's state (dedup, corrections, aggregates,
reporting periods, alerts)."""

from __future__ import annotations

import functools
from decimal import Decimal

from stream_app.domain.aggregates import (
    Agg,
    close_time_ms,
    exact,
    hour_of,
    period_by_label,
    periods_at,
    periods_of,
    same_period_last_year,
    series_of,
)
from stream_app.domain.alerting import on_observation
from stream_app.domain.calendar import ReportingPeriod, period_of
from stream_app.domain.catalogue import Indicator
from stream_app.domain.clock import HOUR_MS, local_date
from stream_app.domain.entity.identity import EntityKey
from stream_app.domain.entity.records import alert_record
from stream_app.domain.entity.state import (
    EntityState,
    Seen,
    SeriesDay,
    SeriesHour,
    SeriesPeriod,
    retention_start_ms,
)
from stream_app.domain.entity.step import Context, Outcome, StepResult, Touched, already_applied
from stream_app.domain.entity.tick import close_due
from stream_app.domain.model import CO_REPORTER_BREAKDOWN, Observation
from stream_app.domain.records import AlertRecord


def needed_periods(indicator: Indicator, obs: Observation) -> list[SeriesPeriod]:
    """The periods applying ``obs`` reads: those it counts in and the same periods last year."""
    series = series_of(obs.breakdowns)
    day = local_date(obs.event_time).toordinal()
    labels = _needed_labels(indicator.frequency, indicator.calendar, indicator.deadline_day, day)
    return [(series, label) for label in labels]


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

    series = series_of(obs.breakdowns)
    day = local_date(obs.event_time).toordinal()
    periods = _period_plan(indicator.frequency, indicator.calendar, indicator.deadline_day, day)
    old_periods: tuple[ReportingPeriod, ...] = ()
    if known is not None:
        old_periods = periods_of(
            indicator.frequency, indicator.calendar, indicator.deadline_day, known.event_time
        )
    # open periods this value's retention forgets at the commit (a history period held open, once
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
    event_time, now = obs.event_time, ctx.now_ms
    quality = obs.quality.value
    number = exact(obs.value)
    hour_key = (series, hour_of(event_time))
    state.set_hour(hour_key, _absorbed(state.hours.get(hour_key), obs, quality, now, number))
    day_key = (series, local_date(event_time).toordinal())
    state.set_day(day_key, _absorbed(state.days.get(day_key), obs, quality, now, number))
    late = _count_in_periods(state, obs, series, periods, number, ctx=ctx, touched=touched)
    return late, (hour_key, day_key)


def _absorbed(agg: Agg | None, obs: Observation, quality: str, now: int, number: Decimal) -> Agg:
    """``agg`` with the observation counted in (in place), or a new aggregate of it alone."""
    if agg is None:
        return Agg.of(obs.value, obs.event_time, obs.observation_id, quality, now, exact_value=number)
    agg.absorb(obs.value, obs.event_time, obs.observation_id, quality, arrival=now, number=number)
    return agg


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
        if ctx.hold_ms:  # history: held open, published once as a period closing (``close_due``)
            if key not in state.open_periods:
                state.open_period(key, now + ctx.hold_ms)
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
                alert_record(
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
