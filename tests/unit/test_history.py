"""A series' last year against the year before (``GET /api/v1/history``, the province panel's charts):
which periods make a year, which frequency a chart is drawn in, and the read model's answer from the
state (the in-memory twin of Redis)."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import pytest

from stream_app.api.read_model import BadRequest, NotFound, ReadModel
from stream_app.domain.aggregates import Agg, chart_frequency
from stream_app.domain.alerting import load_rules
from stream_app.domain.calendar import PERIODS_PER_YEAR, periods_up_to
from stream_app.domain.catalogue import Catalogue
from stream_app.domain.model import period_field
from stream_app.screen.server import question
from stream_app.settings import Settings
from stream_app.state.keys import Keys
from stream_app.state.memory import MemoryStateStore

LONG_BIEN = "HN-LONGBIEN"


def _ms(year: int, month: int, day: int, hour: int = 5) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp() * 1000)


def test_a_year_of_periods_ends_with_the_one_holding_now_and_has_no_gap() -> None:
    # Decree 09: 20 August is in September's period (15/08 .. 14/09)
    months = periods_up_to("monthly", "decree09", _ms(2025, 8, 20), 12)
    assert [p.label for p in months] == [f"2024-{m:02d}" for m in (10, 11, 12)] + [
        f"2025-{m:02d}" for m in range(1, 10)
    ]
    assert all(a.end_ms == b.start_ms for a, b in pairwise(months))
    days = periods_up_to("daily", "calendar_month", _ms(2025, 3, 1), PERIODS_PER_YEAR["daily"])
    assert (len(days), days[0].label, days[-1].label) == (365, "2024-03-02", "2025-03-01")
    quarters = periods_up_to("quarterly", "calendar_month", _ms(2025, 8, 20), 4)
    assert [p.label for p in quarters] == ["2024-Q4", "2025-Q1", "2025-Q2", "2025-Q3"]


def test_a_chart_is_drawn_in_months_for_what_is_reported_daily_or_more_often() -> None:
    assert [chart_frequency(f) for f in ("hourly", "event", "daily", "monthly", "quarterly", "annual")] == [
        "monthly", "monthly", "monthly", "monthly", "quarterly", "annual",
    ]  # fmt: skip


async def _history(catalogue: Catalogue, data: dict[str, dict[str, str]], now: int, **params: str) -> Any:
    settings = Settings.model_construct()
    store = MemoryStateStore(Keys(settings.redis_key_prefix), hashes=data)
    model = ReadModel(store, catalogue, load_rules(settings.catalogue_dir / "rules.toml", catalogue))
    return await model.history(model.where(params), params.get("frequency"), now)


def _periods(entity: str, values: dict[str, list[float]]) -> dict[str, dict[str, str]]:
    """An entity's periods hash: per period label, the values reported in it."""
    key = Keys(Settings.model_construct().redis_key_prefix).entity(entity, "periods")
    fields = {}
    for label, reported in values.items():
        agg = Agg.of(reported[0], 0, f"{label}-0", "FINAL", 0)
        for n, value in enumerate(reported[1:], 1):
            agg = agg.add(value, n, f"{label}-{n}", "FINAL", n)
        fields[period_field("", label)] = agg.encode()
    return {key: fields}


@pytest.mark.asyncio
async def test_the_last_year_of_a_flood_station_beside_the_year_before_with_its_alarm_levels(
    catalogue: Catalogue,
) -> None:
    # water levels at Long Biên: a monthly period's value is its highest reading (aggregation max)
    data = _periods(
        f"HYD.WATER_LEVEL|01|{LONG_BIEN}",
        {"2025-08": [8.0, 10.9], "2024-08": [9.7], "2025-07": [7.5], "2024-12": [3.0], "2023-12": [2.5]},
    )
    answer = await _history(catalogue, data, _ms(2025, 8, 20), indicator="HYD.WATER_LEVEL", station=LONG_BIEN)
    assert (answer["frequency"], answer["region"], answer["station"]) == ("monthly", "01", LONG_BIEN)
    periods = answer["periods"]
    assert [p["period"] for p in periods] == ["2024-09", "2024-10", "2024-11", "2024-12"] + [
        f"2025-{m:02d}" for m in range(1, 9)
    ]  # calendar months: August holds the 20th
    august = periods[-1]
    assert (august["value"], august["count"], august["last_year_period"]) == (10.9, 2, "2024-08")
    assert august["same_period_last_year"] == 9.7
    assert august["yoy_change_pct"] == pytest.approx((10.9 - 9.7) / 9.7 * 100)
    assert august["status"] == "OPEN"
    december = periods[3]
    assert (december["value"], december["same_period_last_year"]) == (3.0, 2.5)
    # a month nothing was reported in is a gap, not a zero
    assert (periods[0]["value"], periods[0]["count"], periods[0]["same_period_last_year"]) == (None, 0, None)
    assert (periods[-2]["same_period_last_year"], periods[-2]["yoy_change_pct"]) == (None, None)
    # the station's own flood alarm levels (BĐ I..III), as the levels rule judges it
    station = catalogue.stations[LONG_BIEN]
    assert [(lv["code"], lv["lower"]) for lv in answer["levels"]] == [
        (lv.code, lv.lower) for lv in station.levels
    ]


@pytest.mark.asyncio
async def test_a_year_in_another_frequency_a_wrong_one_and_nothing_stored(catalogue: Catalogue) -> None:
    data = _periods("DIS.LANDSLIDE_SITES|01|-", {"2025-08-20": [3.0], "2024-08-20": [2.0, 2.0]})
    now = _ms(2025, 8, 20)
    days = await _history(
        catalogue, data, now, indicator="DIS.LANDSLIDE_SITES", region="01", frequency="daily"
    )
    assert len(days["periods"]) == PERIODS_PER_YEAR["daily"]
    assert (days["periods"][-1]["value"], days["periods"][-1]["same_period_last_year"]) == (3.0, 4.0)  # sums
    assert days["levels"] == []  # no levels rule for landslides
    with pytest.raises(BadRequest, match="frequency 'hourly'"):
        await _history(catalogue, data, now, indicator="DIS.LANDSLIDE_SITES", region="01", frequency="hourly")
    with pytest.raises(NotFound):
        await _history(catalogue, data, now, indicator="DIS.LANDSLIDE_SITES", region="79")


def test_the_screen_caches_a_history_per_series_and_frequency() -> None:
    key, params = question(
        "/history", {"indicator": "ENV.AQI", "station": "HN-AQ-HOANKIEM", "frequency": "daily", "x": "1"}
    )
    assert params == {"indicator": "ENV.AQI", "station": "HN-AQ-HOANKIEM", "frequency": "daily"}
    assert key == "/history?frequency=daily&indicator=ENV.AQI&station=HN-AQ-HOANKIEM"
