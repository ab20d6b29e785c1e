"""stream_app.tools.simulate: the history generator and the live feeds, as pure generators (no Kafka), all
driven by the catalogue."""

from __future__ import annotations

import dataclasses
import io
import itertools
import re
import statistics
from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from stream_app.domain.catalogue import Catalogue, Station
from stream_app.domain.model import Observation, Rejection
from stream_app.domain.validation import CO_REPORTER_BREAKDOWN, Limits, validate
from stream_app.exceptions import ConfigurationError
from stream_app.tools import simulate
from stream_app.tools.rows import Encoded, RowEncoder, iter_csv
from stream_app.tools.simulate import (
    LOCAL_TZ,
    REFORM_DATE,
    flood_level,
    history,
    live_feed,
    smog_aqi,
    write_history,
)
from stream_app.tools.simulation.world import Day, World
from stream_app.wire import codecs
from stream_app.wire.codecs import DecodeError
from stream_app.wire.schemas import SchemaRegistry


def _daily_province(catalogue: Catalogue) -> set[str]:
    return {
        code
        for code, i in catalogue.indicators.items()
        if i.frequency == "daily" and i.region_level == "province"
    }


def _current(catalogue: Catalogue) -> list[str]:
    return sorted(code for code, r in catalogue.regions.items() if r.kind == "current")


