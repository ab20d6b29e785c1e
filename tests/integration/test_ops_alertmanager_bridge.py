"""The center's domain alerts in the real Alertmanager: an AQI alert fires there with its labels,
moves with the level, and resolves there when the air clears."""

from __future__ import annotations

import time
from typing import Any

from stream_app.config.blueprint import Blueprint
from stream_app.settings import Settings
from stream_app.wire import codecs

from .monitoring import alertmanager_alerts, alertmanager_url
from .support import metric_value, observation, produce


class Feed:
    """Hoàn Kiếm's air-quality feed: one reading a minute, in order (an older reading moves no level)."""

    def __init__(self, settings: Settings, blueprint: Blueprint) -> None:
        self.settings = settings
        self.blueprint = blueprint
        self.next_ms = int(time.time() * 1000) - 30 * 60_000

    def send(self, *values: float) -> None:
        schema = self.blueprint.schemas.latest("observation")
        records = []
        for value in values:
            record = observation(value=value, event_time=self.next_ms, report_time=self.next_ms)
            records.append((b"HN-AQ-HOANKIEM", codecs.encode(schema, record)))
            self.next_ms += 60_000
        produce(self.settings, self.blueprint.input_topic("MAE").name, records)


def _wait_alerts(origin: str, condition: Any, timeout: float = 45.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    alerts: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        alerts = [a for a in alertmanager_alerts(origin=origin) if a["status"]["state"] == "active"]
        if condition(alerts):
            return alerts
        time.sleep(0.5)
    raise AssertionError(f"Alertmanager never showed the expected alerts; last: {alerts}")


def test_center_alerts_fire_escalate_and_resolve_in_alertmanager(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    worker = start_worker(
        settings, STREAM_APP_ALERTMANAGER_URL=alertmanager_url(), STREAM_APP_ALERTMANAGER_RESEND_S="2"
    )
    origin = settings.group_id
    air = Feed(settings, blueprint)

    air.send(170.0, 175.0)  # two "bad" VN_AQI readings: the levels rule fires
    fired = _wait_alerts(origin, lambda alerts: len(alerts) == 1)[0]
    labels = fired["labels"]
    assert {k: labels[k] for k in ("domain", "indicator", "reporter", "region", "station", "rule_kind")} == {
        "domain": "environment",
        "indicator": "ENV.AQI",
        "reporter": "MAE",
        "region": "01",
        "station": "HN-AQ-HOANKIEM",
        "rule_kind": "levels",
    }
    assert labels["source"] == "stream-app"
    first_level = labels["level"]
    assert fired["annotations"]["value"] == "175"

    air.send(260.0, 265.0)  # "very bad": one alert, at the new level only
    escalated = _wait_alerts(
        origin, lambda alerts: len(alerts) == 1 and alerts[0]["labels"]["level"] != first_level
    )
    assert int(escalated[0]["labels"]["level_index"]) > int(labels["level_index"])

    air.send(30.0, 28.0, 25.0)  # clean air: resolved in Alertmanager too
    _wait_alerts(origin, lambda alerts: alerts == [])
    assert metric_value(worker.metrics(), "stream_app_alertmanager_posts_total", outcome="ok") >= 3
    assert metric_value(worker.metrics(), "stream_app_alertmanager_posts_total", outcome="error") == 0
    assert (
        metric_value(
            worker.metrics(),
            "stream_app_alert_transitions_total",
            domain="environment",
            rule_kind="levels",
            transition="FIRING",
        )
        == 1
    )
