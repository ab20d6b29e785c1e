"""Each kind of alert rule on the real pipeline: VN_AQI boundaries at the alert levels with hysteresis
and minimum duration, the Hà Nội (Long Biên) flood alarm levels, rate of change, deviation from a
baseline. Absence, late reports and directives are in test_alerts.py; crashes in test_alert_chaos.py."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from stream_app.config.blueprint import Blueprint
from stream_app.settings import Settings
from stream_app.wire import codecs

from .support import collect, observation, produce

MINUTE = 60_000


def _feed(settings: Settings, blueprint: Blueprint, reporter: str, readings: list[dict[str, Any]]) -> None:
    """One feed, in order, keyed by its station (or region) as a reporter keeps it."""
    schema = blueprint.schemas.latest("observation")
    records = [((r["station"] or r["region"]).encode(), codecs.encode(schema, r)) for r in readings]
    produce(settings, blueprint.input_topic(reporter).name, records)


def _series(start: int, values: list[float], step: int = MINUTE, **fields: Any) -> list[dict[str, Any]]:
    return [
        observation(value=v, event_time=start + i * step, report_time=start + i * step, **fields)
        for i, v in enumerate(values)
    ]


def _changes(alerts: list[dict[str, Any]], rule: str, where: str) -> list[tuple[str, str]]:
    return [
        (a["transition"], a["level_code"])
        for a in alerts
        if a["rule"] == rule and (a["station"] or a["region"]) == where and a["event_type"] == "TRANSITION"
    ]


def test_rule_kinds_on_the_real_pipeline(settings: Settings, blueprint: Blueprint, start_worker: Any) -> None:
    start_worker(settings)
    now = int(time.time() * 1000)
    start = now - 3 * 60 * MINUTE

    # VN_AQI at its alerting boundaries; each level needs two readings (min_count = 2); it clears only
    # 5 points below a bound (hysteresis).
    aqi = [150, 150, 151, 151, 200, 200, 201, 201, 300, 300, 301, 301, 296, 295, 151, 146, 145.9]
    _feed(settings, blueprint, "MAE", _series(start, aqi))

    # Hồng at Hà Nội (Long Biên): BĐ I 9.5, BĐ II 10.5, BĐ III 11.5 m, hysteresis 0.05 m.
    flood = [9.49, 9.5, 10.49, 10.5, 11.49, 11.5, 11.46, 11.44]
    _feed(
        settings,
        blueprint,
        "MAE",
        _series(start, flood, indicator="HYD.WATER_LEVEL", unit="m", station="HN-LONGBIEN"),
    )

    # Đáy at Ba Thá: rising 1.0 m within 6 h is rapid; its alarm levels (5.5 m+) are never reached.
    rise = [3.0, 3.5, 3.99, 4.0, 3.2]
    _feed(
        settings,
        blueprint,
        "MAE",
        _series(start, rise, step=30 * MINUTE, indicator="HYD.WATER_LEVEL", unit="m", station="HN-BATHA"),
    )

    # Traffic deaths in Hà Nội, one report a day at local noon: a calm fortnight, then a spike.
    noon = datetime.fromtimestamp(now / 1000, UTC).replace(hour=5, minute=0, second=0, microsecond=0)
    days = [noon - timedelta(days=d) for d in range(15, 0, -1)]
    deaths = [2, 3, 2, 2, 1, 3, 2, 2, 3, 2, 2, 1, 2, 15, 2]
    _feed(
        settings,
        blueprint,
        "MPS",
        [
            observation(
                indicator="TRF.DEATHS",
                reporter="MPS",
                unit="persons",
                station=None,
                region="01",
                value=float(v),
                event_time=int(d.timestamp() * 1000),
                report_time=int(d.timestamp() * 1000),
            )
            for d, v in zip(days, deaths, strict=True)
        ],
    )

    expected = {
        ("levels:ENV.AQI", "HN-AQ-HOANKIEM"): [
            ("FIRING", "BAD"),
            ("ESCALATED", "VERY_BAD"),
            ("ESCALATED", "HAZARDOUS"),
            ("DEESCALATED", "VERY_BAD"),
            ("DEESCALATED", "BAD"),
            ("RESOLVED", "POOR"),
        ],
        ("levels:HYD.WATER_LEVEL", "HN-LONGBIEN"): [
            ("FIRING", "BD1"),
            ("ESCALATED", "BD2"),
            ("ESCALATED", "BD3"),
            ("DEESCALATED", "BD2"),
        ],
        ("rate_of_change:HYD.WATER_LEVEL", "HN-BATHA"): [("FIRING", "RAPID_RISE"), ("RESOLVED", "CLEAR")],
        ("deviation:TRF.DEATHS", "01"): [("FIRING", "ABNORMAL_DEATHS"), ("RESOLVED", "CLEAR")],
    }
    total = sum(len(v) for v in expected.values())

    def complete(alerts: list[dict[str, Any]]) -> bool:
        return all(
            len(_changes(alerts, rule, where)) >= len(want) for (rule, where), want in expected.items()
        )

    alerts = collect(settings, blueprint.topic_by_role("alerts").name, "alert", complete, timeout=60).records
    for (rule, where), want in expected.items():
        assert _changes(alerts, rule, where) == want, (rule, where)
    assert len({a["alert_id"] for a in alerts}) >= total
    deviation = next(a for a in alerts if a["rule"] == "deviation:TRF.DEATHS")
    assert (deviation["rule_kind"], deviation["domain"], deviation["value"]) == ("deviation", "traffic", 15.0)