def _local(row: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(row["event_time"] / 1000, LOCAL_TZ)


def _alarms(catalogue: Catalogue, station: str) -> list[float]:
    """The water levels (m) from which ``station`` raises an alert (BĐ I, II, III)."""
    water = catalogue.indicators["HYD.WATER_LEVEL"]
    return [lv.lower for lv in catalogue.levels_for(water, station)[water.alert_from_level :]]


# --------------------------------------------------------------------------------------------- contract data


def test_the_simulated_country_is_the_catalogues(catalogue: Catalogue) -> None:
    world = World(catalogue)
    assert [a.code for a in world.areas(legacy=True)] == sorted(catalogue.legacy_regions)
    assert len(world.areas(legacy=True)) == 63
    assert [a.code for a in world.areas(legacy=False)] == _current(catalogue)
    assert len(world.areas(legacy=False)) == 34
    assert world.national == "VN"
    assert world.successor("30") == "31"  # Hải Dương -> Hải Phòng
    assert world.successor("02") == "08"  # Hà Giang -> Tuyên Quang
    assert world.successor("27") == "24"  # Bắc Ninh -> Bắc Ninh (code of Bắc Giang)
    assert world.successor("35") == world.successor("36") == "37"
    assert world.successor("49") == "48"
    for station in catalogue.stations.values():
        assert station.legacy_region is not None, station.code
        assert world.successor(station.legacy_region) == station.region, station.code
    # a merged unit's traits are the sum of its members'
    hai_phong = next(a for a in world.areas(legacy=False) if a.code == "31")
    assert hai_phong.members == ("30", "31")
    assert sum(a.pop_share for a in world.areas(legacy=False)) == pytest.approx(1.0)
    assert simulate.live_reporters(catalogue) == ("MAE", "MPS", "NSMO")


# --------------------------------------------------------------------------------------------- history


def test_history_is_deterministic_whatever_the_range_or_filter(catalogue: Catalogue) -> None:
    first = list(history(catalogue, date(2024, 11, 10), date(2024, 11, 16), seed=3))
    assert first == list(history(catalogue, date(2024, 11, 10), date(2024, 11, 16), seed=3))
    assert first != list(history(catalogue, date(2024, 11, 10), date(2024, 11, 16), seed=4))
    # a day's values depend on the seed and the date only
    later = [r for r in first if _local(r).date() >= date(2024, 11, 14)]
    assert later == list(history(catalogue, date(2024, 11, 14), date(2024, 11, 16), seed=3))
    mps = [r for r in first if r["reporter"] == "MPS"]
    assert mps == list(history(catalogue, date(2024, 11, 10), date(2024, 11, 16), seed=3, reporters=["mps"]))
    assert {r["indicator"] for r in mps} == {"TRF.ACCIDENTS", "TRF.DEATHS"}


def test_history_uses_legacy_codes_before_july_2025_and_current_ones_after(catalogue: Catalogue) -> None:
    rows = list(history(catalogue, date(2025, 6, 30), date(2025, 7, 1)))
    by_day: dict[date, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_day[_local(row).date()].append(row)
    before, after = by_day[date(2025, 6, 30)], by_day[REFORM_DATE]
    legacy, current = sorted(catalogue.legacy_regions), _current(catalogue)
    for indicator in _daily_province(catalogue):
        assert sorted(r["region"] for r in before if r["indicator"] == indicator) == legacy
        assert sorted(r["region"] for r in after if r["indicator"] == indicator) == current
    assert "30" in {r["region"] for r in before}  # Hải Dương, gone after the merger
    assert "30" not in {r["region"] for r in after}
    station_region = {
        (r["station"], day): r["region"] for day, rs in by_day.items() for r in rs if r["station"] is not None
    }
    assert station_region[("AG-TANCHAU", date(2025, 6, 30))] == "89"  # An Giang (legacy)
    assert station_region[("AG-TANCHAU", REFORM_DATE)] == "91"  # An Giang (merged with Kiên Giang)
    assert station_region[("HN-LONGBIEN", date(2025, 6, 30))] == "01"
    assert station_region[("CT-SAL-HAU", date(2025, 6, 30))] == "94"  # Sóc Trăng (legacy)
    assert station_region[("CT-SAL-HAU", REFORM_DATE)] == "92"  # Cần Thơ
    national = {r["region"] for r in rows if catalogue.indicators[r["indicator"]].region_level == "national"}
    assert national == {"VN"}


def test_one_row_per_day_per_daily_indicator_and_entity(catalogue: Catalogue) -> None:
    rows = list(history(catalogue, date(2019, 3, 3), date(2019, 3, 3)))  # a day with no Decree 09 cut-off
    assert all(catalogue.indicators[r["indicator"]].frequency in {"daily", "hourly", "event"} for r in rows)
    per_indicator: dict[str, int] = defaultdict(int)
    for row in rows:
        per_indicator[row["indicator"]] += 1
    for indicator in _daily_province(catalogue):
        assert per_indicator[indicator] == 63
    assert per_indicator["ENV.AQI"] == 6
    assert per_indicator["HYD.WATER_LEVEL"] == 7
    assert per_indicator["HYD.SALINITY_4PPT_KM"] == per_indicator["HYD.SALINITY_MAX"] == 3
    assert per_indicator["PWR.OUTPUT_GWH"] == per_indicator["PWR.PEAK_MW"] == 1
    assert per_indicator["PWR.SOURCE_SHARE"] == 7
    ids = [r["observation_id"] for r in rows]
    assert len(ids) == len(set(ids))
    assert all(_local(r).date() == date(2019, 3, 3) and r["period"] is None for r in rows)


def test_periodic_rows_fall_on_decree_09_cutoffs(catalogue: Catalogue) -> None:
    rows = list(
        history(
            catalogue,
            date(2024, 10, 1),
            date(2024, 12, 31),
            reporters=["MOF", "MOJ", "MOC", "VSS", "MOH", "MOET"],
        )
    )
    indicators = catalogue.indicators
    periodic = [r for r in rows if indicators[r["indicator"]].frequency not in {"daily", "event"}]
    assert periodic
    assert {_local(r).day for r in periodic} == {14}
    labels: dict[str, set[str]] = defaultdict(set)
    for row in periodic:
        labels[indicators[row["indicator"]].frequency].add(row["period"])
        # the label is the indicator's own period (its catalogue calendar) holding the event time
        assert row["period"] == indicators[row["indicator"]].period_of(row["event_time"]).label
    assert labels == {
        "monthly": {"2024-10", "2024-11", "2024-12"},
        "quarterly": {"2024-Q4"},
        "annual": {"2024"},
    }
    monthly = [r for r in periodic if r["indicator"] == "FIN.CPI"]
    assert len(monthly) == 3 * 63
    assert {r["indicator"] for r in periodic if r["period"] == "2024"} >= {
        "FIN.PUBLIC_DEBT_GDP",
        "HLT.DOCTORS_PER_10K",
        "EDU.ENROLMENT_RATE",
    }


def test_decree_09_schedule(catalogue: Catalogue) -> None:
    world = World(catalogue)

    def day(when: date) -> Day:
        return Day.of(world, when, 7)

    assert day(date(2024, 11, 14)).period("monthly").label == "2024-11"
    assert day(date(2024, 11, 15)).period("monthly").label == "2024-12"
    assert day(date(2024, 12, 15)).period("monthly").label == "2025-01"
    assert day(date(2024, 12, 15)).period("annual").label == "2025"
    assert day(date(2024, 12, 14)).period("annual").label == "2024"
    assert day(date(2024, 9, 14)).period("quarterly").label == "2024-Q3"
    assert day(date(2024, 9, 15)).period("quarterly").label == "2024-Q4"
    assert day(date(2024, 9, 15)).closes("daily")
    assert day(date(2024, 6, 14)).closes("quarterly")
    assert not day(date(2024, 5, 14)).closes("quarterly")
    assert day(date(2024, 12, 14)).closes("annual")
    assert not day(date(2024, 12, 15)).closes("monthly")
    cutoffs = {
        frequency: [
            d for d in (date(2024, 1, 1) + timedelta(n) for n in range(366)) if day(d).closes(frequency)
        ]
        for frequency in ("monthly", "quarterly", "annual")
    }
    assert cutoffs["monthly"] == [date(2024, m, 14) for m in range(1, 13)]
    assert cutoffs["quarterly"] == [date(2024, m, 14) for m in (3, 6, 9, 12)]
    assert cutoffs["annual"] == [date(2024, 12, 14)]


def test_report_times_follow_the_catalogue_deadlines(catalogue: Catalogue) -> None:
    rows = list(history(catalogue, date(2024, 11, 14), date(2024, 11, 14), reporters=["MOF", "VSS", "MPS"]))

    def reported(indicator: str) -> set[str]:
        times = {r["report_time"] for r in rows if r["indicator"] == indicator}
        return {datetime.fromtimestamp(t / 1000, LOCAL_TZ).isoformat() for t in times}

    assert reported("TRF.DEATHS") == {"2024-11-15T08:00:00+07:00"}  # daily: the next morning
    # a Decree 09 month ends on the 14th: reported on the 20th, before the 25th deadline
    assert catalogue.indicators["SSI.HEALTH"].calendar == "decree09"
    assert reported("SSI.HEALTH") == {"2024-11-20T09:00:00+07:00"}
    # a calendar month ends on the 30th: reported on the 20th of the next month, never before it ends
    assert catalogue.indicators["FIN.CPI"].calendar == "calendar_month"
    assert reported("FIN.CPI") == {"2024-12-20T09:00:00+07:00"}
    assert all(r["report_time"] > r["event_time"] for r in rows)


def test_values_are_plausible(catalogue: Catalogue) -> None:
    rows = list(
        history(catalogue, date(2024, 1, 1), date(2024, 12, 31), reporters=["MPS", "MAE", "EVN", "NSMO"])
    )
    totals: dict[tuple[str, int], float] = defaultdict(float)
    for row in rows:
        totals[(row["indicator"], row["event_time"])] += row["value"]
    deaths = [v for (i, _), v in totals.items() if i == "TRF.DEATHS"]
    accidents = [v for (i, _), v in totals.items() if i == "TRF.ACCIDENTS"]
    assert 27 <= statistics.mean(deaths) <= 34
    assert 58 <= statistics.mean(accidents) <= 72
    assert all(abs(v - 100.0) < 0.01 for (i, _), v in totals.items() if i == "PWR.SOURCE_SHARE")
    summer = [
        r["value"] for r in rows if r["indicator"] == "PWR.OUTPUT_GWH" and _local(r).month in (5, 6, 7, 8)
    ]
    assert 840 <= statistics.mean(summer) <= 900
    assert all(550 <= v <= 1050 for v in totals_of(rows, "PWR.OUTPUT_GWH"))  # Tết: lower
    aqi = [r for r in rows if r["indicator"] == "ENV.AQI"]
    assert all(20 <= r["value"] <= 200 for r in aqi)
    hanoi = [r for r in aqi if r["station"] == "HN-AQ-HOANKIEM"]
    winter = statistics.mean(r["value"] for r in hanoi if _local(r).month in (12, 1))
    summer_aqi = statistics.mean(r["value"] for r in hanoi if _local(r).month in (6, 7))
    assert winter > summer_aqi + 40  # smog season in the north
    assert max(r["value"] for r in hanoi) > 150
    saigon = [r["value"] for r in aqi if r["station"] == "HCM-AQ-Q1"]
    assert max(saigon) < max(r["value"] for r in hanoi)
    fire = {r["value"] for r in rows if r["indicator"] == "DIS.FOREST_FIRE"}
    assert fire <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert 4.0 in fire
    salt = [r for r in rows if r["indicator"] == "HYD.SALINITY_4PPT_KM"]
    march = statistics.mean(r["value"] for r in salt if _local(r).month == 3)
    september = statistics.mean(r["value"] for r in salt if _local(r).month == 9)
    assert march > 3 * september
    assert {r["reporter"] for r in rows if r["indicator"].startswith("PWR.")} == {"EVN", "NSMO"}


def totals_of(rows: list[dict[str, Any]], indicator: str) -> list[float]:
    return [r["value"] for r in rows if r["indicator"] == indicator]


def test_history_rows_pass_the_catalogue_validation(catalogue: Catalogue) -> None:
    now_ms = int(datetime.now(LOCAL_TZ).timestamp() * 1000)
    for start in (date(2010, 1, 1), date(2020, 3, 10), date(2025, 6, 28)):
        for row in history(catalogue, start, start + timedelta(days=6)):
            result = validate(row, row["reporter"], catalogue, now_ms, Limits())
            assert isinstance(result, Observation), (row, result)
            # the simulated reporter is the authority: its values are the official series
            assert CO_REPORTER_BREAKDOWN not in result.breakdowns, row


def test_csv_history_reads_back_through_produce(registry: SchemaRegistry, catalogue: Catalogue) -> None:
    rows = list(history(catalogue, date(2024, 6, 1), date(2024, 6, 2), reporters=["EVN"]))
    text = io.StringIO()
    assert write_history(rows, text, "csv", ["source"]) == len(rows)
    header = text.getvalue().splitlines()[0]
    assert header.endswith(",period,breakdown.source")
    assert "2024-06-01T12:00:00+07:00" in text.getvalue()
    text.seek(0)
    items = list(iter_csv(text, RowEncoder(registry.latest("observation"), "EVN")))
    assert all(isinstance(i, Encoded) for i in items)
    decoded = [codecs.decode(registry, "observation", i.value) for i in items if isinstance(i, Encoded)]
    assert [d["observation_id"] for d in decoded] == [r["observation_id"] for r in rows]
    assert [d["breakdowns"] for d in decoded] == [r["breakdowns"] for r in rows]
    assert [d["value"] for d in decoded] == [r["value"] for r in rows]


def test_history_range_and_reporters_are_checked(tmp_path: Any, catalogue: Catalogue) -> None:
    assert simulate.parse_range("2010:2011") == (date(2010, 1, 1), date(2011, 12, 31))
    assert simulate.parse_range("2024-02-01:2024-02-29") == (date(2024, 2, 1), date(2024, 2, 29))
    for bad in ("2010", "2009-12-31:2010-01-05", "2012:2011", "2010-13-01:2011"):
        with pytest.raises(ConfigurationError, match="--history"):
            simulate.parse_range(bad)
    with pytest.raises(ConfigurationError, match="before today"):
        simulate.generate_history_file(catalogue, "2024:2999", tmp_path / "x.jsonl")
    with pytest.raises(ConfigurationError, match="unknown reporter"):
        simulate.generate_history_file(catalogue, "2024:2024", tmp_path / "x.jsonl", reporters=["XYZ"])
    with pytest.raises(ConfigurationError, match="--format"):
        simulate.generate_history_file(catalogue, "2024:2024", tmp_path / "x.txt")
    out = tmp_path / "mps.jsonl"
    written = simulate.generate_history_file(catalogue, "2024-01-01:2024-01-02", out, reporters=["MPS"])
    assert written == 2 * 2 * 63
    assert out.read_text(encoding="utf-8").count("\n") == 252


# --------------------------------------------------------------------------------------------- live


def _crossings(values: list[float], threshold: float) -> tuple[int, int]:
    """(upward, downward) crossings of ``threshold``."""
    ups = sum(a < threshold <= b for a, b in itertools.pairwise(values))
    downs = sum(a >= threshold > b for a, b in itertools.pairwise(values))
    return ups, downs


def test_scenario_curves_cross_the_regulation_thresholds(catalogue: Catalogue) -> None:
    aqi = [smog_aqi(step) for step in range(61)]
    for threshold in (151, 201):  # Xấu, Rất xấu (Decision 1459/QĐ-TCMT)
        assert _crossings(aqi, threshold) == (1, 1)
    assert max(aqi) < 301
    assert aqi[0] < 101
    alarms = _alarms(catalogue, "HN-LONGBIEN")
    assert alarms == [9.5, 10.5, 11.5]
    water = [flood_level(step, alarms) for step in range(81)]
    for alarm in (9.5, 10.5, 11.5):  # BĐ I, II, III at Long Biên
        assert _crossings(water, alarm) == (1, 1)
    assert water[0] < 9.5


def _values(
    registry: SchemaRegistry,
    catalogue: Catalogue,
    scenario: str,
    n: int,
    reporters: list[str] | None = None,
) -> dict[tuple[str, str], list[float]]:
    out: dict[tuple[str, str], list[float]] = defaultdict(list)
    feed = live_feed(
        catalogue,
        registry.latest("observation"),
        scenario=scenario,
        reporters=reporters,
        invalid_share=0.0,
        seed=1,
    )
    for record in itertools.islice(feed, n):
        decoded = codecs.decode_observation(registry, record.value, 1 << 20)
        out[(decoded["indicator"], decoded["station"] or decoded["region"])].append(decoded["value"])
    return out


def test_smog_scenario_takes_hanoi_through_bad_and_very_bad(
    registry: SchemaRegistry, catalogue: Catalogue
) -> None:
    values = _values(registry, catalogue, "smog", 600, ["MAE"])
    hanoi = values[("ENV.AQI", "HN-AQ-HOANKIEM")]
    assert len(hanoi) >= 60
    assert _crossings(hanoi, 151)[0] >= 1
    assert _crossings(hanoi, 201)[0] >= 1
    assert all(
        v < 101 for (i, e), vs in values.items() for v in vs if i == "ENV.AQI" and e != "HN-AQ-HOANKIEM"
    )
    assert max(values[("HYD.WATER_LEVEL", "HN-LONGBIEN")], default=0) < 9.5  # no flood in this scenario


def test_flood_scenario_takes_long_bien_through_alarm_levels_1_2_3(
    registry: SchemaRegistry, catalogue: Catalogue
) -> None:
    values = _values(registry, catalogue, "flood", 800, ["MAE"])
    long_bien = values[("HYD.WATER_LEVEL", "HN-LONGBIEN")]
    assert len(long_bien) >= 80
    for threshold in (9.5, 10.5, 11.5):
        assert _crossings(long_bien, threshold)[0] >= 1
    assert max(values[("ENV.AQI", "HN-AQ-HOANKIEM")], default=0) < 101


def test_normal_scenario_crosses_nothing(registry: SchemaRegistry, catalogue: Catalogue) -> None:
    values = _values(registry, catalogue, "normal", 3000)
    assert {i for i, _ in values} >= {
        "ENV.AQI",
        "HYD.WATER_LEVEL",
        "HYD.SALINITY_4PPT_KM",
        "HYD.SALINITY_MAX",
        "DIS.FOREST_FIRE",
        "TRF.ACCIDENTS",
        "TRF.DEATHS",
        "PWR.OUTPUT_GWH",
        "PWR.PEAK_MW",
    }
    for (indicator, entity), vs in values.items():
        if indicator == "ENV.AQI":
            assert max(vs) < 101, entity
        if indicator == "HYD.WATER_LEVEL":
            assert max(vs) < _alarms(catalogue, entity)[0], entity
        if indicator == "PWR.OUTPUT_GWH":
            assert min(vs) >= 850
            assert max(vs) <= 890


def test_live_feed_goes_to_each_reporters_topic_with_wall_clock_times(
    registry: SchemaRegistry, catalogue: Catalogue
) -> None:
    now = 1_767_225_600.0  # a fixed "wall clock"
    feed = live_feed(catalogue, registry.latest("observation"), invalid_share=0.0, seed=5, clock=lambda: now)
    records = list(itertools.islice(feed, 400))
    assert {r.reporter for r in records} == {"MAE", "MPS", "NSMO"}
    for record in records:
        decoded = codecs.decode_observation(registry, record.value, 1 << 20)
        assert decoded["reporter"] == record.reporter
        assert decoded["event_time"].timestamp() == now
        assert record.key == (decoded["station"] or decoded["region"]).encode()
        result = validate(decoded, record.reporter, catalogue, int(now * 1000), Limits())
        assert not isinstance(result, Rejection), (decoded, result)
    only_mps = list(
        itertools.islice(live_feed(catalogue, registry.latest("observation"), reporters=["mps"]), 50)
    )
    assert {r.reporter for r in only_mps} == {"MPS"}


def test_invalid_records_are_refused_for_the_intended_reasons(
    registry: SchemaRegistry, catalogue: Catalogue
) -> None:
    reasons = set()
    now_ms = 1_767_225_600_000
    feed = live_feed(
        catalogue, registry.latest("observation"), invalid_share=1.0, clock=lambda: now_ms / 1000
    )
    for record in itertools.islice(feed, 200):
        assert not record.valid
        try:
            decoded = codecs.decode_observation(registry, record.value, 1 << 20)
        except DecodeError as exc:
            reasons.add(exc.reason)
            continue
        result = validate(decoded, record.reporter, catalogue, now_ms, Limits())
        assert isinstance(result, Rejection)
        reasons.add(result.reason)
    assert reasons == {"undecodable", "unit_mismatch", "value_out_of_range", "indicator_not_owned"}


def test_live_feed_arguments_are_checked(registry: SchemaRegistry, catalogue: Catalogue) -> None:
    with pytest.raises(ConfigurationError, match="scenario"):
        next(live_feed(catalogue, registry.latest("observation"), scenario="tsunami"))
    with pytest.raises(ConfigurationError, match="no live feed"):
        next(live_feed(catalogue, registry.latest("observation"), scenario="normal", reporters=["MOF"]))


# --------------------------------------------------------------------------------------------- the catalogue


def _without(mapping: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k != key}


def _edit_indicator(catalogue: Catalogue, code: str, **changes: Any) -> Catalogue:
    edited = dataclasses.replace(catalogue.indicators[code], **changes)
    return dataclasses.replace(catalogue, indicators={**catalogue.indicators, code: edited})


def _edit_station(catalogue: Catalogue, code: str, **changes: Any) -> Catalogue:
    edited = dataclasses.replace(catalogue.stations[code], **changes)
    return dataclasses.replace(catalogue, stations={**catalogue.stations, code: edited})


def test_rows_carry_what_the_catalogue_says(registry: SchemaRegistry, catalogue: Catalogue) -> None:
    edited = _edit_indicator(catalogue, "TRF.DEATHS", unit="people", owner="NTSC")
    rows = list(history(edited, date(2024, 3, 3), date(2024, 3, 3), reporters=["NTSC"]))
    assert {(r["indicator"], r["unit"], r["reporter"]) for r in rows} == {("TRF.DEATHS", "people", "NTSC")}
    # a station's pre-2025 province
    moved = _edit_station(catalogue, "CT-SAL-HAU", legacy_region="93")  # Hậu Giang, also merged into 92
    rows = list(history(moved, date(2025, 6, 30), date(2025, 7, 1), reporters=["MAE"]))
    regions = {(_local(r).date(), r["region"]) for r in rows if r["station"] == "CT-SAL-HAU"}
    assert regions == {(date(2025, 6, 30), "93"), (REFORM_DATE, "92")}
    # a station's alarm levels: the flood scenario crosses whatever they are
    levels = catalogue.stations["HN-LONGBIEN"].levels
    higher = (levels[0], *(dataclasses.replace(lv, lower=lv.lower + 2.5) for lv in levels[1:]))
    raised = _edit_station(catalogue, "HN-LONGBIEN", levels=higher)
    long_bien = _values(registry, raised, "flood", 800, ["MAE"])[("HYD.WATER_LEVEL", "HN-LONGBIEN")]
    for threshold in (12.0, 13.0, 14.0):
        assert _crossings(long_bien, threshold)[0] >= 1


_AIR_STATION = Station("HN-AQ-NEW", "new air-quality station", "01", "air_quality", (), None, "01")


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        pytest.param(
            lambda c: dataclasses.replace(c, stations=_without(c.stations, "HN-BATHA")),
            r"station\(s\) \['HN-BATHA'\] are not in the catalogue",
            id="station-gone",
        ),
        pytest.param(
            lambda c: dataclasses.replace(c, stations={**c.stations, "HN-AQ-NEW": _AIR_STATION}),
            r"no simulation data for air_quality station\(s\) \['HN-AQ-NEW'\]",
            id="station-without-simulation-data",
        ),
        pytest.param(
            lambda c: _edit_station(c, "HUE-AQ-PHUHOI", kind="salinity"),
            r"station\(s\) \['HUE-AQ-PHUHOI'\] are not air_quality stations",
            id="station-of-another-kind",
        ),
        pytest.param(
            lambda c: dataclasses.replace(c, legacy_regions=_without(c.legacy_regions, "30")),
            r"province traits \(TRAITS\): legacy province\(s\) \['30'\] are not in the catalogue",
            id="legacy-province-gone",
        ),
    ],
)
def test_simulation_data_that_disagrees_with_the_catalogue_is_an_error(
    registry: SchemaRegistry, catalogue: Catalogue, edit: Any, problem: str
) -> None:
    edited = edit(catalogue)
    with pytest.raises(ConfigurationError, match=problem):
        history(edited, date(2024, 1, 1), date(2024, 1, 1))
    with pytest.raises(ConfigurationError, match=problem):
        live_feed(edited, registry.latest("observation"))


