"""Validation of decoded observations against the catalogue: a pure function, no I/O.

Every field a reporter sends is bounded here (identifiers, breakdowns, free text, times) and every
observation is checked against its indicator's scope (national, province or station of the right
kind), so one bad record is refused with a reason code rather than stored, keyed or published.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from stream_app.domain.calendar import period_matches
from stream_app.domain.catalogue import Catalogue, Indicator
from stream_app.domain.clock import ms_of
from stream_app.domain.model import CO_REPORTER_BREAKDOWN as _CO_REPORTER_BREAKDOWN
from stream_app.domain.model import Observation, Quality, Rejection
from stream_app.domain.reasons import Reason

if TYPE_CHECKING:
    from stream_app.settings import Settings

EARLIEST_EVENT_MS = ms_of(datetime(2010, 1, 1, tzinfo=UTC))
# The breakdown added to a co-reporter's observations: its own series, never mixed with the
# official one (the name is the model's; the catalogue reserves it).
CO_REPORTER_BREAKDOWN: Final = _CO_REPORTER_BREAKDOWN
_OBSERVATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]*")
_SHOWN_MAX = 64  # characters of a refused value quoted in a dead letter's message


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what a reporter may send; each violation is refused with its own reason code."""

    max_future_skew_ms: int = 300_000  # how far ahead of now an event or report time may be
    observation_id_max_length: int = 128
    breakdowns_max: int = 4  # breakdowns the reporter sent (the co-reporter one is not counted)
    breakdown_value_max_length: int = 64
    text_max_length: int = 256  # report_ref, source_system

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits a worker is configured with."""
        return cls(
            max_future_skew_ms=round(settings.max_future_skew_s * 1000),
            observation_id_max_length=settings.observation_id_max_length,
            breakdowns_max=settings.breakdowns_max,
            breakdown_value_max_length=settings.breakdown_value_max_length,
            text_max_length=settings.text_max_length,
        )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def _millis(value: Any) -> int:
    # Integer arithmetic: float seconds * 1000 loses a millisecond for times after 2038.
    if isinstance(value, datetime):
        return (value - _EPOCH) // _ONE_MS
    return int(value)


def _shown(value: Any) -> str:
    """A refused value as quoted in a message: bounded, whatever the reporter sent."""
    if isinstance(value, str) and len(value) > _SHOWN_MAX:
        return f"{value[:_SHOWN_MAX]!r}... ({len(value)} characters)"
    return repr(value)


def validate(
    record: dict[str, Any],
    topic_reporter: str,
    catalogue: Catalogue,
    now_ms: int,
    limits: Limits,
) -> Observation | Rejection:
    """Check one decoded record; return the observation, or why it is refused.

    ``topic_reporter`` is the reporter that owns the input topic: a record may only carry
    indicators that reporter is allowed to report, whatever its own ``reporter`` field says.
    The observation's region is today's provincial unit, even when the record used a pre-2025 code.
    A reporter that is not the indicator's authority for that region and time (a co-reporter) gets
    the breakdown ``reporter=<code>`` added, so its values form a series of their own.
    """
    checked = _check_what(record, topic_reporter, catalogue)
    if isinstance(checked, Rejection):
        return checked
    indicator = checked
    bounded = _check_bounds(record, indicator, limits)
    if bounded is not None:
        return bounded
    region = _check_where(record, indicator, catalogue)
    if isinstance(region, Rejection):
        return region
    event_time = _millis(record["event_time"])
    report_time = _millis(record["report_time"])
    period = _check_when(record, indicator, event_time, report_time, now_ms=now_ms, limits=limits)
    if isinstance(period, Rejection):
        return period
    reporter = record["reporter"]
    breakdowns = dict(record.get("breakdowns") or {})
    if reporter != indicator.authority_at(region, event_time):
        breakdowns[CO_REPORTER_BREAKDOWN] = reporter
    return Observation(
        observation_id=record["observation_id"],
        revision=record["revision"],
        reporter=reporter,
        indicator=indicator.code,
        region=region,
        station=record.get("station"),
        value=float(record["value"]),
        unit=record["unit"],
        event_time=event_time,
        report_time=report_time,
        quality=Quality(record["quality"]),
        period=period,
        breakdowns=breakdowns,
        report_ref=record.get("report_ref"),
        source_system=record.get("source_system"),
    )


def _check_what(record: dict[str, Any], topic_reporter: str, catalogue: Catalogue) -> Indicator | Rejection:
    """Reporter, indicator, ownership, unit and value."""
    reporter_code = record["reporter"]
    reporter = catalogue.reporters.get(reporter_code)
    if reporter is None or reporter_code != topic_reporter:
        return Rejection(
            Reason.UNKNOWN_REPORTER,
            f"reporter {_shown(reporter_code)} may not write to {topic_reporter!r}'s topic",
        )
    indicator = catalogue.indicators.get(record["indicator"])
    if indicator is None:
        return Rejection(
            Reason.UNKNOWN_INDICATOR, f"indicator {_shown(record['indicator'])} is not in the catalogue"
        )
    if indicator.code not in reporter.indicators:
        return Rejection(
            Reason.INDICATOR_NOT_OWNED,
            f"{reporter.code} does not report {indicator.code} (owned by {indicator.owner})",
        )
    if record["unit"] != indicator.unit:
        return Rejection(
            Reason.UNIT_MISMATCH,
            f"{indicator.code} is reported in {indicator.unit!r}, got {_shown(record['unit'])}",
        )
    value = record["value"]
    if not math.isfinite(value):
        return Rejection(Reason.VALUE_NOT_FINITE, f"value {value!r} is not a finite number")
    if not indicator.min_value <= value <= indicator.max_value:
        return Rejection(
            Reason.VALUE_OUT_OF_RANGE,
            f"{indicator.code} value {value} outside [{indicator.min_value}, {indicator.max_value}]",
        )
    return indicator


def _check_bounds(record: dict[str, Any], indicator: Indicator, limits: Limits) -> Rejection | None:
    """Observation id, breakdowns and free text: what a reporter may make up, bounded."""
    observation_id = record["observation_id"]
    too_long = len(observation_id) > limits.observation_id_max_length
    if too_long or not _OBSERVATION_ID.fullmatch(observation_id):
        return Rejection(
            Reason.OBSERVATION_ID_INVALID,
            f"observation id {_shown(observation_id)} is not 1..{limits.observation_id_max_length} of "
            "A-Z a-z 0-9 . _ : @ / + - (starting with a letter or digit)",
        )
    breakdowns = record.get("breakdowns")
    if breakdowns:
        rejection = _check_breakdowns(breakdowns, indicator, limits)
        if rejection is not None:
            return rejection
    for name in ("report_ref", "source_system"):
        text = record.get(name)
        if text is not None and len(text) > limits.text_max_length:
            return Rejection(
                Reason.TEXT_TOO_LONG,
                f"{name} is {len(text)} characters long, more than {limits.text_max_length}",
            )
    return None


def _check_breakdowns(breakdowns: dict[str, str], indicator: Indicator, limits: Limits) -> Rejection | None:
    if len(breakdowns) > limits.breakdowns_max:
        return Rejection(
            Reason.TOO_MANY_BREAKDOWNS,
            f"{len(breakdowns)} breakdowns, more than {limits.breakdowns_max}",
        )
    for name, value in breakdowns.items():
        if name not in indicator.breakdowns:
            return Rejection(
                Reason.UNKNOWN_BREAKDOWN,
                f"{indicator.code} has no breakdown {_shown(name)} (it has {list(indicator.breakdowns)})",
            )
        allowed = indicator.breakdown_values.get(name)
        if (
            not value
            or len(value) > limits.breakdown_value_max_length
            or not value.isprintable()
            or (allowed is not None and value not in allowed)
        ):
            expected = (
                f"one of {sorted(allowed)}"
                if allowed is not None
                else f"1..{limits.breakdown_value_max_length} printable characters"
            )
            return Rejection(
                Reason.BREAKDOWN_VALUE_INVALID,
                f"{indicator.code} breakdown {name!r} is {_shown(value)}; expected {expected}",
            )
    return None


def _check_where(record: dict[str, Any], indicator: Indicator, catalogue: Catalogue) -> str | Rejection:
    """Region (mapped to today's unit) and station, within the indicator's scope; returns the
    current region code.

    National indicators are reported for "VN" alone, province ones for a province (a current or
    pre-2025 code, never "VN"), station ones for a station of the indicator's kind in the record's
    province. So no accepted observation has the entity of a roll-up (a province without a station
    for a station indicator, "VN" for the others).
    """
    # History since 2010 is keyed by the 63 pre-2025 province codes: it rolls up into today's unit.
    reported_region, station = record["region"], record.get("station")
    region = catalogue.current_region(reported_region)
    if region is None:
        return Rejection(
            Reason.UNKNOWN_REGION, f"region {_shown(reported_region)} is not a known province code"
        )
    level = indicator.region_level
    if (catalogue.regions[region].kind == "national") != (level == "national"):
        wanted = '"VN"' if level == "national" else "a province"
        return Rejection(
            Reason.REGION_NOT_ALLOWED,
            f"{indicator.code} is reported per {level}, for {wanted}; got region {reported_region!r}",
        )
    if level != "station":
        if station is not None:
            return Rejection(
                Reason.STATION_NOT_ALLOWED,
                f"{indicator.code} is reported per {level}, not per station; got station {_shown(station)}",
            )
        return region
    if station is None:
        return Rejection(
            Reason.STATION_REQUIRED, f"{indicator.code} is reported per station; no station given"
        )
    known = catalogue.stations.get(station)
    if known is None or known.region != region:
        return Rejection(
            Reason.UNKNOWN_STATION,
            f"station {_shown(station)} is not a station of region {reported_region!r}",
        )
    if known.kind != indicator.station_kind:
        return Rejection(
            Reason.STATION_WRONG_KIND,
            f"{indicator.code} is reported by {indicator.station_kind} stations; {station} is {known.kind}",
        )
    return region


def _check_when(
    record: dict[str, Any],
    indicator: Indicator,
    event_time: int,
    report_time: int,
    *,
    now_ms: int,
    limits: Limits,
) -> str | Rejection:
    """Event and report times, and reporting period; returns the period's canonical label."""
    refused = times_error(event_time, report_time, now_ms=now_ms, limits=limits)
    if refused is not None:
        return refused
    # The event time places an observation in exactly one reporting period: a missing label is
    # derived; a given one must be that period, in the indicator's own calendar and frequency.
    expected = indicator.period_of(event_time).label
    period = record.get("period")
    if period and not period_matches(period, indicator.frequency, indicator.calendar, event_time):
        return Rejection(
            Reason.PERIOD_INCONSISTENT,
            f"period {_shown(period)} does not fit {indicator.code} ({indicator.frequency}, "
            f"{indicator.calendar} calendar) at its event time: expected {expected!r}",
        )
    return expected


def times_error(event_time: int, report_time: int, *, now_ms: int, limits: Limits) -> Rejection | None:
    """Why an observation's event or report time is out of bounds (before 2010, or ahead of ``now_ms`` by
    more than ``limits.max_future_skew_ms``), or None. The one time check of an observation: the intake
    validates with it, and the stateful step re-checks what it reads from the internal topic with it."""
    max_future_skew_ms = limits.max_future_skew_ms
    latest = now_ms + max_future_skew_ms
    if event_time > latest:
        return Rejection(
            Reason.EVENT_TIME_IN_FUTURE,
            f"event time {event_time} is ahead of now ({now_ms}) by more than {max_future_skew_ms} ms",
        )
    if event_time < EARLIEST_EVENT_MS:
        return Rejection(Reason.EVENT_TIME_BEFORE_2010, f"event time {event_time} is before 2010-01-01")
    if not EARLIEST_EVENT_MS <= report_time <= latest:
        return Rejection(
            Reason.REPORT_TIME_INVALID,
            f"report time {report_time} is before 2010-01-01 or ahead of now ({now_ms}) by more than "
            f"{max_future_skew_ms} ms",
        )
    return None


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
