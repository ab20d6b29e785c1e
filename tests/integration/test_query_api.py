"""The query API, served by the screen's process over a real worker's state: latest values, windows,
periods with the same period last year, national roll-ups, active alerts, compliance, the daily
briefing, and clear 4xx answers; and a reporting period closed by the clock (a tick), its final value
published."""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from stream_app.api.http import Api
from stream_app.config.blueprint import Blueprint
from stream_app.settings import Settings
from stream_app.tools import control
from stream_app.wire import codecs

from .support import api, api_address, collect, observation, produce, to_the_end

VIETNAM = timezone(timedelta(hours=7))
HOUR_MS = 3_600_000


def _ms(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(datetime(year, month, day, hour, tzinfo=VIETNAM).timestamp() * 1000)


def _get(settings: Settings, path: str, **params: str) -> tuple[int, Any]:
    return api(settings, path, **params)


def _wait_for(
    settings: Settings, path: str, timeout: float = 30.0, until: Any = lambda body: True, **params: str
) -> Any:
    """GET until it answers 200 with a body that satisfies ``until``."""
    deadline = time.monotonic() + timeout
    status, body = 0, None
    while time.monotonic() < deadline:
        status, body = _get(settings, path, **params)
        if status == 200 and until(body):
            return body
        time.sleep(0.3)
    pytest.fail(f"{path} {params}: {status} {body}")


def _key(record: dict[str, Any]) -> bytes:
    where: str = record["station"] or record["region"]
    return where.encode()


def _landslides(day: tuple[int, int, int], values: dict[str, float], tag: str) -> list[dict[str, Any]]:
    at = _ms(*day, 18)
    return [
        observation(
            observation_id=f"{tag}-{region}",
            indicator="DIS.LANDSLIDE_SITES",
            region=region,
            station=None,
            unit="sites",
            value=value,
            event_time=at,
            report_time=at,
        )
        for region, value in values.items()
    ]


def test_query_api_answers_from_the_consolidated_state(
    settings: Settings, blueprint: Blueprint, start_worker: Any, start_screen: Any
) -> None:
    start_screen()  # the query API's home; the worker writes the state it reads
    start_worker(settings)
    schema = blueprint.schemas.latest("observation")
    topic = blueprint.input_topic("MAE").name
    # landslide sites on 2025-08-20 and the same day a year before; Hải Dương (30) reported the
    # 2024 figure under its pre-2025 code: it counts in today's Hải Phòng (31)
    rows = _landslides((2025, 8, 20), {"01": 3.0, "31": 4.0, "79": 1.0}, "now")
    rows += _landslides((2024, 8, 20), {"01": 2.0, "30": 2.0}, "then")
    aqi_at = _ms(2025, 8, 20, 9)
    rows += [
        observation(observation_id=f"aqi-{i}", value=v, event_time=aqi_at + i * HOUR_MS, report_time=aqi_at)
        for i, v in enumerate([80.0, 170.0, 180.0])
    ]
    # a feed is keyed by its station or region: its readings stay in order
    produce(settings, topic, [(_key(r), codecs.encode(schema, r)) for r in rows])
    # a correction of Hà Nội's 2025 figure: 3 -> 5
    fix = _landslides((2025, 8, 20), {"01": 5.0}, "now")[0] | {"revision": 1}
    produce(settings, topic, [(_key(fix), codecs.encode(schema, fix))])

    national = _wait_for(
        settings,
        "/rollups",
        timeout=45,
        until=lambda body: body["value"] == 10.0,  # once the correction is in
        indicator="DIS.LANDSLIDE_SITES",
        period="2025-08-20",
    )
    assert (national["value"], national["contributors"], national["status"]) == (10.0, 3, "CLOSED")
    assert national["same_period_last_year"] == 4.0
    assert national["yoy_change_pct"] == pytest.approx(150.0)

    periods = _wait_for(settings, "/periods", indicator="DIS.LANDSLIDE_SITES", region="31")
    labels = [p["period"] for p in periods["periods"]]
    assert {"2024-08-20", "2025-08-20"} <= set(labels)
    this_year = next(p for p in periods["periods"] if p["period"] == "2025-08-20")
    assert (this_year["value"], this_year["same_period_last_year"], this_year["yoy_change_pct"]) == (
        4.0,
        2.0,
        100.0,
    )
    month = _wait_for(settings, "/periods", indicator="DIS.LANDSLIDE_SITES", region="01", period="2025-09")
    # Decree 09: 20 August is in the September period (15/08 .. 14/09); the corrected value counts
    assert (month["periods"][0]["value"], month["periods"][0]["count"]) == (5.0, 1)
    assert month["periods"][0]["start"] == "2025-08-15"

    latest = _wait_for(
        settings,
        "/latest",
        until=lambda b: b["value"] == 180.0,
        indicator="ENV.AQI",
        station="HN-AQ-HOANKIEM",
    )
    assert (latest["value"], latest["region"]) == (180.0, "01")
    windows = _wait_for(settings, "/windows", indicator="ENV.AQI", station="HN-AQ-HOANKIEM")
    day = next(w for w in windows["windows"] if w["window"] == "rolling-24h")
    assert (day["count"], day["max"], day["min"]) == (3, 180.0, 80.0)
    alerts = _wait_for(settings, "/alerts/active", until=lambda body: body["count"] > 0, domain="environment")
    assert [a["alert_key"] for a in alerts["alerts"]] == ["levels:ENV.AQI|ENV.AQI|01|HN-AQ-HOANKIEM"]

    # the map's answer: every unit, Hà Nội with its worst AQI alert and its station's latest value
    overview = _wait_for(settings, "/overview", indicator="ENV.AQI")
    assert len(overview["regions"]) == 34
    hanoi = next(r for r in overview["regions"] if r["region"] == "01")
    assert (hanoi["open_alerts"], hanoi["alert"]["alert_key"]) == (1, alerts["alerts"][0]["alert_key"])
    assert (hanoi["latest"]["station"], hanoi["latest"]["value"]) == ("HN-AQ-HOANKIEM", 180.0)
    aqi_levels = blueprint.catalogue.indicators["ENV.AQI"].levels
    assert [lv["code"] for lv in overview["levels"]] == [lv.code for lv in aqi_levels]
    assert next(r for r in overview["regions"] if r["region"] == "79")["alert"] is None
    # a province's panel: Hải Phòng's landslides, its latest day and the 30 days before it
    region = _wait_for(settings, "/region", region="31")
    landslides_31 = next(s for s in region["series"] if s["indicator"] == "DIS.LANDSLIDE_SITES")
    assert (landslides_31["value"], landslides_31["last_30_days"]) == (
        4.0,
        [{"date": "2025-08-20", "value": 4.0}],
    )
    assert region["alerts"] == []

    compliance = _wait_for(settings, "/compliance", reporter="MAE", at="2025-08-22T12:00+07:00")
    landslides = next(
        i for i in compliance["reporters"][0]["indicators"] if i["indicator"] == "DIS.LANDSLIDE_SITES"
    )
    # the latest day whose deadline (the end of the next day) is over at noon on the 22nd
    assert landslides["period"] == "2025-08-20"
    # three units reported, a year after the deadline (this test sends history): late
    assert (landslides["connected"], landslides["expected"], landslides["received"]) == (True, 34, 3)
    assert (landslides["on_time"], landslides["late"], landslides["missing"]) == (0, 3, 31)
    never = next(i for i in compliance["reporters"][0]["indicators"] if i["indicator"] == "HYD.SALINITY_MAX")
    assert never["connected"] is False
    assert compliance["reporters"][0]["summary"]["indicators_connected"] == 2

    briefing = _wait_for(settings, "/briefing", date="2025-08-20")
    item = next(i for i in briefing["items"] if i["indicator"] == "DIS.LANDSLIDE_SITES")
    assert (item["value"], item["contributors"], item["same_period_last_year"]) == (10.0, 3, 4.0)
    assert briefing["open_alerts"] == {"environment": 1}


BAD_REQUESTS = [
    ("/latest", {}, 400, "missing parameter 'indicator'"),
    ("/latest", {"indicator": "NOPE"}, 400, "unknown indicator 'NOPE'"),
    ("/latest", {"indicator": "ENV.AQI", "region": "01"}, 400, "give 'station'"),
    ("/periods", {"indicator": "FIN.CPI", "region": "99"}, 400, "unknown region '99'"),
    ("/periods", {"indicator": "FIN.CPI", "region": "01", "period": "2025-13"}, 400, "not a period label"),
    ("/periods", {"indicator": "PWR.SOURCE_SHARE", "breakdown": "hydro"}, 400, "not name=value"),
    ("/rollups", {"indicator": "PWR.PEAK_MW"}, 400, "not rolled up"),
    ("/compliance", {"at": "yesterday"}, 400, "not an ISO-8601 time"),
    ("/compliance", {"reporter": "XYZ"}, 400, "unknown reporter 'XYZ'"),
    ("/alerts/active", {"domain": "weather"}, 400, "unknown domain 'weather'"),
    ("/alerts/active", {"min_level": "high"}, 400, "not an integer"),
    ("/briefing", {"date": "20-08-2025"}, 400, "not YYYY-MM-DD"),
    ("/latest", {"indicator": "FIN.CPI", "region": "01"}, 404, "no values"),
    ("/overview", {"indicator": "NOPE"}, 400, "unknown indicator 'NOPE'"),
    ("/region", {}, 400, "missing parameter 'region'"),
    ("/region", {"region": "30"}, 400, "not a current provincial unit"),
]


def test_bad_parameters_get_a_clear_4xx(settings: Settings, start_screen: Any) -> None:
    start_screen()
    for path, params, status, says in BAD_REQUESTS:
        got, body = _get(settings, path, **params)
        assert (got, says in body["detail"]) == (status, True), (path, params, body)


def test_openapi_document_is_served_and_names_every_route(settings: Settings, start_screen: Any) -> None:
    start_screen()
    url = f"{api_address(settings)}/api/v1/openapi.yaml"
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - the local screen
        text = response.read().decode()
    for path in [*Api.__new__(Api).routes(), "/whoami", "/alerts/stream"]:
        assert f"/api/v1{path}:" in text
    assert _get(settings, "/whoami") == (200, {"name": "test-viewer", "role": "viewer", "may_direct": False})


def test_a_period_closes_on_a_tick_and_its_final_value_is_published(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    """Today's daily period is OPEN until its deadline (the end of tomorrow, local time); a tick
    after it closes the period with no new data, and the final value is published."""
    start_worker(settings)
    now = int(time.time() * 1000)
    schema = blueprint.schemas.latest("observation")
    reading = observation(observation_id="open-1", value=55.0, event_time=now - 60_000, report_time=now)
    produce(settings, blueprint.input_topic("MAE").name, [(None, codecs.encode(schema, reading))])
    consolidated = blueprint.topic_by_role("consolidated").name
    first = collect(settings, consolidated, "consolidated", lambda r: any(x["scope"] == "ENTITY" for x in r))
    opened = next(r for r in first.records if r["scope"] == "ENTITY")
    assert (opened["status"], opened["kind"], opened["frequency"]) == ("OPEN", "UPDATE", "daily")

    control.send_ticks(blueprint, now + 3 * 24 * HOUR_MS, source="test")
    closed = collect(
        settings,
        consolidated,
        "consolidated",
        lambda r: any(x["kind"] == "PERIOD_CLOSE" and x["scope"] == "ENTITY" for x in r),
    )
    final = [r for r in closed.records if r["kind"] == "PERIOD_CLOSE" and r["scope"] == "ENTITY"]
    assert {r["period"] for r in final} >= {opened["period"]}
    day = next(r for r in final if r["period"] == opened["period"])
    assert (day["status"], day["value"], day["count"]) == ("CLOSED", 55.0, 1)


def test_daily_briefing_is_published_once_at_its_local_time(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    """With the briefing time at 00:00 it is due at once: one briefing on yesterday's figures,
    keyed by its id, and no second one for the same day."""
    start_worker(settings, STREAM_APP_BRIEFING_TIME="00:00", STREAM_APP_TICK_INTERVAL_S="1")
    topic = blueprint.topic_by_role("briefings").name
    got = collect(settings, topic, "briefing", lambda r: len(r) >= 1)
    yesterday = (datetime.now(VIETNAM) - timedelta(days=1)).date().isoformat()
    briefing = got.records[0]
    assert (briefing["briefing_id"], briefing["date"]) == (f"briefing-{yesterday}", yesterday)
    assert got.keys[0] == f"briefing-{yesterday}".encode()
    codes = {item["indicator"] for item in briefing["items"]}
    assert {"ENV.AQI", "DIS.LANDSLIDE_SITES", "PWR.OUTPUT_GWH", "TRF.DEATHS"} <= codes
    time.sleep(4)  # four more timer runs (every second): still one briefing
    assert len([m for m in to_the_end(settings, topic) if m.value() is not None]) == 1
