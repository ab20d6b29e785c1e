"""A directive is about one occurrence (issue 26), on the real pipeline: the flood alarm at Long Biên fires,
resolves and fires again; an ACKNOWLEDGE carrying the first occurrence's id is refused — 409 from the API,
a ``stale_alert`` dead letter when sent straight to the directives topic — and the new occurrence is never
shown as acknowledged."""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

import redis

from stream_app.config.blueprint import Blueprint
from stream_app.settings import Settings
from stream_app.state.keys import Keys
from stream_app.wire import codecs

from .support import (
    all_to_the_end,
    api,
    as_the_api,
    collect,
    decode_public,
    directive_on_topic,
    observation,
    produce,
    redis_hash,
    to_the_end,
    wait_settled,
    wait_until,
)

LONG_BIEN = "HN-LONGBIEN"
FLOOD_RULE = "levels:HYD.WATER_LEVEL"
FLOOD_ENTITY = f"HYD.WATER_LEVEL|01|{LONG_BIEN}"
FLOOD_KEY = f"{FLOOD_RULE}|{FLOOD_ENTITY}"


def _flood_changes(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["alert_key"] == FLOOD_KEY]


def _fired_resolved_fired(settings: Settings, blueprint: Blueprint) -> tuple[dict[str, Any], dict[str, Any]]:
    """Long Biên rises past BĐ I, falls back below it, rises again (one feed, in order); the two FIRING
    alerts, once the entity's state holds the second occurrence (the API reads it there)."""
    bd1 = next(lv for lv in blueprint.catalogue.stations[LONG_BIEN].levels if lv.code == "BD1")
    now = int(time.time() * 1000)
    schema = blueprint.schemas.latest("observation")
    readings = [
        observation(indicator="HYD.WATER_LEVEL", station=LONG_BIEN, unit="m", value=v,
                    event_time=now - (3 - i) * 60_000, report_time=now - (3 - i) * 60_000)
        for i, v in enumerate((bd1.lower + 0.5, bd1.lower - 1.0, bd1.lower + 0.7))
    ]  # fmt: skip
    produce(
        settings,
        blueprint.input_topic("MAE").name,
        [(LONG_BIEN.encode(), codecs.encode(schema, r)) for r in readings],
    )
    alerts = collect(
        settings,
        blueprint.topic_by_role("alerts").name,
        "alert",
        lambda r: len(_flood_changes(r)) >= 3,
        timeout=45,
    )
    flood = _flood_changes(alerts.records)
    assert [a["transition"] for a in flood] == ["FIRING", "RESOLVED", "FIRING"], flood
    first, second = flood[0], flood[2]
    assert first["alert_id"] != second["alert_id"]

    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    state_key = Keys(settings.redis_key_prefix).entity(FLOOD_ENTITY)
    occurrence = f"m:{FLOOD_RULE}:o".encode()
    wait_until(
        lambda: redis_hash(client, state_key).get(occurrence) == second["alert_id"].encode(),
        timeout=15,
        what="the state to hold the second occurrence",
    )
    return first, second


def _active_flood(settings: Settings) -> dict[str, Any]:
    """The flood as the API lists it among the active alerts, once it is listed: the screen's view follows
    the worker's (the fire, resolve, fire just applied) within a moment, not at once."""
    listed: list[dict[str, Any]] = []

    def the_flood_listed() -> bool:
        status, body = api(settings, "/alerts/active", role="viewer")
        assert status == 200, body
        listed[:] = [a for a in body["alerts"] if a["alert_key"] == FLOOD_KEY]
        return bool(listed)

    wait_until(the_flood_listed, timeout=15, what="the flood listed among the active alerts")
    return listed[0]


def test_the_api_refuses_an_acknowledgement_of_an_earlier_occurrence_with_a_409(
    settings: Settings, blueprint: Blueprint, start_worker: Any, start_screen: Any
) -> None:
    start_screen()
    start_worker(settings)
    first, second = _fired_resolved_fired(settings, blueprint)
    path = f"/alerts/{urllib.parse.quote(FLOOD_KEY, safe='')}/directives"

    status, body = api(
        settings, path, role="operator", body={"action": "ACKNOWLEDGE", "alert_id": first["alert_id"]}
    )
    assert status == 409, body
    assert (body["error"], body["reason"]) == ("conflict", "stale_alert")
    assert second["alert_id"] in body["detail"], "names the occurrence that is current"

    # nothing was published: the directives topic stays empty and the new occurrence unacknowledged (the
    # API answers a directive it takes once Kafka has it; the topic is read again below, after a round trip)
    directives = blueprint.topic_by_role("directives").name
    assert to_the_end(settings, directives) == []
    assert _active_flood(settings)["acknowledged_by"] is None
    trail = collect(settings, blueprint.topic_by_role("audit").name, "audit", lambda r: len(r) >= 1)
    assert [(a["outcome"], a["details"]["reason"]) for a in trail.records] == [("refused", "stale_alert")]

    # the same acknowledgement naming the current occurrence is taken
    status, body = api(
        settings, path, role="operator", body={"action": "ACKNOWLEDGE", "alert_id": second["alert_id"]}
    )
    assert status == 202, body
    acked = collect(
        settings,
        blueprint.topic_by_role("alerts").name,
        "alert",
        lambda r: any(a["event_type"] == "ACKNOWLEDGE" for a in _flood_changes(r)),
    )
    ack = next(a for a in _flood_changes(acked.records) if a["event_type"] == "ACKNOWLEDGE")
    assert ack["acknowledged_by"] == "test-operator"
    # the refused one was never published, then or since: the taken one alone is on the topic
    wait_settled(settings, blueprint, "MAE")
    written = [
        decode_public(blueprint, "directive", m.value() or b"") for m in to_the_end(settings, directives)
    ]
    assert [d["alert_id"] for d in written] == [second["alert_id"]], written


def test_a_stale_directive_sent_straight_to_the_directives_topic_is_dead_lettered(
    settings: Settings, blueprint: Blueprint, start_worker: Any, start_screen: Any
) -> None:
    start_screen()
    start_worker(settings)
    first, _ = _fired_resolved_fired(settings, blueprint)
    # as the API writes them, when its own check raced the alert firing again
    directive_id = directive_on_topic(
        settings, blueprint, alert_key=FLOOD_KEY, alert_id=first["alert_id"], **as_the_api(settings)
    )
    dead = collect(
        settings, blueprint.topic_by_role("directives_dead_letter").name, "dead_letter", lambda r: len(r) >= 1
    )
    assert [d["reason"] for d in dead.records] == ["stale_alert"]
    assert first["alert_id"] in dead.records[0]["message"]

    # the new occurrence is not acknowledged, anywhere: no change published, the ministry told nothing
    # (once every record is consumed: the worker publishes before it commits, rather than 3 s and 2 s)
    wait_settled(settings, blueprint, "MAE")
    alerts_topic, to_mae = blueprint.topic_by_role("alerts").name, blueprint.directives_topic("MAE").name
    read = all_to_the_end(settings, [alerts_topic, to_mae])
    alerts = [decode_public(blueprint, "alert", m.value() or b"") for m in read[alerts_topic]]
    assert [a["event_type"] for a in _flood_changes(alerts)] == ["TRANSITION"] * 3
    assert _active_flood(settings)["acknowledged_by"] is None
    assert read[to_mae] == [], f"{directive_id} reached the ministry"