def test_history_reporters_follow_the_catalogues_authority(catalogue: Catalogue) -> None:
    # The catalogue says EVN is official for the power indicators until 2024-07-01 (local): the
    # simulator takes who reports from there, so it cannot disagree with it.
    rows = list(history(catalogue, date(2024, 6, 30), date(2024, 7, 1), reporters=["EVN", "NSMO"]))
    by_day = {(_local(r).date(), r["indicator"], r["reporter"]) for r in rows}
    power = ("PWR.OUTPUT_GWH", "PWR.PEAK_MW", "PWR.SOURCE_SHARE")
    assert by_day == {
        (day, code, who)
        for day, who in ((date(2024, 6, 30), "EVN"), (date(2024, 7, 1), "NSMO"))
        for code in power
    }
    for row in rows:
        assert row["reporter"] == catalogue.authority(row["indicator"], row["region"], row["event_time"])
    # without an authority entry, the owner reports throughout
    owner_only = _edit_indicator(catalogue, "PWR.PEAK_MW", authority=())
    rows = list(history(owner_only, date(2024, 6, 30), date(2024, 6, 30), reporters=["EVN", "NSMO"]))
    assert {r["reporter"] for r in rows if r["indicator"] == "PWR.PEAK_MW"} == {"NSMO"}


