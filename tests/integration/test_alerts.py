"""The alert engine on the real pipeline: timer-driven rules, the center's directives, the topics
subscribers use (per domain, active alerts), and per-reporter directives."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from stream_app.config.blueprint import Blueprint
from stream_app.settings import Settings
from stream_app.tools import control
from stream_app.wire import codecs

from .support import (
    as_the_api,
    collect,
    decode_public,
    direct,
    directive_on_topic,
    observation,
    produce,
    to_the_end,
    wait_settled,
)

HOUR_MS = 3_600_000
AQI_KEY = "levels:ENV.AQI|ENV.AQI|01|HN-AQ-HOANKIEM"


def _send(settings: Settings, blueprint: Blueprint, reporter: str, *records: dict[str, Any]) -> None:
    schema = blueprint.schemas.latest("observation")
    # Keyed by station (or region), as a reporter keeps one feed in order; unkeyed records of one
    # feed may cross input partitions and arrive out of order (older readings don't move levels).
    keyed = [((r["station"] or r["region"]).encode(), codecs.encode(schema, r)) for r in records]
    produce(settings, blueprint.input_topic(reporter).name, keyed)


def _alerts(
    settings: Settings, blueprint: Blueprint, until: Any, timeout: float = 30
) -> list[dict[str, Any]]:
    return collect(settings, blueprint.topic_by_role("alerts").name, "alert", until, timeout=timeout).records


def _settled(settings: Settings, blueprint: Blueprint) -> None:
    """Wait until the worker has consumed everything it was given: the reporter's readings, the
    directives, the internal topic (see :func:`wait_consumed`)."""
    wait_settled(settings, blueprint, "MAE")


def _active(settings: Settings, blueprint: Blueprint) -> list[tuple[bytes, bytes | None]]:
    """The active-alerts topic's keyed records, tombstones included, once the worker has settled."""
    _settled(settings, blueprint)
    topic = blueprint.topic_by_role("active_alerts").name
    return [(m.key(), m.value()) for m in to_the_end(settings, topic) if m.key()]


def _bad_air(settings: Settings, blueprint: Blueprint) -> None:
    """Two consecutive 'bad' VN_AQI readings: the levels rule fires (min_count = 2)."""
    now = int(time.time() * 1000)
    _send(
        settings,
        blueprint,
        "MAE",
        observation(value=170.0, event_time=now - 120_000),
        observation(value=175.0, event_time=now - 60_000),
    )


