"""stream_app.validation: one test per rejection reason, plus the accepted path."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stream_app.catalogue import Catalogue, Reporter
from stream_app.codecs import decode_observation
from stream_app.model import Observation, Quality, Rejection
from stream_app.schemas import SchemaRegistry
from stream_app.validation import (
    EARLIEST_EVENT_MS,
    Reasons,
    observation_from_record,
    observation_record,
    validate,
)

Make = Callable[..., dict[str, Any]]
SKEW_MS = 5 * 60_000


def _validate(record: dict[str, Any], catalogue: Catalogue, now_ms: int, topic: str = "MAE") -> Any:
    return validate(record, topic, catalogue, now_ms=now_ms, max_future_skew_ms=SKEW_MS)


def _rejected(result: Any, reason: str) -> Rejection:
    assert isinstance(result, Rejection), f"expected {reason}, got {result!r}"
    assert result.reason == reason
    assert result.message
    return result


def test_valid_record_becomes_an_observation(catalogue: Catalogue, make_record: Make, t0_ms: int) -> None:
    record = make_record(
        revision=2, quality="PROVISIONAL", period="2024-11-01T07", breakdowns={"source": "x"}
    )
    obs = _validate(record, catalogue, now_ms=t0_ms + 120_000)
    assert obs == Observation(
        observation_id=record["observation_id"],
        revision=2,
        reporter="MAE",
        indicator="ENV.AQI",
        region="01",
        station="HN-AQ-HOANKIEM",
        value=87.0,
        unit="index",
        event_time=t0_ms,
        report_time=t0_ms + 60_000,
        quality=Quality.PROVISIONAL,
        period="2024-11-01T07",
        breakdowns={"source": "x"},
    )
    assert obs.entity == "ENV.AQI|01|HN-AQ-HOANKIEM"


def test_decoded_record_with_datetimes_is_accepted(
    registry: SchemaRegistry, catalogue: Catalogue, make_record: Make, t0_ms: int
) -> None:
    decoded = decode_observation(registry, json.dumps(make_record()).encode(), 1 << 20)
    assert isinstance(decoded["event_time"], datetime)
    obs = _validate(decoded, catalogue, now_ms=t0_ms)
    assert isinstance(obs, Observation)
    assert (obs.event_time, obs.report_time) == (t0_ms, t0_ms + 60_000)


@pytest.mark.parametrize(
    "fields",
    [
        {"indicator": "ENV.AQI", "region": "79", "station": "HCM-AQ-Q1", "unit": "index", "value": 0.0},
        {
            "indicator": "ENV.AQI",
            "region": "01",
            "station": "HN-AQ-HOANKIEM",
            "unit": "index",
            "value": 500.0,
        },
        {
            "indicator": "HYD.WATER_LEVEL",
            "region": "01",
            "station": "HN-LONGBIEN",
            "unit": "m",
            "value": -10.0,
        },
        {
            "indicator": "HYD.WATER_LEVEL",
            "region": "01",
            "station": "HN-LONGBIEN",
            "unit": "m",
            "value": 60.0,
        },
    ],
)
def test_values_on_range_bounds_are_accepted(
    catalogue: Catalogue, make_record: Make, t0_ms: int, fields: dict[str, Any]
) -> None:
    value = fields["value"]
    record = make_record(**fields)
    obs = _validate(record, catalogue, now_ms=t0_ms)
    assert isinstance(obs, Observation)
    assert obs.value == value


def test_observation_record_round_trips(catalogue: Catalogue, make_record: Make, t0_ms: int) -> None:
    obs = _validate(make_record(breakdowns={"a": "b"}), catalogue, now_ms=t0_ms)
    assert isinstance(obs, Observation)
    assert observation_from_record(observation_record(obs)) == obs


# --- one test per reason code ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reporter", "topic_reporter"),
    [("GSO", "GSO"), ("GSO", "MAE"), ("MAE", "MOH"), ("mae", "MAE"), ("", "MAE")],
)
def test_unknown_reporter(
    catalogue: Catalogue, make_record: Make, t0_ms: int, reporter: str, topic_reporter: str
) -> None:
    result = _validate(make_record(reporter=reporter), catalogue, t0_ms, topic=topic_reporter)
    _rejected(result, Reasons.UNKNOWN_REPORTER)


def test_known_reporter_on_another_reporters_topic(
    catalogue: Catalogue, make_record: Make, t0_ms: int
) -> None:
    other = Reporter("GSO", "Tổng cục Thống kê", "General Statistics Office", frozenset({"ENV.AQI"}))
    extended = dataclasses.replace(catalogue, reporters={**catalogue.reporters, "GSO": other})
    rejection = _rejected(_validate(make_record(), extended, t0_ms, topic="GSO"), Reasons.UNKNOWN_REPORTER)
    assert "'MAE'" in rejection.message


def test_unknown_indicator(catalogue: Catalogue, make_record: Make, t0_ms: int) -> None:
    rejection = _rejected(
        _validate(make_record(indicator="ENV.PM25"), catalogue, t0_ms), Reasons.UNKNOWN_INDICATOR
    )
    assert "ENV.PM25" in rejection.message


def test_indicator_not_owned(catalogue: Catalogue, make_record: Make, t0_ms: int) -> None:
    gso = Reporter("GSO", "Tổng cục Thống kê", "General Statistics Office", frozenset())
    extended = dataclasses.replace(catalogue, reporters={**catalogue.reporters, "GSO": gso})
    result = _validate(make_record(reporter="GSO"), extended, t0_ms, topic="GSO")
    rejection = _rejected(result, Reasons.NOT_OWNER)
    assert "GSO" in rejection.message
    assert "ENV.AQI" in rejection.message


@pytest.mark.parametrize(
    ("indicator", "unit"), [("ENV.AQI", "µg/m3"), ("ENV.AQI", "m"), ("HYD.WATER_LEVEL", "cm")]
)
def test_unit_mismatch(
    catalogue: Catalogue, make_record: Make, t0_ms: int, indicator: str, unit: str
) -> None:
    station = "HN-LONGBIEN" if indicator == "HYD.WATER_LEVEL" else "HN-AQ-HOANKIEM"
    record = make_record(indicator=indicator, unit=unit, station=station, value=1.0)
    _rejected(_validate(record, catalogue, t0_ms), Reasons.UNIT_MISMATCH)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_value_not_finite(catalogue: Catalogue, make_record: Make, t0_ms: int, value: float) -> None:
    _rejected(_validate(make_record(value=value), catalogue, t0_ms), Reasons.NOT_FINITE)


@pytest.mark.parametrize(
    "fields",
    [
        {"indicator": "ENV.AQI", "unit": "index", "station": "HN-AQ-HOANKIEM", "value": -0.001},
        {"indicator": "ENV.AQI", "unit": "index", "station": "HN-AQ-HOANKIEM", "value": 500.001},
        {"indicator": "HYD.WATER_LEVEL", "unit": "m", "station": "HN-LONGBIEN", "value": -10.5},
        {"indicator": "HYD.WATER_LEVEL", "unit": "m", "station": "HN-LONGBIEN", "value": 1e308},
    ],
)
def test_value_out_of_range(
    catalogue: Catalogue, make_record: Make, t0_ms: int, fields: dict[str, Any]
) -> None:
    record = make_record(**fields)
    _rejected(_validate(record, catalogue, t0_ms), Reasons.OUT_OF_RANGE)


@pytest.mark.parametrize("region", ["99", "1", "", "HN"])
def test_unknown_region(catalogue: Catalogue, make_record: Make, t0_ms: int, region: str) -> None:
    _rejected(_validate(make_record(region=region, station=None), catalogue, t0_ms), Reasons.UNKNOWN_REGION)


@pytest.mark.parametrize(
    ("region", "station"),
    [
        ("01", "HCM-AQ-Q1"),  # a real station, of region 79
        ("79", "HN-AQ-HOANKIEM"),  # a real station, of region 01
        ("01", "HN-NOWHERE"),  # not a station at all
    ],
)
def test_unknown_station(
    catalogue: Catalogue, make_record: Make, t0_ms: int, region: str, station: str
) -> None:
    assert region in catalogue.regions
    _rejected(
        _validate(make_record(region=region, station=station), catalogue, t0_ms), Reasons.UNKNOWN_STATION
    )


def test_event_time_in_future(catalogue: Catalogue, make_record: Make, t0_ms: int) -> None:
    now = t0_ms
    at_limit = _validate(make_record(event_time=now + SKEW_MS), catalogue, now)
    assert isinstance(at_limit, Observation)
    _rejected(_validate(make_record(event_time=now + SKEW_MS + 1), catalogue, now), Reasons.FUTURE_EVENT)
    far = datetime(2100, 1, 1, tzinfo=UTC)
    _rejected(_validate(make_record(event_time=far), catalogue, now), Reasons.FUTURE_EVENT)


def test_event_time_before_2010(catalogue: Catalogue, make_record: Make, t0_ms: int) -> None:
    assert datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=EARLIEST_EVENT_MS) == datetime(
        2010, 1, 1, tzinfo=UTC
    )
    on_first_day = _validate(make_record(event_time=EARLIEST_EVENT_MS), catalogue, t0_ms)
    assert isinstance(on_first_day, Observation)
    _rejected(_validate(make_record(event_time=EARLIEST_EVENT_MS - 1), catalogue, t0_ms), Reasons.TOO_OLD)
    _rejected(_validate(make_record(event_time=0), catalogue, t0_ms), Reasons.TOO_OLD)
    old = datetime(2009, 12, 31, 23, 59, tzinfo=UTC)
    _rejected(_validate(make_record(event_time=old), catalogue, t0_ms), Reasons.TOO_OLD)


def test_millisecond_times_survive_validation(
    registry: SchemaRegistry, catalogue: Catalogue, make_record: Make, t0_ms: int
) -> None:
    # Every millisecond of two seconds, through the decoder (datetimes) and validation.
    for ms in range(t0_ms + 1, t0_ms + 2000, 7):
        decoded = decode_observation(registry, json.dumps(make_record(event_time=ms)).encode(), 1 << 20)
        obs = _validate(decoded, catalogue, now_ms=t0_ms + 10_000)
        assert isinstance(obs, Observation)
        assert obs.event_time == ms


def test_millisecond_times_after_2038_survive_validation(
    registry: SchemaRegistry, catalogue: Catalogue, make_record: Make
) -> None:
    ms = 2_157_739_935_049  # 2038-05-18
    decoded = decode_observation(
        registry, json.dumps(make_record(event_time=ms, report_time=ms)).encode(), 1 << 20
    )
    obs = _validate(decoded, catalogue, now_ms=ms)
    assert isinstance(obs, Observation)
    assert (obs.event_time, obs.report_time) == (ms, ms)


# --- regions across the 2025 reorganisation, stations, reporting periods ------------------------


@pytest.mark.parametrize(
    ("reported", "current"),
    [("30", "31"), ("31", "31"), ("02", "08"), ("35", "37"), ("36", "37"), ("49", "48"), ("01", "01")],
)
def test_pre_2025_province_codes_map_to_todays_unit(
    catalogue: Catalogue, make_record: Make, t0_ms: int, reported: str, current: str
) -> None:
    record = make_record(
        indicator="DIS.LANDSLIDE_SITES", region=reported, station=None, unit="sites", value=3.0
    )
    obs = _validate(record, catalogue, now_ms=t0_ms)
    assert isinstance(obs, Observation)
    assert obs.region == current
    assert obs.entity == f"DIS.LANDSLIDE_SITES|{current}|-"


def test_station_of_a_merged_province_is_checked_against_todays_unit(
    catalogue: Catalogue, make_record: Make, t0_ms: int
) -> None:
    # Trung Hà is in today's Phú Thọ (25); a record keyed by Vĩnh Phúc's old code (26) is the same unit.
    record = make_record(indicator="HYD.WATER_LEVEL", region="26", station="PT-TRUNGHA", unit="m", value=14.0)
    obs = _validate(record, catalogue, now_ms=t0_ms)
    assert isinstance(obs, Observation)
    assert obs.region == "25"


def test_station_level_indicator_without_station_is_rejected(
    catalogue: Catalogue, make_record: Make, t0_ms: int
) -> None:
    result = _validate(make_record(station=None), catalogue, now_ms=t0_ms)
    assert isinstance(result, Rejection)
    assert result.reason == Reasons.STATION_REQUIRED


def test_missing_period_is_derived_from_the_event_time(catalogue: Catalogue, make_record: Make) -> None:
    # 2024-11-14 20:00 UTC is the 15th in Vietnam: the December 2024 Decree 09 period.
    at = int(datetime(2024, 11, 14, 20, tzinfo=UTC).timestamp() * 1000)
    record = make_record(
        indicator="JUS.LEGAL_AID",
        region="01",
        station=None,
        unit="cases",
        value=12.0,
        event_time=at,
        report_time=at,
        reporter="MOJ",
    )
    obs = _validate(record, catalogue, now_ms=at + 1000, topic="MOJ")
    assert isinstance(obs, Observation)
    indicator = catalogue.indicators["JUS.LEGAL_AID"]
    assert obs.period == indicator.period_of(at).label


@pytest.mark.parametrize("period", ["2024-Q3", "2024-11", "2023-Q4", "not-a-period"])
def test_period_that_does_not_fit_the_indicator_is_rejected(
    catalogue: Catalogue, make_record: Make, period: str
) -> None:
    at = int(datetime(2024, 11, 14, 20, tzinfo=UTC).timestamp() * 1000)
    record = make_record(
        indicator="JUS.LEGAL_AID",
        region="01",
        station=None,
        unit="cases",
        value=12.0,
        event_time=at,
        report_time=at,
        reporter="MOJ",
        period=period,
    )
    result = _validate(record, catalogue, now_ms=at + 1000, topic="MOJ")
    assert isinstance(result, Rejection)
    assert result.reason == Reasons.PERIOD_MISMATCH
    assert "expected" in result.message
