"""How the query API's answers look as JSON: aggregates, periods, alert summaries, levels and
breakdowns turned into plain dicts."""

from __future__ import annotations

from typing import Any

from stream_app.domain.aggregates import (
    Agg,
    breakdowns_of,
    close_time_ms,
    same_period_last_year,
    yoy_change_pct,
)
from stream_app.domain.calendar import ReportingPeriod
from stream_app.domain.catalogue import Indicator, Level
from stream_app.domain.clock import local_iso
from stream_app.domain.consolidation import time_aggregation


def agg_view(agg: Agg, indicator: Indicator, *, last_year: float | None = None) -> dict[str, Any]:
    """An aggregate as JSON: value by the indicator's semantics, count, exact sum, min, max, latest."""
    value = agg.value_by(time_aggregation(indicator))
    return {
        "value": value,
        "count": agg.count,
        "sum": agg.sum,
        "sum_exact": str(agg.total),
        "mean": agg.mean,
        "min": agg.low,
        "max": agg.high,
        "latest_value": agg.last_value,
        "latest_event_time": local_iso(agg.last_time),
        "quality": agg.quality,
        "same_period_last_year": last_year,
        "yoy_change_pct": yoy_change_pct(value, last_year),
    }


def period_view(period: ReportingPeriod, now_ms: int) -> dict[str, Any]:
    return {
        "period": period.label,
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
        "deadline": period.deadline.isoformat(),
        "status": "CLOSED" if close_time_ms(period) <= now_ms else "OPEN",
    }


def history_view(
    period: ReportingPeriod, this: Agg | None, last: Agg | None, indicator: Indicator, now_ms: int
) -> dict[str, Any]:
    """One period of a series' last year beside the same period the year before: the value by the
    indicator's semantics (None where nothing was reported), how many values made it, its quality."""
    value = _value(this, indicator) if this is not None else None
    base = _value(last, indicator) if last is not None else None
    return {
        **period_view(period, now_ms),
        "value": value,
        "count": this.count if this is not None else 0,
        "quality": this.quality if this is not None else None,
        "last_year_period": same_period_last_year(period.label),
        "same_period_last_year": base,
        "yoy_change_pct": yoy_change_pct(value, base) if value is not None else None,
    }


def _alert_summary(alert: dict[str, Any]) -> dict[str, Any]:
    return {
        key: alert.get(key)
        for key in (
            "alert_key", "alert_id", "rule", "indicator", "station", "level", "level_code",
            "level_name_vi", "level_name_en", "colour", "value", "event_time",
        )
    }  # fmt: skip


def _levels_view(levels: tuple[Level, ...]) -> list[dict[str, Any]]:
    return [
        {
            "index": lv.index,
            "code": lv.code,
            "lower": lv.lower,
            "name_vi": lv.name_vi,
            "name_en": lv.name_en,
            "colour": lv.colour,
        }
        for lv in levels
    ]


def _value(agg: Agg, indicator: Indicator) -> float:
    return agg.value_by(time_aggregation(indicator))


def _breakdowns(series: str) -> dict[str, str]:
    return breakdowns_of(series)
