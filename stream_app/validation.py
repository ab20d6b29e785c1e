"""Validation of decoded observations against the catalogue: a pure function, no I/O."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from stream_app.calendar import period_matches
from stream_app.catalogue import Catalogue, Indicator
from stream_app.model import Observation, Quality, Rejection

EARLIEST_EVENT_MS = int(datetime(2010, 1, 1, tzinfo=UTC).timestamp() * 1000)


class Reasons:
    """Dead-letter reason codes of validation (decoding has its own in :mod:`stream_app.codecs`)."""

    UNKNOWN_REPORTER = "unknown_reporter"
    UNKNOWN_INDICATOR = "unknown_indicator"
    NOT_OWNER = "indicator_not_owned"
    UNIT_MISMATCH = "unit_mismatch"
    NOT_FINITE = "value_not_finite"
    OUT_OF_RANGE = "value_out_of_range"
    UNKNOWN_REGION = "unknown_region"
    UNKNOWN_STATION = "unknown_station"
    FUTURE_EVENT = "event_time_in_future"
    TOO_OLD = "event_time_before_2010"
    STATION_REQUIRED = "station_required"
    PERIOD_MISMATCH = "period_inconsistent"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def _millis(value: Any) -> int:
    # Integer arithmetic: float seconds * 1000 loses a millisecond for times after 2038.
    if isinstance(value, datetime):
        return (value - _EPOCH) // _ONE_MS
    return int(value)


def validate(
    record: dict[str, Any],
    topic_reporter: str,
    catalogue: Catalogue,
    now_ms: int,
    max_future_skew_ms: int,
) -> Observation | Rejection:
    """Check one decoded record; return the observation, or why it is refused.

    ``topic_reporter`` is the reporter that owns the input topic: a record may only carry
    indicators that reporter is allowed to report, whatever its own ``reporter`` field says.
    The observation's region is today's provincial unit, even when the record used a pre-2025 code.
    """
    checked = _check_what(record, topic_reporter, catalogue)
    if isinstance(checked, Rejection):
        return checked
    indicator = checked
    region = _check_where(record, indicator, catalogue)
    if isinstance(region, Rejection):
        return region
    event_time = _millis(record["event_time"])
    period = _check_when(record, indicator, event_time, now_ms, max_future_skew_ms)
    if isinstance(period, Rejection):
        return period
    return Observation(
        observation_id=record["observation_id"],
        revision=record["revision"],
        reporter=record["reporter"],
        indicator=indicator.code,
        region=region,
        station=record.get("station"),
        value=float(record["value"]),
        unit=record["unit"],
        event_time=event_time,
        report_time=_millis(record["report_time"]),
        quality=Quality(record["quality"]),
        period=period,
        breakdowns=dict(record.get("breakdowns") or {}),
        report_ref=record.get("report_ref"),
        source_system=record.get("source_system"),
    )


def _check_what(record: dict[str, Any], topic_reporter: str, catalogue: Catalogue) -> Indicator | Rejection:
    """Reporter, indicator, ownership, unit and value."""
    reporter_code = record["reporter"]
    reporter = catalogue.reporters.get(reporter_code)
    if reporter is None or reporter_code != topic_reporter:
        return Rejection(
            Reasons.UNKNOWN_REPORTER,
            f"reporter {reporter_code!r} may not write to {topic_reporter!r}'s topic",
        )
    indicator = catalogue.indicators.get(record["indicator"])
    if indicator is None:
        return Rejection(
            Reasons.UNKNOWN_INDICATOR, f"indicator {record['indicator']!r} is not in the catalogue"
        )
    if indicator.code not in reporter.indicators:
        return Rejection(
            Reasons.NOT_OWNER,
            f"{reporter.code} does not report {indicator.code} (owned by {indicator.owner})",
        )
    if record["unit"] != indicator.unit:
        return Rejection(
            Reasons.UNIT_MISMATCH,
            f"{indicator.code} is reported in {indicator.unit!r}, got {record['unit']!r}",
        )
    value = record["value"]
    if not math.isfinite(value):
        return Rejection(Reasons.NOT_FINITE, f"value {value!r} is not a finite number")
    if not indicator.min_value <= value <= indicator.max_value:
        return Rejection(
            Reasons.OUT_OF_RANGE,
            f"{indicator.code} value {value} outside [{indicator.min_value}, {indicator.max_value}]",
        )
    return indicator


def _check_where(record: dict[str, Any], indicator: Indicator, catalogue: Catalogue) -> str | Rejection:
    """Region (mapped to today's unit) and station; returns the current region code."""
    # History since 2010 is keyed by the 63 pre-2025 province codes: it rolls up into today's unit.
    reported_region, station = record["region"], record.get("station")
    region = catalogue.current_region(reported_region)
    if region is None:
        return Rejection(Reasons.UNKNOWN_REGION, f"region {reported_region!r} is not a known province code")
    if station is not None:
        known = catalogue.stations.get(station)
        if known is None or known.region != region:
            return Rejection(
                Reasons.UNKNOWN_STATION, f"station {station!r} is not a station of region {reported_region!r}"
            )
    elif indicator.region_level == "station":
        return Rejection(
            Reasons.STATION_REQUIRED, f"{indicator.code} is reported per station; no station given"
        )
    return region


def _check_when(
    record: dict[str, Any], indicator: Indicator, event_time: int, now_ms: int, max_future_skew_ms: int
) -> str | Rejection:
    """Event time and reporting period; returns the period's canonical label."""
    if event_time > now_ms + max_future_skew_ms:
        return Rejection(
            Reasons.FUTURE_EVENT,
            f"event time {event_time} is ahead of now ({now_ms}) by more than {max_future_skew_ms} ms",
        )
    if event_time < EARLIEST_EVENT_MS:
        return Rejection(Reasons.TOO_OLD, f"event time {event_time} is before 2010-01-01")
    # The event time places an observation in exactly one reporting period: a missing label is
    # derived; a given one must be that period, in the indicator's own calendar and frequency.
    expected = indicator.period_of(event_time).label
    period = record.get("period")
    if period and not period_matches(period, indicator.frequency, indicator.calendar, event_time):
        return Rejection(
            Reasons.PERIOD_MISMATCH,
            f"period {period!r} does not fit {indicator.code} ({indicator.frequency}, {indicator.calendar} "
            f"calendar) at its event time: expected {expected!r}",
        )
    return expected


def observation_record(obs: Observation) -> dict[str, Any]:
    """The Avro record of a validated observation (for the internal re-keyed topic)."""
    return {
        "observation_id": obs.observation_id,
        "revision": obs.revision,
        "reporter": obs.reporter,
        "indicator": obs.indicator,
        "region": obs.region,
        "station": obs.station,
        "value": obs.value,
        "unit": obs.unit,
        "event_time": obs.event_time,
        "report_time": obs.report_time,
        "quality": obs.quality.value,
        "period": obs.period,
        "breakdowns": obs.breakdowns,
        "report_ref": obs.report_ref,
        "source_system": obs.source_system,
    }


def observation_from_record(record: dict[str, Any]) -> Observation:
    """Rebuild an already-validated observation from its Avro record."""
    return Observation(
        observation_id=record["observation_id"],
        revision=record["revision"],
        reporter=record["reporter"],
        indicator=record["indicator"],
        region=record["region"],
        station=record.get("station"),
        value=record["value"],
        unit=record["unit"],
        event_time=_millis(record["event_time"]),
        report_time=_millis(record["report_time"]),
        quality=Quality(record["quality"]),
        period=record.get("period"),
        breakdowns=dict(record.get("breakdowns") or {}),
        report_ref=record.get("report_ref"),
        source_system=record.get("source_system"),
    )
