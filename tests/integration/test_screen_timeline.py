"""The alert timeline (issue 31) on the real pipeline: a worker raises the flood alert at Long Biên, an
operator acknowledges, escalates, comments on and closes it through the screen, the water falls and the
alert resolves; ``GET /api/v1/alerts/timeline`` on the screen lists each step with who and when, in
order, page by page, for Hà Nội and not for another province."""

from __future__ import annotations

import time
import urllib.parse
from datetime import UTC, datetime
from typing import Any

from stream_app.config.blueprint import Blueprint
from stream_app.settings import Settings
from stream_app.wire import codecs

from .support import api, observation, produce, wait_until

LONG_BIEN = "HN-LONGBIEN"
FLOOD_KEY = f"levels:HYD.WATER_LEVEL|HYD.WATER_LEVEL|01|{LONG_BIEN}"
OPERATOR = "test-operator"


def _timeline(settings: Settings, role: str = "viewer", **params: str) -> tuple[int, Any]:
    return api(settings, "/alerts/timeline", role=role, **params)


def _steps_until(settings: Settings, last: str, timeout_s: float = 30) -> list[dict[str, Any]]:
    """The flood alert's entries, once the newest is ``last`` (the worker takes it in a moment)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status, body = _timeline(settings, alert_key=FLOOD_KEY, limit="500")
        assert status == 200, body
        if body["entries"] and body["entries"][-1]["step"] == last:
            return list(body["entries"])
        assert time.monotonic() < deadline, f"no {last!r} step: {[e['step'] for e in body['entries']]}"
        time.sleep(0.5)


def _water(settings: Settings, blueprint: Blueprint, value: float, at_ms: int) -> None:
    reading = observation(
        indicator="HYD.WATER_LEVEL",
        station=LONG_BIEN,
        unit="m",
        value=value,
        event_time=at_ms,
        report_time=at_ms,
    )
    encoded = codecs.encode(blueprint.schemas.latest("observation"), reading)
    produce(settings, blueprint.input_topic("MAE").name, [(LONG_BIEN.encode(), encoded)])


def test_the_timeline_lists_each_step_of_a_flood_alert_with_names_in_order_and_by_pages(
    settings: Settings, blueprint: Blueprint, start_worker: Any, start_screen: Any
) -> None:
    start_screen()
    start_worker(settings)
    started = time.monotonic()
    bd3 = next(lv for lv in blueprint.catalogue.stations[LONG_BIEN].levels if lv.code == "BD3")
    bd1 = next(lv for lv in blueprint.catalogue.stations[LONG_BIEN].levels if lv.code == "BD1")
    now = int(time.time() * 1000)
    _water(settings, blueprint, bd3.lower + 0.4, now - 60_000)
    _steps_until(settings, "fired")

    path = f"/alerts/{urllib.parse.quote(FLOOD_KEY, safe='')}/directives"
    note, comment = "Báo cáo Phó Thủ tướng", "=Sở NN&PTNT Hà Nội theo dõi"
    for body in (
        {"action": "ACKNOWLEDGE"},
        {"action": "ESCALATE", "comment": note},
        {"action": "COMMENT", "comment": comment},
        {"action": "CLOSE"},
    ):
        status, answer = api(settings, path, role="operator", body=body)
        assert status == 202, answer
    _steps_until(settings, "closed")
    _water(settings, blueprint, bd1.lower - 1.0, now)
    entries = _steps_until(settings, "resolved")

    assert [(e["step"], e["by"]) for e in entries] == [
        ("fired", ""),
        ("acknowledged", OPERATOR),
        ("escalated", OPERATOR),
        ("commented", OPERATOR),
        ("closed", OPERATOR),
        ("resolved", ""),
    ]
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)
    assert [e["comment"] for e in entries[2:5]] == [note, comment, ""]  # the closing had none of its own
    fired = entries[0]
    assert (fired["region"], fired["station"], fired["level_code"], fired["reporter"]) == (
        "01",
        LONG_BIEN,
        "BD3",
        "MAE",
    )

    # the screen says when it holds the whole range: once its reader confirmed it is at the topic's end
    # (a second idle, then the broker's end offsets: on a loaded machine, a few seconds after the last step)
    wait_until(lambda: _timeline(settings, region="01")[1].get("complete") is True, 30, "a complete timeline")

    # page by page (two at a time), oldest first and newest first: the same steps, each once
    for order in ("asc", "desc"):
        pages, cursor = [], ""
        while True:
            params = {"region": "01", "indicator": "HYD.WATER_LEVEL", "limit": "2", "order": order}
            status, body = _timeline(settings, **params, **({"cursor": cursor} if cursor else {}))
            assert status == 200, body
            pages.append([e["id"] for e in body["entries"] if e["alert_key"] == FLOOD_KEY])
            cursor = body["next_cursor"]
            if cursor is None:
                break
        ids = [i for p in pages for i in p]
        assert ids == [e["id"] for e in (entries if order == "asc" else entries[::-1])]
        assert len(pages) == 3

    # another province: none of it
    status, body = _timeline(settings, region="79")
    assert status == 200
    assert all(e["alert_key"] != FLOOD_KEY for e in body["entries"])
    # a range that ends before the alert fired (asked to the minute: two minutes before)
    before = datetime.fromtimestamp(fired["at"] / 1000 - 120, UTC).isoformat()
    status, body = _timeline(settings, to=before)
    assert status == 200, body
    assert all(e["alert_key"] != FLOOD_KEY for e in body["entries"])
    # a read like the others: a token wanted, a bounded page
    assert _timeline(settings, limit="501")[0] == 400
    status, _ = api(settings, "/alerts/timeline", role=None)
    assert status == 401
    print(f"timeline scenario: {time.monotonic() - started:.1f} s")