def test_absence_fires_on_a_tick_with_no_input_and_resolves_when_data_returns(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    start_worker(settings)
    now = int(time.time() * 1000)
    _send(settings, blueprint, "MAE", observation(value=40.0, event_time=now - 60_000))
    collect(settings, blueprint.topic_by_role("consolidated").name, "consolidated", lambda r: len(r) >= 1)

    control.send_ticks(blueprint, now + 2 * HOUR_MS, source="test")  # within the 3 h allowed
    control.send_ticks(blueprint, now + 3 * HOUR_MS + 600_000, source="test")  # 3 h 10 min of silence
    control.send_ticks(blueprint, now + 4 * HOUR_MS, source="test")  # still silent: no second alert
    absence = [a for a in _alerts(settings, blueprint, lambda r: len(r) >= 1) if a["rule_kind"] == "absence"]
    assert [a["transition"] for a in absence] == ["FIRING"]
    fired = absence[0]
    assert (fired["level_code"], fired["station"], fired["domain"]) == (
        "NO_DATA",
        "HN-AQ-HOANKIEM",
        "environment",
    )
    assert fired["cause_observation_ids"] == []
    assert fired["value"] >= 3.0  # hours of silence

    _send(settings, blueprint, "MAE", observation(value=42.0))
    alerts = _alerts(settings, blueprint, lambda r: sum(a["rule_kind"] == "absence" for a in r) >= 2)
    assert [a["transition"] for a in alerts if a["rule_kind"] == "absence"] == ["FIRING", "RESOLVED"]


def test_late_report_fires_after_the_deadline_and_resolves_when_the_report_arrives(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    start_worker(settings)
    cpi = blueprint.catalogue.indicators["FIN.CPI"]
    october = int(datetime(2025, 10, 10, 5, tzinfo=UTC).timestamp() * 1000)
    november = int(datetime(2025, 11, 10, 5, tzinfo=UTC).timestamp() * 1000)
    deadline = cpi.period_of(november).deadline  # a local date
    after_deadline = int(
        datetime(deadline.year, deadline.month, deadline.day, 18, tzinfo=UTC).timestamp() * 1000
    )

    def cpi_report(at: int, value: float) -> dict[str, Any]:
        return observation(
            indicator="FIN.CPI",
            reporter="MOF",
            region="01",
            station=None,
            unit="%",
            value=value,
            event_time=at,
            report_time=at,
        )

    _send(settings, blueprint, "MOF", cpi_report(october, 0.3))
    collect(settings, blueprint.topic_by_role("consolidated").name, "consolidated", lambda r: len(r) >= 1)
    control.send_ticks(blueprint, after_deadline, source="test")
    late = [a for a in _alerts(settings, blueprint, lambda r: len(r) >= 1) if a["rule_kind"] == "late_report"]
    assert [(a["transition"], a["indicator"], a["region"], a["reporter"]) for a in late] == [
        ("FIRING", "FIN.CPI", "01", "MOF")
    ]
    assert late[0]["domain"] == cpi.domain == "socio_economic"

    _send(settings, blueprint, "MOF", cpi_report(november, 0.4))
    alerts = _alerts(settings, blueprint, lambda r: sum(a["rule_kind"] == "late_report" for a in r) >= 2)
    assert [a["transition"] for a in alerts if a["rule_kind"] == "late_report"] == ["FIRING", "RESOLVED"]


def test_center_acknowledges_an_alert_and_only_the_ministry_concerned_receives_the_directive(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    start_worker(settings)
    _bad_air(settings, blueprint)
    fired = _alerts(settings, blueprint, lambda r: len(r) >= 1, timeout=45)
    assert [a["transition"] for a in fired] == ["FIRING"], fired

    status, answer = direct(
        settings,
        AQI_KEY,
        action="ACKNOWLEDGE",
        alert_id=fired[0]["alert_id"],
        comment="Đã tiếp nhận, yêu cầu Sở TN&MT Hà Nội báo cáo",
    )
    assert status == 202, answer
    directive_id = answer["directive_id"]
    changes = _alerts(settings, blueprint, lambda r: len(r) >= 2)
    ack = changes[-1]
    assert (ack["event_type"], ack["transition"], ack["alert_key"]) == ("ACKNOWLEDGE", "FIRING", AQI_KEY)
    assert ack["alert_id"] != fired[0]["alert_id"]  # a change of its own, deduplicated by its own id
    assert ack["acknowledged_by"] == "test-operator", "the token's person"
    assert ack["comment"].startswith("Đã tiếp nhận")
    assert ack["directive_id"] == directive_id

    # The ministry concerned gets the directive on its own topic; another ministry's stays empty.
    to_mae = collect(settings, blueprint.directives_topic("MAE").name, "directive", lambda r: len(r) >= 1)
    assert [d["directive_id"] for d in to_mae.records] == [directive_id]
    _settled(settings, blueprint)
    assert to_the_end(settings, blueprint.directives_topic("MPS").name) == []

    # The active-alerts topic's latest record for the key shows the acknowledgement.
    active = _active(settings, blueprint)
    assert active[-1][0] == AQI_KEY.encode()
    assert active[-1][1] is not None
    assert decode_public(blueprint, "alert", active[-1][1])["acknowledged_by"] == "test-operator"


def test_directive_for_an_unknown_alert_is_dead_lettered(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    start_worker(settings)
    # no alert of that key ever fired: the API publishes it (nothing stale to see), the step refuses it
    status, answer = direct(settings, AQI_KEY, action="ACKNOWLEDGE")
    assert status == 202, answer
    # a key of no entity never passes the API (400): written as the API would, the agent refuses it too
    directive_on_topic(settings, blueprint, alert_key="not-a-key", action="COMMENT", **as_the_api(settings))
    dead = collect(
        settings, blueprint.topic_by_role("directives_dead_letter").name, "dead_letter", lambda r: len(r) >= 2
    )
    assert sorted(d["reason"] for d in dead.records) == ["unknown_alert", "unknown_alert"]


def test_resolved_alert_leaves_a_tombstone_on_the_active_topic(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    start_worker(settings)
    _bad_air(settings, blueprint)
    _alerts(settings, blueprint, lambda r: len(r) >= 1)
    _send(settings, blueprint, "MAE", observation(value=60.0))  # below 151 - 5: resolved at once
    transitions = [a["transition"] for a in _alerts(settings, blueprint, lambda r: len(r) >= 2)]
    assert transitions == ["FIRING", "RESOLVED"]
    active = _active(settings, blueprint)
    assert [k for k, _ in active] == [AQI_KEY.encode(), AQI_KEY.encode()]
    assert active[0][1] is not None
    assert active[-1][1] is None  # tombstone: compaction removes the resolved alert
