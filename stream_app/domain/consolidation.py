"""Consolidated records: what the center reads of an entity's (or a roll-up's) periods. Pure.

A record per ``indicator:region:station:period`` key (``:series`` for a breakdown's series), on the
compacted ``center.consolidated`` topic: the period's value by the indicator's semantics, count, exact
sum, min, max, latest, data quality, the same period last year and the change in %, status (OPEN
until the reporting deadline, then CLOSED) and, for an entity's own-frequency period, the rolling
windows and the longer periods to date.
"""

from __future__ import annotations

from stream_app.domain.aggregates import (
    ROLLING_WINDOWS,
    Agg,
    breakdowns_of,
    close_time_ms,
    combine,
    hour_of,
    period_by_label,
    period_frequencies,
    periods_of,
    same_period_last_year,
    yoy_change_pct,
)
from stream_app.domain.calendar import ReportingPeriod, frequency_of_label
from stream_app.domain.catalogue import Indicator
from stream_app.domain.clock import local_date
from stream_app.domain.entity import Context, EntityKey, EntityState, Touched
from stream_app.domain.model import CO_REPORTER_BREAKDOWN, period_field
from stream_app.domain.records import ConsolidatedRecord, PeriodToDate, RollingWindow


def consolidated_key(indicator: str, region: str, station: str | None, series: str, label: str) -> str:
    """``indicator:region:station-or-dash:period`` and ``:series`` for a breakdown's series."""
    key = f"{indicator}:{region}:{station or '-'}:{label}"
    return f"{key}:{series}" if series else key


def entity_records(
    state: EntityState, entity: EntityKey, touched: Touched, ctx: Context
) -> list[tuple[str, ConsolidatedRecord | None]]:
    """The consolidated records of what a batch changed in one entity, once per key (debounced):

    - the entity's own-frequency periods it touched (the day for hourly and daily indicators, the
      month for monthly ones...), with the rolling windows and the longer periods to date;
    - every period it closed (final values), and every closed period a late value or a correction
      changed;
    - a tombstone (None) for a period a correction emptied.
    """
    indicator = ctx.catalogue.indicators[entity.indicator]
    level, level_code = _alert_level(state, entity, ctx)
    own = period_frequencies(indicator.frequency)[0]
    out: list[tuple[str, ConsolidatedRecord | None]] = []
    windows: dict[str, list[RollingWindow]] = {}  # per series: the same for each of its periods
    for key in sorted(touched.periods | touched.closed):
        series, label = key
        period = period_by_label(label, indicator.calendar, indicator.deadline_day)
        closed = close_time_ms(period) <= ctx.now_ms
        is_own = frequency_of_label(label) == own
        if not (key in touched.closed or is_own or closed):
            continue
        record_key = consolidated_key(entity.indicator, entity.region, entity.station, series, label)
        agg = state.periods.get(key)
        if agg is None:
            out.append((record_key, None))
            continue
        kind = "PERIOD_CLOSE" if key in touched.closed else "LATE_UPDATE" if closed else "UPDATE"
        record = period_record(
            indicator,
            record_key,
            agg,
            period,
            last_year=state.periods.get((series, same_period_last_year(label))),
            kind=kind,
            scope="ENTITY",
            region=entity.region,
            station=entity.station,
            series=series,
            reporter=breakdowns_of(series).get(CO_REPORTER_BREAKDOWN, state.reporter),
            revision=touched.revision,
            now_ms=ctx.now_ms,
        )
        record["alert_level"], record["alert_level_code"] = level, level_code
        if is_own:
            if series not in windows:
                windows[series] = _windows(state, series)
            record["windows"] = windows[series]
            record["to_date"] = [
                _to_date(indicator, state, series, longer, ctx.now_ms)
                for longer in periods_of(
                    indicator.frequency, indicator.calendar, indicator.deadline_day, period.start_ms
                )[1:]
                if (series, longer.label) in state.periods
                and state.periods[(series, longer.label)] is not None
            ]
        out.append((record_key, record))
    return out


