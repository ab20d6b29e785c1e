"""stream_app.domain.validation: one test per rejection reason, plus the accepted path."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stream_app.domain.catalogue import Authority, Catalogue, Reporter
from stream_app.domain.model import Observation, Quality, Rejection
from stream_app.domain.reasons import Reason
from stream_app.domain.rollup import NATIONAL, targets
from stream_app.domain.validation import (
    CO_REPORTER_BREAKDOWN,
    EARLIEST_EVENT_MS,
    Limits,
    observation_from_record,
    observation_record,
    validate,
)
from stream_app.settings import Settings
from stream_app.wire.codecs import decode_observation
from stream_app.wire.schemas import SchemaRegistry

Make = Callable[..., dict[str, Any]]
SKEW_MS = 5 * 60_000
LIMITS = Limits(max_future_skew_ms=SKEW_MS)


def _validate(
    record: dict[str, Any], catalogue: Catalogue, now_ms: int, topic: str = "MAE", limits: Limits = LIMITS
) -> Any:
    return validate(record, topic, catalogue, now_ms=now_ms, limits=limits)


def _rejected(result: Any, reason: str) -> Rejection:
    assert isinstance(result, Rejection), f"expected {reason}, got {result!r}"
    assert result.reason == reason
    assert result.message
    return result


# Records of other indicators than make_record's ENV.AQI at Hoàn Kiếm (fields to override).
_SOURCE_SHARE: dict[str, Any] = {
    "indicator": "PWR.SOURCE_SHARE",
    "reporter": "NSMO",
    "region": "VN",
    "station": None,
    "unit": "%",
    "value": 30.0,
}
_LANDSLIDES: dict[str, Any] = {
    "indicator": "DIS.LANDSLIDE_SITES",
    "region": "01",
    "station": None,
    "unit": "sites",
    "value": 3.0,
}


def test_valid_record_becomes_an_observation(catalogue: Catalogue, make_record: Make, t0_ms: int) -> None:
    record = make_record(revision=2, quality="PROVISIONAL", period="2024-11-01T07")
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
        breakdowns={},
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
    record = make_record(**_SOURCE_SHARE, breakdowns={"source": "hydro"})
    record |= {"report_ref": "123/BC-NSMO", "source_system": "SCADA"}
    obs = _validate(record, catalogue, now_ms=t0_ms, topic="NSMO")
    assert isinstance(obs, Observation)
    assert (obs.breakdowns, obs.report_ref) == ({"source": "hydro"}, "123/BC-NSMO")
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
    _rejected(result, Reason.UNKNOWN_REPORTER)


def test_known_reporter_on_another_reporters_topic(
    catalogue: Catalogue, make_record: Make, t0_ms: int
) -> None:
    other = Reporter("GSO", "Tổng cục Thống kê", "General Statistics Office", frozenset({"ENV.AQI"}))
    extended = dataclasses.replace(catalogue, reporters={**catalogue.reporters, "GSO": other})
    rejection = _rejected(_validate(make_record(), extended, t0_ms, topic="GSO"), Reason.UNKNOWN_REPORTER)
    assert "'MAE'" in rejection.message


def test_unknown_indicator(catalogue: Catalogue, make_record: Make, t0_ms: int) -> None:
    rejection = _rejected(
        _validate(make_record(indicator="ENV.PM25"), catalogue, t0_ms), Reason.UNKNOWN_INDICATOR
    )
    assert "ENV.PM25" in rejection.message


def test_indicator_not_owned(catalogue: Catalogue, make_record: Make, t0_ms: int) -> None:
    gso = Reporter("GSO", "Tổng cục Thống kê", "General Statistics Office", frozenset())
    extended = dataclasses.replace(catalogue, reporters={**catalogue.reporters, "GSO": gso})
    result = _validate(make_record(reporter="GSO"), extended, t0_ms, topic="GSO")
    rejection = _rejected(result, Reason.INDICATOR_NOT_OWNED)
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
    _rejected(_validate(record, catalogue, t0_ms), Reason.UNIT_MISMATCH)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_value_not_finite(catalogue: Catalogue, make_record: Make, t0_ms: int, value: float) -> None:
    _rejected(_validate(make_record(value=value), catalogue, t0_ms), Reason.VALUE_NOT_FINITE)


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
    _rejected(_validate(record, catalogue, t0_ms), Reason.VALUE_OUT_OF_RANGE)


@pytest.mark.parametrize("region", ["99", "1", "", "HN"])
def test_unknown_region(catalogue: Catalogue, make_record: Make, t0_ms: int, region: str) -> None:
    _rejected(_validate(make_record(region=region, station=None), catalogue, t0_ms), Reason.UNKNOWN_REGION)


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
        _validate(make_record(region=region, station=station), catalogue, t0_ms), Reason.UNKNOWN_STATION
    )


def test_event_time_in_future(catalogue: Catalogue, make_record: Make, t0_ms: int) -> None:
    now = t0_ms
    at_limit = _validate(make_record(event_time=now + SKEW_MS), catalogue, now)
    assert isinstance(at_limit, Observation)
    _rejected(
        _validate(make_record(event_time=now + SKEW_MS + 1), catalogue, now), Reason.EVENT_TIME_IN_FUTURE
    )
    far = datetime(2100, 1, 1, tzinfo=UTC)
    _rejected(_validate(make_record(event_time=far), catalogue, now), Reason.EVENT_TIME_IN_FUTURE)


def test_event_time_before_2010(catalogue: Catalogue, make_record: Make, t0_ms: int) -> None:
    assert datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=EARLIEST_EVENT_MS) == datetime(
        2010, 1, 1, tzinfo=UTC
    )
    on_first_day = _validate(make_record(event_time=EARLIEST_EVENT_MS), catalogue, t0_ms)
    assert isinstance(on_first_day, Observation)
    _rejected(
        _validate(make_record(event_time=EARLIEST_EVENT_MS - 1), catalogue, t0_ms),
        Reason.EVENT_TIME_BEFORE_2010,
    )
    _rejected(_validate(make_record(event_time=0), catalogue, t0_ms), Reason.EVENT_TIME_BEFORE_2010)
    old = datetime(2009, 12, 31, 23, 59, tzinfo=UTC)
    _rejected(_validate(make_record(event_time=old), catalogue, t0_ms), Reason.EVENT_TIME_BEFORE_2010)


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
    assert result.reason == Reason.STATION_REQUIRED


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
    assert result.reason == Reason.PERIOD_INCONSISTENT
    assert "expected" in result.message


# --- limits: every field a reporter makes up is bounded --------------------------------------------


def test_limits_default_to_the_settings_defaults() -> None:
    assert Limits.from_settings(Settings.model_construct()) == Limits()
    configured = Settings.model_construct(
        max_future_skew_s=1.5,
        observation_id_max_length=40,
        breakdowns_max=2,
        breakdown_value_max_length=10,
        text_max_length=20,
    )
    assert Limits.from_settings(configured) == Limits(1500, 40, 2, 10, 20)


@pytest.mark.parametrize(
    "observation_id",
    [
        "mae-aq-hoankiem-20241101T00",
        "MAE:ENV.AQI:01:-:2024-01:hydro",  # the history simulator's
        "MAE-HN-AQ-HOANKIEM-ENV.AQI-1700000000000-3",  # the live simulator's
        "0a._:@/+-Z",
        "x" * 128,
        "7",
    ],
)
def test_observation_ids_within_the_charset_and_length_are_accepted(
    catalogue: Catalogue, make_record: Make, t0_ms: int, observation_id: str
) -> None:
    obs = _validate(make_record(observation_id=observation_id), catalogue, t0_ms)
    assert isinstance(obs, Observation)
    assert obs.observation_id == observation_id


@pytest.mark.parametrize(
    "observation_id",
    [
        "",
        "x" * 129,
        "-leading-dash",
        ".hidden",
        "with space",
        "a|b",
        "a,b",
        "tỉnh-01",
        "line\n",
        "tab\t",
        "a#b",
    ],
)
def test_observation_id_invalid(
    catalogue: Catalogue, make_record: Make, t0_ms: int, observation_id: str
) -> None:
    _rejected(
        _validate(make_record(observation_id=observation_id), catalogue, t0_ms),
        Reason.OBSERVATION_ID_INVALID,
    )


def test_observation_id_length_follows_the_limit(catalogue: Catalogue, make_record: Make, t0_ms: int) -> None:
    short = Limits(observation_id_max_length=8)
    assert isinstance(
        _validate(make_record(observation_id="a" * 8), catalogue, t0_ms, limits=short), Observation
    )
    rejection = _rejected(
        _validate(make_record(observation_id="a" * 9), catalogue, t0_ms, limits=short),
        Reason.OBSERVATION_ID_INVALID,
    )
    assert "1..8" in rejection.message


def test_too_many_breakdowns(catalogue: Catalogue, make_record: Make, t0_ms: int) -> None:
    five = {"source": "hydro", "a": "1", "b": "2", "c": "3", "d": "4"}
    record = make_record(**_SOURCE_SHARE, breakdowns=five)
    _rejected(_validate(record, catalogue, t0_ms, topic="NSMO"), Reason.TOO_MANY_BREAKDOWNS)
    one = make_record(**_SOURCE_SHARE, breakdowns={"source": "hydro"})
    _rejected(
        _validate(one, catalogue, t0_ms, topic="NSMO", limits=Limits(breakdowns_max=0)),
        Reason.TOO_MANY_BREAKDOWNS,
    )
    assert isinstance(
        _validate(one, catalogue, t0_ms, topic="NSMO", limits=Limits(breakdowns_max=1)), Observation
    )


@pytest.mark.parametrize(
    ("fields", "breakdowns"),
    [
        ({}, {"source": "hydro"}),  # ENV.AQI declares no breakdown
        (_SOURCE_SHARE, {"fuel": "hydro"}),
        (_SOURCE_SHARE, {"source": "hydro", "tỉnh": "Hà Nội"}),
        (_SOURCE_SHARE, {"reporter": "EVN"}),  # reserved: a reporter cannot claim another's series
        (_SOURCE_SHARE, {"x" * 10_000: "hydro"}),
    ],
)
def test_unknown_breakdown(
    catalogue: Catalogue, make_record: Make, t0_ms: int, fields: dict[str, Any], breakdowns: dict[str, str]
) -> None:
    record = make_record(**fields, breakdowns=breakdowns)
    rejection = _rejected(
        _validate(record, catalogue, t0_ms, topic=record["reporter"]), Reason.UNKNOWN_BREAKDOWN
    )
    assert len(rejection.message) < 300


@pytest.mark.parametrize("value", ["nuclear", "Hydro", "", "hydro ", "hydro\n", "x" * 65])
def test_breakdown_value_not_declared_is_invalid(
    catalogue: Catalogue, make_record: Make, t0_ms: int, value: str
) -> None:
    record = make_record(**_SOURCE_SHARE, breakdowns={"source": value})
    rejection = _rejected(_validate(record, catalogue, t0_ms, topic="NSMO"), Reason.BREAKDOWN_VALUE_INVALID)
    assert "'hydro'" in rejection.message  # the message lists the declared values


@pytest.mark.parametrize("value", ["hydro", "coal", "gas", "wind", "solar", "import", "other"])
def test_declared_breakdown_values_are_accepted(
    catalogue: Catalogue, make_record: Make, t0_ms: int, value: str
) -> None:
    record = make_record(**_SOURCE_SHARE, breakdowns={"source": value})
    obs = _validate(record, catalogue, t0_ms, topic="NSMO")
    assert isinstance(obs, Observation)
    assert obs.breakdowns == {"source": value}


def _without_declared_values(catalogue: Catalogue) -> Catalogue:
    share = dataclasses.replace(catalogue.indicators["PWR.SOURCE_SHARE"], breakdown_values={})
    return dataclasses.replace(catalogue, indicators={**catalogue.indicators, share.code: share})


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("nuclear", True),
        ("Thủy điện nhỏ", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("", False),
        ("a\x00b", False),
        ("a\nb", False),
        ("\u200b", False),  # zero-width space: not printable
    ],
)
def test_breakdown_without_declared_values_takes_any_bounded_printable_value(
    catalogue: Catalogue, make_record: Make, t0_ms: int, value: str, accepted: bool
) -> None:
    record = make_record(**_SOURCE_SHARE, breakdowns={"source": value})
    result = _validate(record, _without_declared_values(catalogue), t0_ms, topic="NSMO")
    if accepted:
        assert isinstance(result, Observation)
    else:
        _rejected(result, Reason.BREAKDOWN_VALUE_INVALID)


@pytest.mark.parametrize("field", ["report_ref", "source_system"])
def test_text_too_long(catalogue: Catalogue, make_record: Make, t0_ms: int, field: str) -> None:
    at_limit = make_record() | {field: "x" * 256}
    assert isinstance(_validate(at_limit, catalogue, t0_ms), Observation)
    rejection = _rejected(
        _validate(make_record() | {field: "x" * 257}, catalogue, t0_ms), Reason.TEXT_TOO_LONG
    )
    assert field in rejection.message
    short = Limits(text_max_length=16)
    _rejected(
        _validate(make_record() | {field: "x" * 17}, catalogue, t0_ms, limits=short), Reason.TEXT_TOO_LONG
    )


def test_report_time_invalid(catalogue: Catalogue, make_record: Make, t0_ms: int) -> None:
    now = t0_ms
    for report_time in (EARLIEST_EVENT_MS, now, now + SKEW_MS):
        ok = _validate(make_record(event_time=EARLIEST_EVENT_MS, report_time=report_time), catalogue, now)
        assert isinstance(ok, Observation), report_time
    for report_time in (EARLIEST_EVENT_MS - 1, 0, -1, now + SKEW_MS + 1, 4_102_444_800_000):
        record = make_record(report_time=report_time)
        _rejected(_validate(record, catalogue, now), Reason.REPORT_TIME_INVALID)


def test_refused_values_are_quoted_bounded(catalogue: Catalogue, make_record: Make, t0_ms: int) -> None:
    huge = "X" * 100_000
    cases = [
        (make_record(indicator=huge), Reason.UNKNOWN_INDICATOR),
        (make_record(unit=huge), Reason.UNIT_MISMATCH),
        (make_record(observation_id=huge), Reason.OBSERVATION_ID_INVALID),
        (make_record(region=huge), Reason.UNKNOWN_REGION),
        (make_record(station=huge), Reason.UNKNOWN_STATION),
        (make_record(period=huge), Reason.PERIOD_INCONSISTENT),
    ]
    for record, reason in cases:
        rejection = _rejected(_validate(record, catalogue, t0_ms), reason)
        assert len(rejection.message) < 400, reason
        assert "100000 characters" in rejection.message, reason


# --- scopes: national, province, station of the indicator's kind ------------------------------------


_NATIONAL: dict[str, Any] = {**_SOURCE_SHARE, "indicator": "PWR.OUTPUT_GWH", "unit": "GWh", "value": 900.0}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        # national: "VN" only
        ({**_NATIONAL, "region": "01"}, Reason.REGION_NOT_ALLOWED),
        ({**_NATIONAL, "region": "30"}, Reason.REGION_NOT_ALLOWED),  # a legacy province
        ({**_NATIONAL, "station": "HN-LONGBIEN"}, Reason.STATION_NOT_ALLOWED),
        ({**_NATIONAL, "region": "01", "station": "HN-LONGBIEN"}, Reason.REGION_NOT_ALLOWED),
        # province: a current or legacy province, never "VN", no station
        ({**_LANDSLIDES, "region": "VN"}, Reason.REGION_NOT_ALLOWED),
        ({**_LANDSLIDES, "station": "HN-LONGBIEN"}, Reason.STATION_NOT_ALLOWED),
        ({**_LANDSLIDES, "station": "HN-NOWHERE"}, Reason.STATION_NOT_ALLOWED),
        ({**_LANDSLIDES, "region": "30", "station": "HP-AQ-LECHAN"}, Reason.STATION_NOT_ALLOWED),
        # station: a station of the indicator's kind, in the record's province
        ({"region": "VN", "station": "HN-AQ-HOANKIEM"}, Reason.REGION_NOT_ALLOWED),
        ({"region": "VN", "station": None}, Reason.REGION_NOT_ALLOWED),
        ({"station": "HN-LONGBIEN"}, Reason.STATION_WRONG_KIND),  # hydrological, not air quality
        ({"station": "AP-NOIBAI"}, Reason.STATION_WRONG_KIND),
        (
            {"indicator": "HYD.WATER_LEVEL", "unit": "m", "value": 5.0, "station": "HN-AQ-HOANKIEM"},
            Reason.STATION_WRONG_KIND,
        ),
        (
            {
                "indicator": "HYD.SALINITY_MAX",
                "unit": "permille",
                "value": 5.0,
                "region": "91",
                "station": "AG-TANCHAU",
            },
            Reason.STATION_WRONG_KIND,  # a hydrological station, not a salinity one
        ),
    ],
)
def test_records_outside_the_indicators_scope_are_refused(
    catalogue: Catalogue, make_record: Make, t0_ms: int, fields: dict[str, Any], reason: str
) -> None:
    record = make_record(**fields)
    _rejected(_validate(record, catalogue, t0_ms, topic=record["reporter"]), reason)


@pytest.mark.parametrize(
    ("fields", "entity"),
    [
        (_NATIONAL, "PWR.OUTPUT_GWH|VN|-"),
        (_LANDSLIDES, "DIS.LANDSLIDE_SITES|01|-"),
        ({**_LANDSLIDES, "region": "30"}, "DIS.LANDSLIDE_SITES|31|-"),
        ({"region": "31", "station": "HP-AQ-LECHAN"}, "ENV.AQI|31|HP-AQ-LECHAN"),
        (
            {
                "indicator": "HYD.SALINITY_MAX",
                "unit": "permille",
                "value": 5.0,
                "region": "83",
                "station": "VL-SAL-TIEN",
            },
            "HYD.SALINITY_MAX|86|VL-SAL-TIEN",  # Bến Tre's old code, today Vĩnh Long
        ),
        (
            {
                "indicator": "TRN.AIR_PASSENGERS",
                "reporter": "MOC",
                "unit": "persons",
                "value": 1e6,
                "station": "AP-NOIBAI",
            },
            "TRN.AIR_PASSENGERS|01|AP-NOIBAI",
        ),
    ],
)
def test_records_within_the_indicators_scope_are_accepted(
    catalogue: Catalogue, make_record: Make, t0_ms: int, fields: dict[str, Any], entity: str
) -> None:
    record = make_record(**fields)
    obs = _validate(record, catalogue, t0_ms, topic=record["reporter"])
    assert isinstance(obs, Observation)
    assert obs.entity == entity


def test_no_accepted_observation_has_a_rollup_targets_entity(
    catalogue: Catalogue, make_record: Make, t0_ms: int
) -> None:
    """Roll-ups are kept under entity keys of their own: the nation ("VN", no station) and, for
    station indicators, each province without a station. Validation never accepts an observation
    with one of those keys, for any indicator, whatever region and station it claims."""
    regions = sorted(catalogue.regions)
    stations: list[str | None] = [None, *sorted(catalogue.stations)]
    current = {code for code, r in catalogue.regions.items() if r.kind == "current"}
    for indicator in catalogue.indicators.values():
        accepted: set[tuple[str, str | None]] = set()
        for region in regions:
            for station in stations:
                record = make_record(
                    observation_id="o-1",
                    reporter=indicator.owner,
                    indicator=indicator.code,
                    region=region,
                    station=station,
                    unit=indicator.unit,
                    value=indicator.min_value,
                )
                obs = _validate(record, catalogue, t0_ms, topic=indicator.owner)
                if isinstance(obs, Observation):
                    accepted.add((obs.region, obs.station))
        assert accepted, indicator.code
        # a national indicator's own observations are the nation's figure: nothing rolls up into it
        rollups: set[tuple[str, str | None]] = set()
        if indicator.region_level != "national":
            rollups.add((NATIONAL, None))
        if indicator.region_level == "station":
            rollups |= {(code, None) for code in current}
        for region, station in accepted:
            assert {(target, None) for target in targets(indicator, region, station)} <= rollups
        assert accepted.isdisjoint(rollups), indicator.code


# --- co-reporters: their values form a series of their own ------------------------------------------

# 2024-06-30 23:00 and 2024-07-01 00:30 local (UTC+7): EVN's last hour as the grid's authority, and
# NSMO's first half hour.
BEFORE_HANDOVER = int(datetime(2024, 6, 30, 16, tzinfo=UTC).timestamp() * 1000)
AFTER_HANDOVER = int(datetime(2024, 6, 30, 17, 30, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("reporter", "at", "series"),
    [
        ("EVN", BEFORE_HANDOVER, {}),
        ("NSMO", BEFORE_HANDOVER, {CO_REPORTER_BREAKDOWN: "NSMO"}),
        ("EVN", AFTER_HANDOVER, {CO_REPORTER_BREAKDOWN: "EVN"}),
        ("NSMO", AFTER_HANDOVER, {}),
    ],
)
def test_a_co_reporters_values_get_a_series_of_their_own(
    catalogue: Catalogue, make_record: Make, reporter: str, at: int, series: dict[str, str]
) -> None:
    record = make_record(**{**_NATIONAL, "reporter": reporter}, event_time=at, report_time=at)
    obs = _validate(record, catalogue, at + 1000, topic=reporter)
    assert isinstance(obs, Observation)
    assert obs.breakdowns == series
    assert obs.entity == "PWR.OUTPUT_GWH|VN|-"  # the same entity, another series
    assert CO_REPORTER_BREAKDOWN not in record["breakdowns"]  # the record itself is left alone


def test_a_co_reporters_parts_keep_their_breakdowns(catalogue: Catalogue, make_record: Make) -> None:
    record = make_record(
        **{**_SOURCE_SHARE, "reporter": "EVN"},
        breakdowns={"source": "hydro"},
        event_time=AFTER_HANDOVER,
        report_time=AFTER_HANDOVER,
    )
    # the breakdown limit counts what the reporter sent, not the series validation adds
    obs = _validate(record, catalogue, AFTER_HANDOVER, topic="EVN", limits=Limits(breakdowns_max=1))
    assert isinstance(obs, Observation)
    assert obs.breakdowns == {"source": "hydro", CO_REPORTER_BREAKDOWN: "EVN"}


@pytest.mark.parametrize(("reporter", "series"), [("MPS", {}), ("NTSC", {CO_REPORTER_BREAKDOWN: "NTSC"})])
def test_the_owner_is_the_authority_without_authority_entries(
    catalogue: Catalogue, make_record: Make, t0_ms: int, reporter: str, series: dict[str, str]
) -> None:
    record = make_record(**{**_LANDSLIDES, "indicator": "TRF.DEATHS", "unit": "persons"}, reporter=reporter)
    obs = _validate(record, catalogue, t0_ms, topic=reporter)
    assert isinstance(obs, Observation)
    assert obs.breakdowns == series


def test_authority_is_looked_up_for_todays_unit(catalogue: Catalogue, make_record: Make, t0_ms: int) -> None:
    # NTSC official for Hải Phòng (31) only: a record under Hải Dương's old code (30) is in Hải Phòng.
    deaths = dataclasses.replace(
        catalogue.indicators["TRF.DEATHS"], authority=(Authority("NTSC", regions=frozenset({"31"})),)
    )
    edited = dataclasses.replace(catalogue, indicators={**catalogue.indicators, deaths.code: deaths})
    fields = {**_LANDSLIDES, "indicator": "TRF.DEATHS", "unit": "persons", "reporter": "NTSC"}
    for region, series in (("30", {}), ("31", {}), ("01", {CO_REPORTER_BREAKDOWN: "NTSC"})):
        obs = _validate(make_record(**{**fields, "region": region}), edited, t0_ms, topic="NTSC")
        assert isinstance(obs, Observation)
        assert obs.breakdowns == series, region
    mps = _validate(make_record(**{**fields, "reporter": "MPS", "region": "30"}), edited, t0_ms, topic="MPS")
    assert isinstance(mps, Observation)
    assert mps.breakdowns == {CO_REPORTER_BREAKDOWN: "MPS"}
