"""``GET /api/v1/history`` over a real worker's state, served by the screen's process: a year of water
levels at Long Biên and the same months the year before, sent to the worker as MAE would, come back
month by month with the station's flood alarm levels; a year of days on request; a province's landslide
sites in Decree 09's months; a wrong frequency and an entity with nothing stored are clear 4xx answers."""

from __future__ import annotations

import time
from typing import Any

from stream_app.config.blueprint import Blueprint
from stream_app.settings import Settings
from stream_app.wire import codecs

from .support import History, a_year_of_history, api, produce

LONG_BIEN = "HN-LONGBIEN"


def test_a_stations_past_year_beside_the_year_before(
    settings: Settings, blueprint: Blueprint, start_worker: Any, start_screen: Any
) -> None:
    start_screen()
    start_worker(settings)
    history = a_year_of_history(blueprint, "HYD.WATER_LEVEL", region="01", station=LONG_BIEN, base=5.0)
    # landslide sites: a daily sum per province, in Decree 09's periods (a month runs from the 15th)
    landslides = a_year_of_history(blueprint, "DIS.LANDSLIDE_SITES", region="01", station=None, base=2.0)
    schema = blueprint.schemas.latest("observation")
    produce(  # each feed keyed by its station or province: in event-time order
        settings,
        blueprint.input_topic("MAE").name,
        [(LONG_BIEN.encode(), codecs.encode(schema, record)) for record in history.observations]
        + [(b"01", codecs.encode(schema, record)) for record in landslides.observations],
    )
    params = {"indicator": "HYD.WATER_LEVEL", "station": LONG_BIEN}
    body = _answered(settings, history, **params)
    assert (body["frequency"], body["region"], body["unit"], body["aggregation"]) == (
        "monthly",
        "01",
        "m",
        "max",
    )
    assert [p["count"] for p in body["periods"]] == [1] * 12
    assert body["periods"][-1]["status"] == "OPEN"
    station = blueprint.catalogue.stations[LONG_BIEN]
    assert [(lv["code"], lv["lower"]) for lv in body["levels"]] == [
        (lv.code, lv.lower) for lv in station.levels
    ]

    status, days = api(settings, "/history", frequency="daily", **params)
    assert (status, len(days["periods"])) == (200, 365)
    assert sum(p["value"] is not None for p in days["periods"]) == 12  # one reading a month

    status, wrong = api(settings, "/history", frequency="hourly", **params)
    assert (status, wrong["error"]) == (400, "bad_request")
    assert "frequency 'hourly'" in wrong["detail"]
    status, missing = api(settings, "/history", indicator="HYD.WATER_LEVEL", station="HN-SONTAY")
    assert (status, missing["error"]) == (404, "not_found")
    status, _ = api(settings, "/history", role=None, **params)
    assert status == 401

    sites = _answered(settings, landslides, indicator="DIS.LANDSLIDE_SITES", region="01")
    assert (sites["frequency"], sites["levels"]) == ("monthly", [])
    assert all(p["start"][8:] == "15" for p in sites["periods"])


def _answered(settings: Settings, history: History, **params: str) -> Any:
    """The history once it holds every value sent (the worker consolidates them within seconds)."""
    deadline = time.monotonic() + 30
    while True:
        status, body = api(settings, "/history", **params)
        got = {p["period"]: (p["value"], p["same_period_last_year"]) for p in body.get("periods", [])}
        if status == 200 and got == history.expected:
            return body
        assert time.monotonic() < deadline, (status, body)
        time.sleep(0.5)