def test_history_models_must_agree_with_the_catalogue(catalogue: Catalogue) -> None:
    day = date(2024, 1, 14)  # a monthly cut-off: every model runs
    quarterly = _edit_indicator(catalogue, "FIN.CPI", frequency="quarterly")
    with pytest.raises(
        ConfigurationError, match="_finance_monthly makes monthly values, but the catalogue has"
    ):
        history(quarterly, day, day)
    unknown = dataclasses.replace(catalogue, indicators=_without(catalogue.indicators, "SSI.SOCIAL"))
    with pytest.raises(ConfigurationError, match=re.escape("indicator 'SSI.SOCIAL' is not in the catalogue")):
        history(unknown, day, day)
    national = _edit_indicator(catalogue, "TRF.DEATHS", region_level="national")
    with pytest.raises(
        ConfigurationError, match=re.escape("TRF.DEATHS is reported per national in the catalogue")
    ):
        list(history(national, day, day))
    no_breakdown = _edit_indicator(catalogue, "PWR.SOURCE_SHARE", breakdowns=())
    with pytest.raises(ConfigurationError, match=r"PWR.SOURCE_SHARE has no breakdown\(s\) \['source'\]"):
        list(history(no_breakdown, day, day))
    no_hydro = _edit_indicator(
        catalogue, "PWR.SOURCE_SHARE", breakdown_values={"source": frozenset({"coal", "gas"})}
    )
    with pytest.raises(ConfigurationError, match=r"PWR.SOURCE_SHARE breakdown 'source' has no value"):
        list(history(no_hydro, day, day))


def test_live_feeds_must_agree_with_the_catalogue(registry: SchemaRegistry, catalogue: Catalogue) -> None:
    schema = registry.latest("observation")
    levels = catalogue.stations["AG-TANCHAU"].levels
    lower = (levels[0], *(dataclasses.replace(lv, lower=lv.lower - 1.0) for lv in levels[1:]))
    with pytest.raises(
        ConfigurationError, match=re.escape("normal HYD.WATER_LEVEL at AG-TANCHAU reaches 3.0")
    ):
        live_feed(_edit_station(catalogue, "AG-TANCHAU", levels=lower), schema)
    no_alarms = _edit_station(catalogue, "HN-LONGBIEN", levels=(), levels_indicator=None)
    with pytest.raises(
        ConfigurationError, match=re.escape("HN-LONGBIEN has no HYD.WATER_LEVEL alarm levels")
    ):
        live_feed(no_alarms, schema)
    moved = _edit_indicator(catalogue, "ENV.AQI", owner="NCDR", reporters=frozenset({"NCDR"}))
    with pytest.raises(ConfigurationError, match="owned by the demo's reporter MAE"):
        live_feed(moved, schema)