def period_record(
    indicator: Indicator,
    key: str,
    agg: Agg,
    period: ReportingPeriod,
    *,
    last_year: Agg | None,
    kind: str,
    scope: str,
    region: str,
    station: str | None,
    series: str,
    reporter: str,
    revision: int,
    now_ms: int,
    contributors: int = 0,
    value: float | None = None,
    last_year_value: float | None = None,
) -> ConsolidatedRecord:
    """The Avro ``consolidated`` record of one period's aggregate (an entity's or a roll-up's)."""
    aggregation = time_aggregation(indicator)
    value = agg.value_by(aggregation) if value is None else value
    if last_year_value is None and last_year is not None:
        last_year_value = last_year.value_by(aggregation)
    return {
        "key": key,
        "indicator": indicator.code,
        "reporter": reporter,
        "region": region,
        "station": station,
        "window": f"period:{period_frequency(period)}",
        "latest_value": agg.last_value,
        "latest_event_time": agg.last_time,
        "count": agg.count,
        "sum": agg.sum,
        "mean": agg.mean,
        "min": agg.low,
        "max": agg.high,
        "alert_level": 0,
        "alert_level_code": "NONE",
        "quality": agg.quality,
        "revision": revision,
        "processing_time": now_ms,
        "kind": kind,
        "scope": scope,
        "breakdowns": breakdowns_of(series),
        "period": period.label,
        "frequency": period_frequency(period),
        "period_start": period.start.isoformat(),
        "period_end": period.end.isoformat(),
        "deadline": period.deadline.isoformat(),
        # closed by its deadline, or by a tick carrying a later time than the batch's clock
        "status": "CLOSED" if kind == "PERIOD_CLOSE" or close_time_ms(period) <= now_ms else "OPEN",
        "value": value,
        "aggregation": indicator.aggregation,
        "unit": indicator.unit,
        "sum_exact": str(agg.total),
        "same_period_last_year": last_year_value,
        "yoy_change_pct": yoy_change_pct(value, last_year_value),
        "contributors": contributors,
        "windows": [],
        "to_date": [],
    }


def time_aggregation(indicator: Indicator) -> str:
    """How an entity's values combine over time: as across regions, but a weighted mean within one
    entity is its mean (one region has one weight)."""
    return "mean" if indicator.aggregation == "weighted_mean" else indicator.aggregation


def period_frequency(period: ReportingPeriod) -> str:
    return frequency_of_label(period.label)


def _to_date(
    indicator: Indicator, state: EntityState, series: str, period: ReportingPeriod, now_ms: int
) -> PeriodToDate:
    agg = state.periods[(series, period.label)]
    assert agg is not None  # noqa: S101 - filtered by the caller
    value = agg.value_by(time_aggregation(indicator))
    last_year = state.periods.get((series, same_period_last_year(period.label)))
    base = last_year.value_by(time_aggregation(indicator)) if last_year is not None else None
    return {
        "frequency": period_frequency(period),
        "period": period.label,
        "status": "CLOSED" if close_time_ms(period) <= now_ms else "OPEN",
        "value": value,
        "count": agg.count,
        "sum": agg.sum,
        "min": agg.low,
        "max": agg.high,
        "same_period_last_year": base,
        "yoy_change_pct": yoy_change_pct(value, base),
    }


def _windows(state: EntityState, series: str) -> list[RollingWindow]:
    out: list[RollingWindow] = []
    latest = state.latest_of(series)
    if latest is None:
        return out
    end_hour = hour_of(latest.last_time)
    end_day = local_date(latest.last_time).toordinal()
    for name, grain, size in ROLLING_WINDOWS:
        if grain == "hour":
            agg = combine(
                a for (s, h), a in state.hours.items() if s == series and end_hour - size < h <= end_hour
            )
        else:
            agg = combine(
                a for (s, d), a in state.days.items() if s == series and end_day - size < d <= end_day
            )
        if agg is not None:
            out.append(
                {
                    "name": name,
                    "count": agg.count,
                    "sum": agg.sum,
                    "mean": agg.mean,
                    "min": agg.low,
                    "max": agg.high,
                }
            )
    return out


def _alert_level(state: EntityState, entity: EntityKey, ctx: Context) -> tuple[int, str]:
    levels_rule = next(
        (
            r
            for r in ctx.rulebook.rules_for(entity.indicator, entity.region, entity.station)
            if r.kind == "levels"
        ),
        None,
    )
    if levels_rule is None:
        return 0, "NONE"
    rule_state = state.rules.get(levels_rule.rule_id)
    level = rule_state.level if rule_state else 0
    return level, levels_rule.levels[level].code if levels_rule.levels else str(level)


def contributions(state: EntityState, touched: Touched) -> list[tuple[str, str | None]]:
    """(series|label, encoded aggregate or None once emptied) of every period a batch changed or
    closed: what the entity contributes to its roll-ups."""
    out: list[tuple[str, str | None]] = []
    for series, label in sorted(touched.periods | touched.closed):
        agg = state.periods.get((series, label))
        out.append((period_field(series, label), None if agg is None else agg.encode()))
    return out
